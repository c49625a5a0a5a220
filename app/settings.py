"""Orthanc-style JSON settings: one loader, validated with marshmallow.

The file is Orthanc's configuration format: JSON with ``//`` and ``/* */``
comments. Keys keep Orthanc's names so an Orthanc user's ``DicomWeb`` section
works unchanged. A wrong type, or an unknown key inside a section this server
owns (``DicomWeb``, ``Gunicorn``), stops start-up with a message naming the file
and the key. Unknown top-level keys are reported as ignored (Orthanc has many
that do not apply here).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from app.errors import ConfigurationError

log = logging.getLogger(__name__)

CONFIG_ENV = "DICOMWEB_CONFIG"
METADATA_MODES = ("Full", "MainDicomTags", "Extrapolate")
BINARY_MODES = ("BulkDataURI", "InlineBinary", "ArrayOfValues")


def strip_comments(text: str) -> str:
    """Remove ``//`` line comments and ``/* */`` block comments outside JSON strings."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = _string_end(text, i)
            out.append(text[i:j])
            i = j
        elif text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise ValueError("unterminated /* comment")
            out.append(" ")
            i = end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """Index just past the JSON string literal that opens at ``start``."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
        elif text[i] == '"':
            return i + 1
        else:
            i += 1
    return len(text)


class _Boolean(fields.Boolean):
    """JSON ``true``/``false`` only: like Orthanc, ``"yes"``, ``1`` or ``"true"`` are refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class _Integer(fields.Integer):
    """JSON integers only: like Orthanc, ``"8042"`` or ``8042.0`` are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)


def _check_tags(names: list[str]) -> None:
    """Extrapolated tags must be keywords or tags (Orthanc refuses to start otherwise)."""
    from app.dicom.query import tag_of  # pydicom's dictionary; imported only when used

    bad = []
    for name in names:
        try:
            tag_of(name)
        except ValueError:
            bad.append(name)
    if bad:
        raise ValidationError(f"Unknown DICOM tag(s): {', '.join(map(repr, bad))}.")


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class DicomWebSchema(_Strict):
    """The ``DicomWeb`` section of reference §2.1 (server and client options)."""

    Enable = _Boolean(load_default=True)
    Root = fields.String(load_default="/dicom-web/")
    EnableWado = _Boolean(load_default=True)
    WadoRoot = fields.String(load_default="/wado")
    Ssl = _Boolean(load_default=False)
    Host = fields.String(load_default="")
    PublicRoot = fields.String(load_default=None, allow_none=True)
    QidoCaseSensitive = _Boolean(load_default=None, allow_none=True)
    StudiesMetadata = fields.String(load_default="Full", validate=validate.OneOf(METADATA_MODES))
    SeriesMetadata = fields.String(load_default="Full", validate=validate.OneOf(METADATA_MODES))
    StudiesMetadataExtrapolatedTags = fields.List(fields.String(), load_default=list,
                                                  validate=_check_tags)
    SeriesMetadataExtrapolatedTags = fields.List(fields.String(), load_default=list,
                                                 validate=_check_tags)
    # Removed from Orthanc's plugin in 1.0 (reference §2.1); old files still carry them.
    StowMaxInstances = _Integer(load_default=10)
    StowMaxSize = _Integer(load_default=10)
    OtherBinaryMode = fields.String(load_default="BulkDataURI",
                                    validate=validate.OneOf(BINARY_MODES))
    Servers = fields.Raw(load_default=dict)
    ServersInDatabase = _Boolean(load_default=False)
    # Accepted for compatibility; this server has no use for them (docs/conformance.md).
    MetadataWorkerThreadsCount = _Integer(load_default=4)
    EnableMetadataCache = _Boolean(load_default=True)
    WadoRsLoaderThreadsCount = _Integer(load_default=0)
    EnablePerformanceLogs = _Boolean(load_default=False)


class GunicornSchema(_Strict):
    """Our own section: how ``dicomweb-server`` runs gunicorn."""

    Workers = _Integer(load_default=0, validate=validate.Range(min=0))  # 0: 2 per CPU core
    Threads = _Integer(load_default=2, validate=validate.Range(min=1))
    Timeout = _Integer(load_default=300, validate=validate.Range(min=1))


class AwsS3StorageSchema(_Strict):
    """Orthanc's S3 object-storage plugin section; present = blobs go to S3."""

    BucketName = fields.String(required=True)
    Region = fields.String(load_default=None, allow_none=True)
    AccessKey = fields.String(load_default=None, allow_none=True)
    SecretKey = fields.String(load_default=None, allow_none=True)
    Endpoint = fields.String(load_default=None, allow_none=True)
    VirtualAddressing = _Boolean(load_default=True)
    ConnectionTimeout = _Integer(load_default=30, validate=validate.Range(min=1))
    RequestTimeout = _Integer(load_default=1200, validate=validate.Range(min=1))
    RootPath = fields.String(load_default="")
    CreateBucket = _Boolean(load_default=False)  # ours: create the bucket at start-up
    # Ours: attempts per S3 request (the first included) before answering 503.
    MaxAttempts = _Integer(load_default=5, validate=validate.Range(min=1))
    # Orthanc plugin keys accepted and ignored here (docs/conformance.md).
    StorageStructure = fields.String(load_default="flat")
    MigrationFromFileSystemEnabled = _Boolean(load_default=False)
    EnableAwsSdkLogs = _Boolean(load_default=False)
    StorageEncryption = fields.Raw(load_default=None, allow_none=True)
    HybridMode = fields.String(load_default="Disabled")
    UseTransferManager = _Boolean(load_default=False)
    TransferPoolSize = _Integer(load_default=10)
    TransferBufferSize = _Integer(load_default=5)


class PostgreSQLSchema(_Strict):
    """Orthanc's PostgreSQL plugin section; ``EnableIndex`` = the index lives in PostgreSQL."""

    EnableIndex = _Boolean(load_default=False)
    EnableStorage = _Boolean(load_default=False)
    Host = fields.String(load_default="localhost")
    Port = _Integer(load_default=5432, validate=validate.Range(min=1, max=65535))
    Database = fields.String(load_default="orthanc")
    Username = fields.String(load_default="orthanc")
    Password = fields.String(load_default="")
    ConnectionUri = fields.String(load_default=None, allow_none=True)
    IndexConnectionsCount = _Integer(load_default=10, validate=validate.Range(min=1))
    # Orthanc plugin keys accepted and ignored here (docs/conformance.md).
    EnableSsl = _Boolean(load_default=False)
    Lock = _Boolean(load_default=True)
    MaximumConnectionRetries = _Integer(load_default=10)
    ConnectionRetryInterval = _Integer(load_default=5)
    TransactionMode = fields.String(load_default="SERIALIZABLE")
    EnableVerboseLogs = _Boolean(load_default=False)
    HousekeepingInterval = _Integer(load_default=1)


class SettingsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    Name = fields.String(load_default="DICOMweb")
    HttpPort = _Integer(load_default=8042, validate=validate.Range(min=0, max=65535))
    RemoteAccessEnabled = _Boolean(load_default=False)
    RemoteAccessAllowed = _Boolean(load_default=False)  # Orthanc's name for the same switch
    StorageDirectory = fields.String(load_default="OrthancStorage")
    IndexDirectory = fields.String(load_default=None, allow_none=True)
    DefaultEncoding = fields.String(load_default="Latin1")
    CaseSensitivePN = _Boolean(load_default=False)
    ReadOnly = _Boolean(load_default=False)
    DicomWeb = fields.Nested(DicomWebSchema, load_default=lambda: DicomWebSchema().load({}))
    Gunicorn = fields.Nested(GunicornSchema, load_default=lambda: GunicornSchema().load({}))
    AwsS3Storage = fields.Nested(AwsS3StorageSchema, load_default=None, allow_none=True)
    PostgreSQL = fields.Nested(PostgreSQLSchema, load_default=None, allow_none=True)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Settings:
        data["DicomWeb"] = DicomWeb(**data["DicomWeb"])
        data["Gunicorn"] = Gunicorn(**data["Gunicorn"])
        if data["AwsS3Storage"] is not None:
            data["AwsS3Storage"] = AwsS3Storage(**data["AwsS3Storage"])
        if data["PostgreSQL"] is not None:
            data["PostgreSQL"] = PostgreSQL(**data["PostgreSQL"])
        return Settings(**data)


@dataclass(frozen=True)
class DicomWeb:
    Enable: bool = True
    Root: str = "/dicom-web/"
    EnableWado: bool = True
    WadoRoot: str = "/wado"
    Ssl: bool = False
    Host: str = ""
    PublicRoot: str | None = None
    QidoCaseSensitive: bool | None = None
    StudiesMetadata: str = "Full"
    SeriesMetadata: str = "Full"
    StudiesMetadataExtrapolatedTags: list[str] = field(default_factory=list)
    SeriesMetadataExtrapolatedTags: list[str] = field(default_factory=list)
    OtherBinaryMode: str = "BulkDataURI"
    StowMaxInstances: int = 10
    StowMaxSize: int = 10
    Servers: Any = field(default_factory=dict)
    ServersInDatabase: bool = False
    MetadataWorkerThreadsCount: int = 4
    EnableMetadataCache: bool = True
    WadoRsLoaderThreadsCount: int = 0
    EnablePerformanceLogs: bool = False

    @property
    def root(self) -> str:
        """Root normalised to start and end with ``/`` (Orthanc ``GetRootPath``)."""
        return "/" + self.Root.strip("/") + "/" if self.Root.strip("/") else "/"

    @property
    def wado_root(self) -> str:
        """WADO-URI path: a leading ``/`` forced, the trailing one removed."""
        return "/" + self.WadoRoot.strip("/")

    @property
    def public_root(self) -> str:
        """Path prefix of generated absolute URLs (reference §4.9)."""
        if self.PublicRoot is None:
            return self.root
        return "/" + self.PublicRoot.strip("/") + "/" if self.PublicRoot.strip("/") else "/"


@dataclass(frozen=True)
class Gunicorn:
    Workers: int = 0
    Threads: int = 2

    @property
    def workers(self) -> int:
        """``Workers``, or 2 per CPU core when 0: each worker holds the GIL for one
        request's DICOM parsing, so a CPU-bound STOW load needs more processes than cores."""
        return self.Workers or 2 * (os.cpu_count() or 1)
    Timeout: int = 300


@dataclass(frozen=True)
class AwsS3Storage:
    BucketName: str
    Region: str | None = None
    AccessKey: str | None = None
    SecretKey: str | None = None
    Endpoint: str | None = None
    VirtualAddressing: bool = True
    ConnectionTimeout: int = 30
    RequestTimeout: int = 1200
    RootPath: str = ""
    CreateBucket: bool = False
    MaxAttempts: int = 5
    StorageStructure: str = "flat"
    MigrationFromFileSystemEnabled: bool = False
    EnableAwsSdkLogs: bool = False
    StorageEncryption: Any = None
    HybridMode: str = "Disabled"
    UseTransferManager: bool = False
    TransferPoolSize: int = 10
    TransferBufferSize: int = 5


@dataclass(frozen=True)
class PostgreSQL:
    EnableIndex: bool = False
    EnableStorage: bool = False
    Host: str = "localhost"
    Port: int = 5432
    Database: str = "orthanc"
    Username: str = "orthanc"
    Password: str = ""
    ConnectionUri: str | None = None
    IndexConnectionsCount: int = 10
    EnableSsl: bool = False
    Lock: bool = True
    MaximumConnectionRetries: int = 10
    ConnectionRetryInterval: int = 5
    TransactionMode: str = "SERIALIZABLE"
    EnableVerboseLogs: bool = False
    HousekeepingInterval: int = 1


@dataclass(frozen=True)
class Settings:
    Name: str = "DICOMweb"
    HttpPort: int = 8042
    RemoteAccessEnabled: bool = False
    RemoteAccessAllowed: bool = False
    StorageDirectory: str = "OrthancStorage"
    IndexDirectory: str | None = None
    DefaultEncoding: str = "Latin1"
    CaseSensitivePN: bool = False
    ReadOnly: bool = False
    DicomWeb: DicomWeb = field(default_factory=DicomWeb)
    Gunicorn: Gunicorn = field(default_factory=Gunicorn)
    AwsS3Storage: AwsS3Storage | None = None
    PostgreSQL: PostgreSQL | None = None
    source: str = "<defaults>"

    @property
    def remote_access(self) -> bool:
        """Listen beyond loopback: Orthanc's ``RemoteAccessAllowed`` or ``RemoteAccessEnabled``."""
        return self.RemoteAccessAllowed or self.RemoteAccessEnabled

    @property
    def storage_path(self) -> Path:
        return Path(self.StorageDirectory)

    @property
    def index_path(self) -> Path:
        """Orthanc keeps the index beside the storage unless IndexDirectory says otherwise."""
        return Path(self.IndexDirectory or self.StorageDirectory)

    @property
    def qido_case_sensitive(self) -> bool:
        """QidoCaseSensitive if set, else CaseSensitivePN (NEWS 1.2, reference §3.6)."""
        if self.DicomWeb.QidoCaseSensitive is not None:
            return self.DicomWeb.QidoCaseSensitive
        return self.CaseSensitivePN


KNOWN_TOP_LEVEL = set(SettingsSchema().fields)


def parse_settings(data: dict[str, Any], source: str = "<dict>") -> Settings:
    """Validate a decoded configuration; errors name the source and the key."""
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: the configuration must be a JSON object")
    for key in sorted(set(data) - KNOWN_TOP_LEVEL):
        log.info("%s: configuration key %r is not used by this server, ignored", source, key)
    try:
        settings: Settings = SettingsSchema().load(data)
    except ValidationError as exc:
        raise ConfigurationError(f"{source}: {_describe(exc.messages)}") from None
    return replace(settings, source=source)


def _describe(messages: Any, prefix: str = "") -> str:
    """Flatten marshmallow's nested messages into ``Section.Key: problem`` lines."""
    if isinstance(messages, dict):
        # "_schema" is marshmallow's key for errors about a whole section (not an object).
        return "; ".join(_describe(v, prefix if k == "_schema" else f"{prefix}{k}.")
                         for k, v in messages.items())
    if isinstance(messages, list) and messages and isinstance(messages[0], str):
        return f"{prefix.rstrip('.')}: {' '.join(messages)}"
    return f"{prefix.rstrip('.')}: {messages}"


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the file given, else the one named by ``$DICOMWEB_CONFIG``, else defaults.

    With no file at all the server keeps its data in ``./data`` (filesystem storage
    and SQLite index), which is what the README's first command relies on.
    """
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return parse_settings({"StorageDirectory": "data/storage",
                               "IndexDirectory": "data/index"}, "<defaults>")
    source = str(path)
    try:
        # utf-8-sig: a byte order mark left by a Windows editor is not an error.
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigurationError(f"{source}: cannot read the configuration ({exc.strerror})") \
            from None
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"{source}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(strip_comments(text))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{source}: not valid JSON ({exc})") from None
    return parse_settings(data, source)
