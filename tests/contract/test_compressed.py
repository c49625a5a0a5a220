"""The storage contract on ``CompressedStorage`` over the filesystem and over S3, plus what
only compression has: smaller blobs, legacy uncompressed blobs, segment-bounded ranged reads
and seeks, bounded memory, corruption reported as such."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import tracemalloc
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

import backends
from backends import storage_compressed
from backends.base import BackendUnavailable
from backends.storage_compressed import (
    HEADER_SIZE,
    MAGIC,
    SEGMENT_SIZE,
    CompressedStorage,
    CorruptBlobError,
    is_compressed_key,
)
from backends.storage_fs import FilesystemStorage
from backends.storage_s3 import S3Storage
from tests.contract.storage import StorageContract
from tests.delegating import CountingStorage as Counting
from tests.s3server import MotoServer, free_port

MIB = 1 << 20


def ct_slice(seed: int, n: int = 512) -> bytes:
    """A 512×512 CT-like image (12 bits stored in 16): air, a body with soft-tissue
    texture, bone, and quantum noise of σ = 15 HU."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:n, :n]
    r = np.hypot(x - n / 2, (y - n / 2) * 1.2)
    hu = np.full((n, n), -1000.0)
    body = r < n * 0.42
    hu[body] = 40 + 30 * np.sin(x[body] / 23.0) * np.cos(y[body] / 31.0)
    hu[r < n * 0.1] = 700
    hu += rng.normal(0, 15, (n, n))
    return np.clip(hu + 1024, 0, 4095).astype("<u2").tobytes()


CT = b"".join(ct_slice(i) for i in range(3))  # 1.5 MiB, compressible like real images


def s3_storage(endpoint: str, bucket: str, **options: Any) -> S3Storage:
    return S3Storage(bucket, region="us-east-1", access_key="testing", secret_key="testing",
                     endpoint=endpoint, virtual_addressing=False, **options)


@pytest.fixture
def fs(tmp_path: Path) -> FilesystemStorage:
    return FilesystemStorage(tmp_path / "storage")


@pytest.fixture(scope="module")
def s3_bucket(moto_s3: MotoServer) -> Iterator[S3Storage]:
    """One bucket and one client for the module (a boto3 client takes half a second)."""
    storage = s3_storage(moto_s3.endpoint, f"test-{uuid.uuid4().hex}", create_bucket=True)
    yield storage
    if moto_s3.running:
        _empty(storage)
        storage.client.delete_bucket(Bucket=storage.bucket)


def _empty(storage: S3Storage) -> None:
    client = storage.client
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=storage.bucket):
        for item in page.get("Contents", ()):
            client.delete_object(Bucket=storage.bucket, Key=item["Key"])


@pytest.fixture
def s3(s3_bucket: S3Storage) -> S3Storage:
    """An empty storage area on S3."""
    _empty(s3_bucket)
    return s3_bucket


@contextmanager
def hooked(storage: S3Storage, event: str, handler: Any) -> Iterator[None]:
    """``handler`` on the (shared) client's ``event`` for the block only."""
    storage.client.meta.events.register(event, handler)
    try:
        yield
    finally:
        storage.client.meta.events.unregister(event, handler)


class TestCompressedFilesystem(StorageContract):
    @pytest.fixture
    def storage(self, fs: FilesystemStorage) -> CompressedStorage:
        return CompressedStorage(fs)


class TestCompressedS3(StorageContract):
    @pytest.fixture
    def storage(self, s3: S3Storage) -> CompressedStorage:
        return CompressedStorage(s3)


def inner_path(fs: FilesystemStorage, key: str) -> Path:
    return fs.root / key[:2] / key


# ---- on disk ----------------------------------------------------------------------------

def test_blobs_are_compressed_on_disk(fs: FilesystemStorage) -> None:
    storage = CompressedStorage(fs)
    key = storage.new_key()
    assert storage.write(key, io.BytesIO(CT)) == len(CT)  # the uncompressed size
    stored = inner_path(fs, key).read_bytes()
    assert stored[:4] == MAGIC
    assert struct.unpack_from("<IQ", stored, 4) == (SEGMENT_SIZE, len(CT))
    assert len(stored) < 0.6 * len(CT)
    assert storage.read_range(key, 0, len(CT) + 10) == CT
    with storage.open(key) as f:
        assert f.read() == CT


def test_data_is_one_raw_deflate_stream(fs: FilesystemStorage) -> None:
    """The documented format: header, 12-byte index entries, then raw DEFLATE."""
    storage = CompressedStorage(fs)
    key = storage.new_key()
    storage.write(key, io.BytesIO(CT))
    stored = inner_path(fs, key).read_bytes()
    count = -(-len(CT) // SEGMENT_SIZE)
    data = stored[HEADER_SIZE + 12 * count:]
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(data) == CT
    last_end, crc = struct.unpack_from("<QI", stored, HEADER_SIZE + 12 * (count - 1))
    assert crc == zlib.crc32(CT[(count - 1) * SEGMENT_SIZE:])
    # Each segment decompresses on its own from its flush point.
    start = struct.unpack_from("<Q", stored, HEADER_SIZE + 12 * (count - 2))[0]
    segment = zlib.decompressobj(-zlib.MAX_WBITS).decompress(data[start:last_end])
    assert segment == CT[(count - 1) * SEGMENT_SIZE:]


def test_pydicom_reads_a_compressed_instance(fs: FilesystemStorage) -> None:
    path = get_testdata_file("CT_small.dcm")
    assert isinstance(path, str)
    storage = CompressedStorage(fs)
    key = storage.new_key()
    with open(path, "rb") as source:
        assert storage.write(key, source) == os.path.getsize(path)
    assert inner_path(fs, key).stat().st_size < os.path.getsize(path)
    original = pydicom.dcmread(path)
    with storage.open(key) as f:
        assert not isinstance(f, io.BufferedReader)  # pydicom would reopen it by name
        ds = pydicom.dcmread(f, defer_size=64, force=True)
        assert (ds.pixel_array == original.pixel_array).all()
    assert ds.SOPInstanceUID == original.SOPInstanceUID


def test_factory(fs: FilesystemStorage) -> None:
    storage = backends.compressed_storage(fs)
    assert isinstance(storage, CompressedStorage) and storage.inner is fs


# ---- blobs stored before compression was turned on ---------------------------------------

@pytest.mark.parametrize("name", ["CT_small.dcm", "empty", "tiny", "random"])
def test_uncompressed_blobs_read_back_unchanged(fs: FilesystemStorage, name: str) -> None:
    if name.endswith(".dcm"):
        path = get_testdata_file(name)
        assert isinstance(path, str)
        data = Path(path).read_bytes()
    else:
        data = {"empty": b"", "tiny": b"DWZ", "random": os.urandom(200_000)}[name]
    key = fs.new_key()
    fs.write(key, io.BytesIO(data))  # written by the plain storage
    storage = Counting(fs)
    compressed = CompressedStorage(storage)
    with compressed.open(key) as f:
        assert f.read() == data
        f.seek(len(data) // 2)
        assert f.read(10) == data[len(data) // 2:len(data) // 2 + 10]
    assert b"".join(compressed.iter_chunks(key, chunk_size=4096)) == data
    for start, length in [(0, 10), (100, 5000), (max(0, len(data) - 7), 100),
                          (150_000, 40_000)]:
        storage.ranged_reads.clear()
        assert compressed.read_range(key, start, length) == data[start:start + length]
        assert len(storage.ranged_reads) == 1  # the first read held it (ranges under 1 MiB)


def test_uncompressed_blob_range_is_the_inner_read_alone(fs: FilesystemStorage) -> None:
    """A plain key is routed straight to the inner storage: no head read, no probe."""
    data = os.urandom(3 * MIB)
    key = fs.new_key()
    fs.write(key, io.BytesIO(data))
    storage = Counting(fs)
    assert CompressedStorage(storage).read_range(key, 2 * MIB, 1000) == data[2 * MIB:][:1000]
    assert storage.ranged_reads == [(2 * MIB, 1000)]


def test_keys_say_how_blobs_are_stored(fs: FilesystemStorage) -> None:
    on, off = CompressedStorage(fs), CompressedStorage(fs, compress=False)
    compressed, plain = on.new_key(), off.new_key()
    assert is_compressed_key(compressed) and not is_compressed_key(plain)
    on.write(compressed, io.BytesIO(CT))
    off.write(plain, io.BytesIO(CT))
    assert inner_path(fs, plain).read_bytes() == CT  # written as is
    assert inner_path(fs, compressed).read_bytes()[:4] == MAGIC
    for storage in (on, off):  # either setting reads both kinds
        for key in (compressed, plain):
            assert storage.read_range(key, 100, 50) == CT[100:150]
            assert b"".join(storage.iter_chunks(key)) == CT


def test_pydicom_reads_an_uncompressed_blob(fs: FilesystemStorage) -> None:
    path = get_testdata_file("MR_small.dcm")
    assert isinstance(path, str)
    key = fs.new_key()
    with open(path, "rb") as source:
        fs.write(key, source)
    with CompressedStorage(fs).open(key) as f:
        ds = pydicom.dcmread(f, force=True)
        assert ds.pixel_array.shape == (64, 64)


# ---- random access ----------------------------------------------------------------------

MIXED = CT[:300_000] + os.urandom(70_000) + bytes(50_000) + CT[-200_000:]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[CompressedStorage, str]:
    """MIXED in 4 KiB segments: reads and seeks cross many segment boundaries."""
    storage = CompressedStorage(FilesystemStorage(tmp_path_factory.mktemp("mixed")),
                                segment_size=4096)
    key = storage.new_key()
    storage.write(key, io.BytesIO(MIXED))
    return storage, key


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(0, len(MIXED) + 100), length=st.integers(0, 40_000))
def test_random_read_ranges(mixed: tuple[CompressedStorage, str], start: int,
                            length: int) -> None:
    storage, key = mixed
    assert storage.read_range(key, start, length) == MIXED[start:start + length]


_OPS = st.lists(st.one_of(
    st.tuples(st.just("seek"), st.integers(0, len(MIXED) + 10), st.just(io.SEEK_SET)),
    st.tuples(st.just("seek"), st.integers(-70_000, 70_000), st.just(io.SEEK_CUR)),
    st.tuples(st.just("seek"), st.integers(-len(MIXED), 10), st.just(io.SEEK_END)),
    st.tuples(st.just("read"), st.integers(-1, 100_000), st.just(0)),
    st.tuples(st.just("readinto"), st.integers(0, 20_000), st.just(0)),
), max_size=25)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_random_seeks_and_reads(mixed: tuple[CompressedStorage, str],
                                ops: list[tuple[str, int, int]]) -> None:
    storage, key = mixed
    model = io.BytesIO(MIXED)
    with storage.open(key) as f:
        for op, n, whence in ops:
            if op == "seek":
                if model.seek(0, whence) + n < 0:
                    continue  # BytesIO and files refuse it alike
                model.seek(n, whence)
                assert f.seek(n, whence) == model.tell()
            elif op == "read":
                if n == -1 and model.tell() < 300_000:
                    n = 50_000  # keep reads of the whole rest rare
                assert f.read(n) == model.read(n)
            else:
                buffer = bytearray(n)
                count = f.readinto(buffer)
                assert buffer[:count] == model.read(n)  # short only at the end
            assert f.tell() == model.tell()


def test_short_backward_seeks_do_not_restart(fs: FilesystemStorage) -> None:
    """pydicom reads a tag, steps back a few bytes, reads again: served from the window."""
    storage = Counting(fs)
    compressed = CompressedStorage(storage)
    key = compressed.new_key()
    compressed.write(key, io.BytesIO(CT))
    with compressed.open(key) as f:
        position = 0
        for _ in range(2000):  # 2000 × 500 bytes: through about 4 segments
            f.seek(position)
            assert f.read(300) == CT[position:position + 300]
            f.seek(-200, io.SEEK_CUR)  # back into what was read
            assert f.read(100) == CT[position + 100:position + 200]
            position += 500
        assert storage.seeks == 0  # never restarted
        f.seek(10)  # far back: one restart at segment 0
        assert f.read(10) == CT[10:20]
        assert storage.seeks == 1


def test_far_seek_restarts_at_the_target_segment(fs: FilesystemStorage) -> None:
    storage = Counting(fs)
    compressed = CompressedStorage(storage)
    key = compressed.new_key()
    data = CT * 8  # 12 MiB
    compressed.write(key, io.BytesIO(data))
    with compressed.open(key) as f:
        f.read(100)
        before = storage.bytes_read
        f.seek(len(data) - 1000)
        assert f.read() == data[-1000:]
        assert storage.bytes_read - before < 2 * SEGMENT_SIZE  # not the 11 MiB in between


# ---- large blobs ------------------------------------------------------------------------

LARGE = 50 * MIB
POOL = CT[:MIB]


class Generated(io.RawIOBase):
    """A deterministic compressible stream of ``size`` bytes, made as it is read: the blob
    never exists whole in the test either. ``expected(start, length)`` recomputes a range."""

    def __init__(self, size: int) -> None:
        self.size, self.pos = size, 0

    @staticmethod
    def block(i: int) -> bytes:
        """Block i (1 MiB): the pool with the block number stamped every 64 KiB."""
        stamp = i.to_bytes(8, "little")
        return b"".join(stamp + POOL[k + 8:k + 65536] for k in range(0, MIB, 65536))

    @classmethod
    def expected(cls, start: int, length: int) -> bytes:
        first, last = start // MIB, (start + length - 1) // MIB
        data = b"".join(cls.block(i) for i in range(first, last + 1))
        return data[start - first * MIB:start - first * MIB + length]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), self.size - self.pos, MIB - self.pos % MIB)
        if n <= 0:
            return 0
        block = self.block(self.pos // MIB)
        buffer[:n] = block[self.pos % MIB:self.pos % MIB + n]
        self.pos += n
        return n


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> tuple[Counting, str, int]:
    """A 50 MiB blob written through CompressedStorage, with the write's memory peak."""
    storage = Counting(FilesystemStorage(tmp_path_factory.mktemp("large")))
    key = CompressedStorage(storage).new_key()
    tracemalloc.start()
    try:
        size = CompressedStorage(storage).write(key, io.BufferedReader(Generated(LARGE)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert size == LARGE
    return storage, key, peak


def test_large_blob_written_with_bounded_memory(large: tuple[Counting, str, int]) -> None:
    storage, key, peak = large
    assert peak < 12 * MIB  # the spool's 4 MiB and a few buffers, not the 50 MiB blob
    stored = inner_path(storage.inner, key).stat().st_size  # type: ignore[arg-type]
    assert stored < 0.7 * LARGE


def test_large_blob_read_with_bounded_memory(large: tuple[Counting, str, int]) -> None:
    storage, key, _ = large
    digest, expected = hashlib.sha256(), hashlib.sha256()
    for i in range(LARGE // MIB):
        expected.update(Generated.block(i))
    tracemalloc.start()
    try:
        for chunk in CompressedStorage(storage).iter_chunks(key):
            assert len(chunk) <= MIB
            digest.update(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert digest.digest() == expected.digest()
    assert peak < 6 * MIB


def test_frame_at_the_end_reads_little_of_the_inner_blob(
        large: tuple[Counting, str, int]) -> None:
    """One head read and one ranged read of a few segments, thanks to the index."""
    storage, key, _ = large
    storage.bytes_read, storage.ranged_reads = 0, []
    start, length = LARGE - 600_000, 500_000
    data = CompressedStorage(storage).read_range(key, start, length)
    assert data == Generated.expected(start, length)
    assert len(storage.ranged_reads) == 2
    assert storage.bytes_read < (64 << 10) + length + 2 * SEGMENT_SIZE
    # and the header only (frame_source.header): one read of the head
    storage.ranged_reads = []
    assert CompressedStorage(storage).read_range(key, 0, 1000) == Generated.expected(0, 1000)
    assert len(storage.ranged_reads) == 1


def test_frame_read_is_two_gets_on_s3(s3: S3Storage) -> None:
    data = CT * 3  # 4.5 MiB
    compressed = CompressedStorage(s3)
    key = compressed.new_key()
    compressed.write(key, io.BytesIO(data))
    ranges: list[str] = []
    with hooked(s3, "before-send.s3.GetObject",
                lambda request, **_: ranges.append(request.headers["Range"].decode())):
        assert compressed.read_range(key, len(data) - 600_000, 500_000) == \
            data[-600_000:-100_000]
    assert len(ranges) == 2 and ranges[0] == f"bytes=0-{(64 << 10) - 1}"
    first, last = map(int, ranges[1].removeprefix("bytes=").split("-"))
    assert last - first < 500_000  # compressed segments, not the blob


# ---- errors -----------------------------------------------------------------------------

def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x55
    path.write_bytes(bytes(data))


def _all_reads(storage: CompressedStorage, key: str) -> list[Any]:
    def read_open() -> bytes:
        with storage.open(key) as f:
            return f.read()

    return [read_open, lambda: b"".join(storage.iter_chunks(key)),
            lambda: storage.read_range(key, 0, len(CT))]


@pytest.mark.parametrize("level", [0, 3])  # stored blocks decode: only the CRC sees it
def test_altered_data_is_a_clear_error(fs: FilesystemStorage, level: int) -> None:
    storage = CompressedStorage(fs, level=level)
    key = storage.new_key()
    storage.write(key, io.BytesIO(CT))
    path = inner_path(fs, key)
    _flip(path, path.stat().st_size // 2)
    for read in _all_reads(storage, key):
        with pytest.raises(CorruptBlobError, match=f"compressed blob {key} is corrupt"):
            read()
    # segments are independent: the first one still reads
    assert storage.read_range(key, 0, 1000) == CT[:1000]


def test_truncated_blob_is_a_clear_error(fs: FilesystemStorage) -> None:
    storage = CompressedStorage(fs)
    key = storage.new_key()
    storage.write(key, io.BytesIO(CT))
    path = inner_path(fs, key)
    path.write_bytes(path.read_bytes()[:-5000])
    for read in _all_reads(storage, key):
        with pytest.raises(OSError, match="corrupt"):
            read()
    path.write_bytes(path.read_bytes()[:40])  # within the index
    for read in _all_reads(storage, key):
        with pytest.raises(OSError, match="truncated"):
            read()


@pytest.mark.parametrize(("segment", "size", "message"), [
    (3, 10, "segment size 3"), (1 << 30, 10, "segment size"), (4096, 1 << 60, "size"),
    (4096, 1 << 40, "truncated"),  # a huge claimed size is never allocated
])
def test_bad_header_is_a_clear_error(fs: FilesystemStorage, segment: int, size: int,
                                     message: str) -> None:
    key = CompressedStorage(fs).new_key()
    fs.write(key, io.BytesIO(MAGIC + struct.pack("<IQ", segment, size) + b"\0" * 100))
    storage = CompressedStorage(fs)
    for read in _all_reads(storage, key):
        with pytest.raises(CorruptBlobError, match=message):
            read()


def test_longer_stream_than_declared_is_an_error(fs: FilesystemStorage) -> None:
    storage = CompressedStorage(fs)
    key = storage.new_key()
    storage.write(key, io.BytesIO(CT))
    path = inner_path(fs, key)
    stored = bytearray(path.read_bytes())
    stored[8:16] = struct.pack("<Q", len(CT) - 10)  # same segments, smaller size
    path.write_bytes(bytes(stored))
    with pytest.raises(CorruptBlobError, match="checksum"):
        storage.read_range(key, 0, len(CT))
    with pytest.raises(CorruptBlobError, match="checksum"):
        b"".join(storage.iter_chunks(key))


def test_backend_unavailable_passes_through(tmp_path: Path) -> None:
    down = s3_storage(f"http://127.0.0.1:{free_port()}", "bucket", connection_timeout=1,
                      request_timeout=1, max_attempts=1)
    storage = CompressedStorage(down)
    key = storage.new_key()
    for call in (lambda: storage.write(key, io.BytesIO(CT)), lambda: storage.open(key),
                 lambda: storage.read_range(key, 0, 10), lambda: list(storage.iter_chunks(key)),
                 lambda: storage.delete(key), lambda: list(storage.keys())):
        with pytest.raises(BackendUnavailable):
            call()


def test_options_are_checked(fs: FilesystemStorage) -> None:
    for bad in ({"segment_size": 1000}, {"segment_size": 3 << 10}, {"level": 10}):
        with pytest.raises(ValueError):
            CompressedStorage(fs, **bad)  # type: ignore[arg-type]
    assert storage_compressed.LEVEL == CompressedStorage(fs).level


def test_large_compressed_blob_is_a_multipart_upload(s3: S3Storage) -> None:
    """Compressed data past S3's part size goes from the spool file as a multipart upload."""
    data = os.urandom(9 * MIB)  # incompressible: more than one 8 MiB part once compressed
    compressed = CompressedStorage(s3)
    key = compressed.new_key()
    calls: list[str] = []
    with hooked(s3, "before-call.s3", lambda model, **_: calls.append(model.name)):
        assert compressed.write(key, io.BytesIO(data)) == len(data)
    assert "CreateMultipartUpload" in calls and "CompleteMultipartUpload" in calls
    assert hashlib.sha256(b"".join(compressed.iter_chunks(key))).digest() == \
        hashlib.sha256(data).digest()
    assert compressed.read_range(key, 8 * MIB + 5, 100_000) == data[8 * MIB + 5:][:100_000]
