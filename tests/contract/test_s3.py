"""The storage contract on S3 (moto's standalone server), plus what only S3 has: multipart
uploads, one GET per ranged read, error mapping when the service is down, root paths."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

import backends
from backends import storage_s3
from backends.base import BackendUnavailable
from backends.storage_s3 import PART_SIZE, S3Storage
from tests import deployments
from tests.contract.storage import BLOB, FailingStream, StorageContract
from tests.s3server import MotoServer, free_port

MIB = 1 << 20
QUICK = {"connection_timeout": 1, "request_timeout": 2, "max_attempts": 2}  # outage tests


def make_storage(endpoint: str, bucket: str, **options: Any) -> S3Storage:
    return S3Storage(bucket, region="us-east-1", access_key="testing", secret_key="testing",
                     endpoint=endpoint, virtual_addressing=False, **options)


def drop_bucket(storage: S3Storage) -> None:
    """Empty and remove a test bucket (moto keeps everything in its memory)."""
    deployments.drop_bucket(storage.client.meta.endpoint_url, storage.bucket)


@pytest.fixture
def bucket() -> str:
    return f"test-{uuid.uuid4().hex}"


@pytest.fixture
def s3(moto_s3: MotoServer, bucket: str) -> Iterator[S3Storage]:
    """An empty storage area in a bucket of its own."""
    storage = make_storage(moto_s3.endpoint, bucket, create_bucket=True)
    yield storage
    if moto_s3.running:
        drop_bucket(storage)


class TestS3Storage(StorageContract):
    @pytest.fixture
    def storage(self, s3: S3Storage) -> S3Storage:
        return s3

    def test_sweep_interrupted_uploads(self, storage: S3Storage) -> None:
        """A multipart upload its process never completed nor aborted (killed mid-way)."""
        key = storage.new_key()
        upload = storage.client.create_multipart_upload(Bucket=storage.bucket, Key=key)
        storage.client.upload_part(Bucket=storage.bucket, Key=key, PartNumber=1,
                                   UploadId=upload["UploadId"], Body=b"x" * 1024)
        # (moto dates every upload in 2010: "younger than the grace period" is not testable)
        swept = [f"{key} (upload {upload['UploadId']})"]
        assert storage.sweep_interrupted(0) == swept
        assert storage.sweep_interrupted(0, delete=True) == swept
        assert storage.sweep_interrupted(0) == []
        assert list(storage.keys()) == []


def record_calls(storage: S3Storage) -> list[str]:
    """Names of the S3 operations the storage calls from now on."""
    calls: list[str] = []

    def hook(model: Any, **_: Any) -> None:
        calls.append(model.name)

    storage.client.meta.events.register("before-call.s3", hook)
    return calls


def record_gets(storage: S3Storage) -> list[str | None]:
    """The Range header of every GetObject request sent (None: the whole object)."""
    ranges: list[str | None] = []

    def hook(request: Any, **_: Any) -> None:
        value = request.headers.get("Range")
        ranges.append(value.decode() if isinstance(value, bytes) else value)

    storage.client.meta.events.register("before-send.s3.GetObject", hook)
    return ranges


class SlowStream:
    """A client stream that hands out at most 64 KiB per read, of deterministic bytes."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.counter = 0
        self.largest_request = 0
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        self.largest_request = max(self.largest_request, size)
        n = min(self.left, 64 * 1024, size if size >= 0 else self.left)
        block = hashlib.sha256(self.counter.to_bytes(8, "big")).digest() * (64 * 1024 // 32)
        self.counter += 1
        data = block[:n]
        self.left -= n
        self.digest.update(data)
        return data


# ---- writes -----------------------------------------------------------------------------

def test_large_blob_streams_as_multipart_upload(s3: S3Storage) -> None:
    size = 40 * MIB + 123
    stream, key, calls = SlowStream(size), s3.new_key(), record_calls(s3)
    tracemalloc.start()
    try:
        assert s3.write(key, stream) == size  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert calls.count("UploadPart") == 6 and "PutObject" not in calls
    assert calls[0] == "CreateMultipartUpload" and calls[-1] == "CompleteMultipartUpload"
    assert stream.largest_request <= PART_SIZE
    assert peak < 2 * PART_SIZE + 4 * MIB  # about two parts, not the 40 MiB blob
    head = s3.client.head_object(Bucket=s3.bucket, Key=key)
    assert head["ContentLength"] == size and head["ETag"].endswith('-6"')
    digest = hashlib.sha256()
    for chunk in s3.iter_chunks(key):
        digest.update(chunk)
    assert digest.digest() == stream.digest.digest()


def test_small_blob_is_one_put(s3: S3Storage) -> None:
    calls = record_calls(s3)
    assert s3.write(s3.new_key(), io.BytesIO(b"x" * (PART_SIZE - 1))) == PART_SIZE - 1
    assert calls == ["PutObject"]


def test_blob_of_exactly_one_part(s3: S3Storage) -> None:
    key, data = s3.new_key(), bytes(range(256)) * (PART_SIZE // 256)
    assert s3.write(key, io.BytesIO(data)) == PART_SIZE
    assert s3.read_range(key, PART_SIZE - 256, 1000) == bytes(range(256))


def test_failed_multipart_upload_is_aborted(s3: S3Storage) -> None:
    key = s3.new_key()
    calls = record_calls(s3)
    with pytest.raises(ConnectionResetError):
        s3.write(key, io.BufferedReader(FailingStream(PART_SIZE + 3 * MIB)))
    assert "CreateMultipartUpload" in calls and "AbortMultipartUpload" in calls
    assert "Uploads" not in s3.client.list_multipart_uploads(Bucket=s3.bucket)
    assert list(s3.keys()) == []


# ---- reads ------------------------------------------------------------------------------

def test_read_range_is_one_ranged_get(s3: S3Storage) -> None:
    key = s3.new_key()
    s3.write(key, io.BytesIO(BLOB))
    ranges = record_gets(s3)
    assert s3.read_range(key, 100, 50) == BLOB[100:150]
    assert ranges == ["bytes=100-149"]
    assert s3.read_range(key, 7, 0) == b""
    assert s3.read_range(key, len(BLOB), 5) == b""
    assert ranges == ["bytes=100-149", f"bytes={len(BLOB)}-{len(BLOB) + 4}"]


def test_open_streams_and_seeks_with_few_gets(s3: S3Storage) -> None:
    key = s3.new_key()
    s3.write(key, io.BytesIO(BLOB))
    ranges = record_gets(s3)
    with s3.open(key) as f:
        assert f.read(1000) == BLOB[:1000]
        f.seek(500 * 1024)  # a short skip forward reads through the same body
        assert f.read(10) == BLOB[500 * 1024:500 * 1024 + 10]
        assert ranges == [None]
        f.seek(100)  # backwards: one more GET from there
        assert f.read() == BLOB[100:]
    assert ranges[0] is None and ranges[1:] == ["bytes=100-"]


def test_pydicom_reads_an_opened_blob(s3: S3Storage) -> None:
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    key = s3.new_key()
    with open(path, "rb") as source:
        s3.write(key, source)
    with s3.open(key) as f:
        ds = pydicom.dcmread(f, defer_size=64, force=True)
        assert ds.pixel_array.shape == (128, 128)
    assert ds.SOPInstanceUID == pydicom.dcmread(path).SOPInstanceUID


def test_blob_replaced_while_read_is_not_mixed(s3: S3Storage) -> None:
    key = s3.new_key()
    s3.write(key, io.BytesIO(BLOB))
    with s3.open(key) as f:
        f.read(10)
        s3.write(key, io.BytesIO(b"new" * 1000))
        f.seek(2 * MIB)
        with pytest.raises(FileNotFoundError, match="replaced"):
            f.read(10)


# ---- layout, configuration --------------------------------------------------------------

def test_root_paths_isolate_storages(moto_s3: MotoServer, s3: S3Storage) -> None:
    left = make_storage(moto_s3.endpoint, s3.bucket, root_path="left")
    right = make_storage(moto_s3.endpoint, s3.bucket, root_path="/right/deeper/")
    keys = {name: store.new_key() for name, store in
            (("root", s3), ("left", left), ("right", right))}
    for (name, key), store in zip(keys.items(), (s3, left, right), strict=True):
        store.write(key, io.BytesIO(name.encode()))
    assert list(s3.keys()) == [keys["root"]]
    assert list(left.keys()) == [keys["left"]]
    assert list(right.keys()) == [keys["right"]]
    with pytest.raises(FileNotFoundError):
        left.open(keys["right"])
    left.delete(keys["root"])  # another root's object of the same name is untouched
    assert s3.read_range(keys["root"], 0, 10) == b"root"
    names = {item["Key"] for item in
             s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]}
    assert names == {keys["root"], f"left/{keys['left']}", f"right/deeper/{keys['right']}"}


def test_missing_bucket_is_unavailable_not_missing(moto_s3: MotoServer) -> None:
    storage = make_storage(moto_s3.endpoint, f"absent-{uuid.uuid4().hex}")
    key = storage.new_key()
    for call in (lambda: storage.open(key), lambda: storage.read_range(key, 0, 1),
                 lambda: storage.write(key, io.BytesIO(b"x")), lambda: list(storage.keys())):
        with pytest.raises(BackendUnavailable, match="NoSuchBucket"):
            call()


def test_create_bucket_twice(moto_s3: MotoServer, s3: S3Storage) -> None:
    again = make_storage(moto_s3.endpoint, s3.bucket, create_bucket=True)
    assert list(again.keys()) == []


def test_factory(moto_s3: MotoServer, bucket: str) -> None:
    storage = backends.s3_storage(bucket=bucket, endpoint=moto_s3.endpoint, region="us-east-1",
                                  access_key="testing", secret_key="testing",
                                  virtual_addressing=False, create_bucket=True)
    assert isinstance(storage, S3Storage)
    key = storage.new_key()
    storage.write(key, io.BytesIO(b"data"))
    assert list(storage.keys()) == [key]
    drop_bucket(storage)


def test_client_made_again_after_fork(s3: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = s3.client
    assert s3.client is parent
    monkeypatch.setattr(storage_s3.os, "getpid", lambda: -1)  # as in a forked worker
    assert s3.client is not parent


def test_configuration() -> None:
    storage = S3Storage("b", endpoint="minio.local:9000", access_key="AK", secret_key="SK",
                        virtual_addressing=False, connection_timeout=3, request_timeout=9)
    assert storage.endpoint == "https://minio.local:9000"
    assert "SK" not in repr(storage) and "AK" not in repr(storage)
    config = storage.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (3, 9)
    assert config.s3 == {"addressing_style": "path"}
    assert config.retries == {"total_max_attempts": storage_s3.MAX_ATTEMPTS, "mode": "standard"}
    assert S3Storage("b", endpoint="http://h:1").endpoint == "http://h:1"
    assert S3Storage("b").client.meta.config.s3 == {"addressing_style": "virtual"}
    with pytest.raises(ValueError):
        S3Storage("b", access_key="only the access key")
    with pytest.raises(ValueError):
        S3Storage("")


# ---- outages ----------------------------------------------------------------------------

def every_operation(storage: S3Storage, key: str) -> list[Callable[[], object]]:
    return [
        lambda: storage.write(storage.new_key(), io.BytesIO(b"small")),
        lambda: storage.write(storage.new_key(), io.BytesIO(bytes(PART_SIZE + 1))),
        lambda: storage.open(key),
        lambda: storage.read_range(key, 0, 10),
        lambda: list(storage.iter_chunks(key)),
        lambda: storage.delete(key),
        lambda: list(storage.keys()),
    ]


def assert_unavailable(storage: S3Storage, key: str, within: float) -> None:
    for call in every_operation(storage, key):
        began = time.monotonic()
        with pytest.raises(BackendUnavailable) as info:
            call()
        assert time.monotonic() - began < within
        reason = str(info.value)
        assert reason.startswith("S3 ") and "127.0.0.1" not in reason
        assert "testing" not in reason


def test_outage_then_recovery(moto_s3: MotoServer, s3: S3Storage) -> None:
    """An endpoint nobody listens on: every call fails fast with BackendUnavailable; the
    live service still has the blob (moto forgets everything on a restart, hence two
    storage objects on one bucket rather than a restart)."""
    key = s3.new_key()
    s3.write(key, io.BytesIO(b"survives"))
    down = make_storage(f"http://127.0.0.1:{free_port()}", s3.bucket, **QUICK)
    assert_unavailable(down, key, within=5)
    assert s3.read_range(key, 0, 100) == b"survives"
    with s3.open(key) as f:
        assert f.read() == b"survives"


def test_stopped_server(moto_s3: MotoServer, bucket: str) -> None:
    storage = make_storage(moto_s3.endpoint, bucket, create_bucket=True, **QUICK)
    key = storage.new_key()
    storage.write(key, io.BytesIO(b"data"))
    moto_s3.stop()
    try:
        assert_unavailable(storage, key, within=5)
    finally:
        moto_s3.start()
    storage = make_storage(moto_s3.endpoint, bucket, create_bucket=True, **QUICK)
    storage.write(key, io.BytesIO(b"again"))  # same client setup works once it is back
    assert storage.read_range(key, 0, 10) == b"again"
    drop_bucket(storage)


def test_reader_needing_a_new_get_during_outage(moto_s3: MotoServer, bucket: str) -> None:
    storage = make_storage(moto_s3.endpoint, bucket, create_bucket=True, **QUICK)
    key = storage.new_key()
    storage.write(key, io.BytesIO(BLOB))
    f = storage.open(key)
    f.read(10)
    moto_s3.stop()
    try:
        with pytest.raises(BackendUnavailable):
            f.seek(2 * MIB)  # drops the body: the next read needs a new GET
            f.read(10)
    finally:
        f.close()
        moto_s3.start()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung service)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_hung_service_times_out(silent_port: int) -> None:
    storage = make_storage(f"http://127.0.0.1:{silent_port}", "hung",
                           connection_timeout=1, request_timeout=0.5, max_attempts=2)
    key = storage.new_key()
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match="ReadTimeout"):
        storage.read_range(key, 0, 10)
    assert time.monotonic() - began < 5


class Throttling(http.server.BaseHTTPRequestHandler):
    """Answers every request 503 SlowDown, like S3 asking the client to back off."""

    requests = 0

    def _answer(self) -> None:
        type(self).requests += 1
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message></Error>")
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_throttling_retried_then_unavailable() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Throttling)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        storage = make_storage(f"http://127.0.0.1:{server.server_address[1]}", "busy",
                               max_attempts=2)
        Throttling.requests = 0
        with pytest.raises(BackendUnavailable, match="503 SlowDown"):
            storage.write(storage.new_key(), io.BytesIO(b"data"))
        assert Throttling.requests == 2
    finally:
        server.shutdown()
        server.server_close()
