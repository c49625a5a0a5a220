"""``StorageArea`` on Amazon S3 or an S3-compatible service, one object per blob.

The options mirror the ``AwsS3Storage`` section of Orthanc's S3 object-storage plugin.
Objects are named ``{root_path}/{key}`` (just ``{key}`` without a root path); keys are
checked like the filesystem's (32 lowercase hex digits) before any name is built.

Writes stream: a blob shorter than :data:`PART_SIZE` is read into memory and sent with one
PUT; a longer one goes through boto3's managed transfer as a multipart upload of
``PART_SIZE`` parts, one part in flight while the next is read (about two parts of memory
per upload, whatever the blob size). S3 makes an object visible only when its PUT or
CompleteMultipartUpload succeeds, and a failed multipart upload is aborted, so readers
see the whole blob or nothing.

Reads stream too: :meth:`S3Storage.open` returns a seekable buffered reader over the GET
body (pydicom needs ``seek``); a seek re-GETs from the new offset (``If-Match`` the first
ETag, so a blob replaced meanwhile is not read half old, half new), except short forward
skips, which are read through. :meth:`S3Storage.read_range` is one ranged GET.

Transient failures are retried by botocore ("standard" mode: exponential backoff with
jitter, connection errors, 5xx and throttling). What still fails becomes
``BackendUnavailable`` with a short reason (never a URL or a credential); a missing object
stays ``FileNotFoundError``. The client is made lazily, once per process: a client made
before gunicorn forks is never used by the workers.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
)

from .base import BackendUnavailable, BlobStat, StorageArea
from .blob_io import BufferedBlob, PositionedReader
from .storage_fs import check_key

if TYPE_CHECKING:
    from botocore.response import StreamingBody

PART_SIZE = 8 << 20  # multipart threshold and part size (S3 parts are at least 5 MiB)
READ_BUFFER = 256 << 10  # buffer of the reader ``open`` returns
SKIP_BY_READING = 1 << 20  # a shorter forward seek reads through instead of a new GET
MAX_ATTEMPTS = 5  # botocore counts the first attempt

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_CHANGED = frozenset({"PreconditionFailed", "412"})
_UNAVAILABLE = frozenset({
    "NoSuchBucket", "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId",
    "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "TokenRefreshRequired",
    "RequestTimeTooSkewed", "RequestTimeout", "SlowDown", "Throttling", "ThrottlingException",
    "RequestLimitExceeded", "TooManyRequestsException", "ServiceUnavailable", "InternalError",
})
_TRANSPORT = (ConnectionError, HTTPClientError, IncompleteReadError)
_CREDENTIALS = (NoCredentialsError, CredentialRetrievalError)


def _error(exc: ClientError) -> tuple[str, int]:
    """The error code and HTTP status of an S3 error response."""
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return code, status


def _translate(exc: Exception, key: str | None) -> Exception | None:
    """What a botocore failure means for the caller; None: let it through unchanged."""
    if isinstance(exc, ClientError):
        code, status = _error(exc)
        if key is not None and code in _MISSING:
            return FileNotFoundError(f"no blob {key}")
        if key is not None and code in _CHANGED:
            return FileNotFoundError(f"blob {key} was replaced while being read")
        if status >= 500 or status in (403, 429) or code in _UNAVAILABLE:
            return BackendUnavailable(f"S3 answered {status} {code}".rstrip())
        return None
    if isinstance(exc, _TRANSPORT):
        return BackendUnavailable(f"S3 unreachable ({type(exc).__name__})")
    if isinstance(exc, _CREDENTIALS):
        return BackendUnavailable("no usable S3 credentials")
    return None


@contextmanager
def _s3_errors(key: str | None = None) -> Iterator[None]:
    """Map botocore failures: ``FileNotFoundError`` (about ``key``) or ``BackendUnavailable``."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        mapped = _translate(exc, key)
        if mapped is None:
            raise
        raise mapped from exc


def _is_key(name: str) -> bool:
    try:
        check_key(name)
    except ValueError:
        return False
    return True


class _Source:
    """The client's stream as boto3 reads it: full reads, counted, first block put back.

    ``read(n)`` returns ``n`` bytes unless the stream ends (a short read would make a
    multipart part too small). It has no ``seek``, so boto3 never reads the stream inside
    an HTTP request, where a failing client could look like a network error and be retried.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def unread(self, data: bytes) -> None:
        self._pending = data

    def read(self, size: int | None = -1) -> bytes:
        head, self._pending = self._pending, b""
        if size is not None and 0 <= size <= len(head):
            self._pending = head[size:]
            return head[:size]  # the whole block: the same object, no copy
        rest = self._read_stream(-1 if size is None or size < 0 else size - len(head))
        return head + rest if head else rest

    def _read_stream(self, size: int) -> bytes:
        first = self._stream.read(size) if size else b""
        self.count += len(first)
        if not first or len(first) == size:  # files and BytesIO: all of it at once
            return first
        # Short reads gather in a BytesIO: getvalue() hands over its buffer without a copy,
        # so memory peaks at one part, not at the pieces plus their join.
        gathered = io.BytesIO()
        gathered.write(first)
        del first
        while size < 0 or gathered.tell() < size:
            part = self._stream.read(-1 if size < 0 else size - gathered.tell())
            if not part:
                break
            self.count += len(part)
            gathered.write(part)
        return gathered.getvalue()


class _ObjectReader(PositionedReader):
    """Raw reader of one object: streams a GET body, re-GETs from the offset after a seek."""

    def __init__(self, storage: S3Storage, key: str, body: StreamingBody, size: int,
                 etag: str | None) -> None:
        super().__init__(size)
        self._storage, self._key, self._etag = storage, key, etag
        self._body: StreamingBody | None = body

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = self.target(offset, whence)
        if self._body is not None and 0 < target - self._pos <= SKIP_BY_READING:
            self._skip(target - self._pos)
        elif target != self._pos:
            self._drop_body()
        self._pos = target
        return target

    def _skip(self, count: int) -> None:
        while count > 0:
            data = self._read_body(min(count, READ_BUFFER))
            if not data:
                break
            count -= len(data)

    def _drop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def _read_body(self, size: int | None) -> bytes:
        """Read from the body (a new GET from the position if there is none). On failure the
        body is dropped: a later read GETs again from where the position says."""
        try:
            if self._body is None:
                self._body = self._storage._get_body(self._key, self._pos, self._etag)[0]
            with _s3_errors(self._key):
                return self._body.read(size)
        except BaseException:
            self._drop_body()
            raise

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size or len(buffer) == 0:
            return 0
        data = self._read_body(len(buffer))  # read: older botocore has no readinto
        count = len(data)
        memoryview(buffer).cast("B")[:count] = data
        self._pos += count
        return count

    def readall(self) -> bytes:
        if self._pos >= self._size:
            return b""
        data = self._read_body(None)
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._drop_body()
        super().close()


class S3Storage(StorageArea):
    """Blobs as objects of one bucket, under ``root_path``; safe across threads and forks."""

    def __init__(
        self, bucket: str, *, region: str | None = None, access_key: str | None = None,
        secret_key: str | None = None, endpoint: str | None = None,
        virtual_addressing: bool = True, connection_timeout: float = 30,
        request_timeout: float = 1200, root_path: str = "", create_bucket: bool = False,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required")
        if (access_key is None) != (secret_key is None):
            raise ValueError("give both the S3 access key and secret key, or neither")
        if connection_timeout <= 0 or request_timeout <= 0 or max_attempts < 1:
            raise ValueError("S3 timeouts must be positive and max_attempts at least 1")
        self.bucket = bucket
        self.region = region
        self.endpoint = _endpoint_url(endpoint)
        self.root_path = root_path.strip("/")
        self._prefix = f"{self.root_path}/" if self.root_path else ""
        self._credentials = (access_key, secret_key)
        self._config = _client_config(virtual_addressing, connection_timeout, request_timeout,
                                      max_attempts, compatible=endpoint is not None)
        self._transfer = _transfer_config()
        self._lock = threading.Lock()
        self._client: Any = None
        self._client_pid = 0
        if create_bucket:
            self._create_bucket()

    def __repr__(self) -> str:  # never the credentials
        return (f"S3Storage(bucket={self.bucket!r}, endpoint={self.endpoint!r}, "
                f"root_path={self.root_path!r})")

    @property
    def client(self) -> Any:
        """This process's boto3 S3 client, made on first use (and again after a fork)."""
        client = self._client
        if client is not None and self._client_pid == os.getpid():
            return client
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                self._client = self._make_client()
                self._client_pid = os.getpid()
            return self._client

    def _make_client(self) -> Any:
        access_key, secret_key = self._credentials
        return boto3.session.Session().client(
            "s3", region_name=self.region, endpoint_url=self.endpoint,
            aws_access_key_id=access_key, aws_secret_access_key=secret_key,
            config=self._config,
        )

    def _create_bucket(self) -> None:
        """Create the bucket unless it exists (tests, first deployment)."""
        with _s3_errors():
            try:
                self.client.head_bucket(Bucket=self.bucket)
                return
            except ClientError as exc:
                if _error(exc)[1] != 404:
                    raise
            region = self.client.meta.region_name
            where = ({} if region in (None, "us-east-1", "aws-global")
                     else {"CreateBucketConfiguration": {"LocationConstraint": region}})
            try:
                self.client.create_bucket(Bucket=self.bucket, **where)
            except ClientError as exc:
                if _error(exc)[0] != "BucketAlreadyOwnedByYou":
                    raise

    def _name(self, key: str) -> str:
        return self._prefix + check_key(key)

    def write(self, key: str, stream: BinaryIO) -> int:
        name = self._name(key)
        source = _Source(stream)
        first = source.read(PART_SIZE)
        with _s3_errors():
            if len(first) < PART_SIZE:  # the whole blob is in hand: one PUT
                self.client.put_object(Bucket=self.bucket, Key=name, Body=first)
            else:
                source.unread(first)
                del first  # boto3 holds it from now on, and lets it go after its part
                self.client.upload_fileobj(source, self.bucket, name, Config=self._transfer)
        return source.count

    def _get_body(self, key: str, start: int = 0,
                  etag: str | None = None) -> tuple[StreamingBody, int, str | None]:
        """GET ``key`` from ``start``: the body, the object's size and its ETag."""
        args: dict[str, str] = {"Bucket": self.bucket, "Key": self._name(key)}
        if start:
            args["Range"] = f"bytes={start}-"
        if etag:
            args["IfMatch"] = etag
        with _s3_errors(key):
            response = self.client.get_object(**args)
        size = start + int(response["ContentLength"])
        return response["Body"], size, response.get("ETag")

    def open(self, key: str) -> BinaryIO:
        body, size, etag = self._get_body(key)
        # the caller closes it
        return BufferedBlob(_ObjectReader(self, key, body, size, etag), READ_BUFFER)

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        body = self._get_body(key)[0]
        with closing(body):
            while True:
                with _s3_errors(key):
                    chunk = body.read(chunk_size)
                if not chunk:
                    return
                yield chunk

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """One ranged GET; shorter only past the end of the blob, b"" with no request for 0."""
        name = self._name(key)
        if start < 0 or length < 0:
            raise ValueError("negative range")
        if length == 0:
            return b""
        with _s3_errors(key):
            try:
                response = self.client.get_object(
                    Bucket=self.bucket, Key=name, Range=f"bytes={start}-{start + length - 1}")
            except ClientError as exc:
                if _error(exc)[0] == "InvalidRange":  # starts at or past the end
                    return b""
                raise
            with closing(response["Body"]) as body:
                return body.read()

    def delete(self, key: str) -> None:
        name = self._name(key)
        with _s3_errors():
            self.client.delete_object(Bucket=self.bucket, Key=name)

    def keys(self) -> Iterator[str]:
        """Every key under the root path; objects with other names are not keys."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._prefix, Delimiter="/")
        with _s3_errors():
            for page in pages:
                for item in page.get("Contents", ()):
                    name = item["Key"][len(self._prefix):]
                    if _is_key(name):
                        yield name

    def stat(self, key: str) -> BlobStat:
        """One HEAD: ContentLength and LastModified (for an object written by a multipart
        upload, a service may give the time the upload started: at most the duration of
        one upload earlier than its completion)."""
        with _s3_errors(key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        return BlobStat(int(head["ContentLength"]), head["LastModified"].timestamp())

    def sweep_interrupted(self, older_than: float, *, delete: bool = False) -> list[str]:
        """Multipart uploads a dead process never completed nor aborted (their parts cost
        storage until aborted), as ``key (upload id)``; needs s3:ListBucketMultipartUploads
        (and s3:AbortMultipartUpload to delete)."""
        limit, found = time.time() - older_than, []
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=self._prefix)
        with _s3_errors():
            for page in pages:
                for upload in page.get("Uploads", ()):
                    name = upload["Key"][len(self._prefix):]
                    if not _is_key(name) or upload["Initiated"].timestamp() > limit:
                        continue
                    if delete:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    found.append(f"{name} (upload {upload['UploadId']})")
        return found


def _endpoint_url(endpoint: str | None) -> str | None:
    """Orthanc accepts a bare host ("minio:9000"); boto3 wants a URL (https by default)."""
    if not endpoint:
        return None
    return endpoint if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://", endpoint) else f"https://{endpoint}"


def _transfer_config() -> TransferConfig:
    """Multipart above ``PART_SIZE``: one part uploading while the next is read."""
    config = TransferConfig(multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE,
                            max_concurrency=2, preferred_transfer_client="classic")
    config.max_in_memory_upload_chunks = 1  # s3transfer's setting; boto3 has no argument
    config.max_submission_concurrency = 1  # one thread reads the client's stream
    return config


def _client_config(virtual_addressing: bool, connection_timeout: float,
                   request_timeout: float, max_attempts: int, *, compatible: bool) -> Config:
    """botocore settings; S3-compatible services get checksums only where S3 requires them
    (many reject the CRC trailers botocore adds by default since 1.36)."""
    checksums = "when_required" if compatible else "when_supported"
    return Config(
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=connection_timeout,
        read_timeout=request_timeout,
        s3={"addressing_style": "virtual" if virtual_addressing else "path"},
        max_pool_connections=16,
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
