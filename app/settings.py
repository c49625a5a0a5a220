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
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from app.errors import ConfigurationError
from app.vocabulary import IGNORED, suggestion

log = logging.getLogger(__name__)

CONFIG_ENV = "DICOMWEB_CONFIG"
METADATA_MODES = ("Full", "MainDicomTags", "Extrapolate")
BINARY_MODES = ("BulkDataURI", "InlineBinary", "ArrayOfValues")
ROLES = ("read-only", "read-write", "admin")
# CORS defaults, shared by the schema and the Cors dataclass.
CORS_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
CORS_HEADERS = ("Accept", "Authorization", "Content-Type", "Content-Length", "Range")
CORS_EXPOSED = ("Content-Length", "Content-Location", "Content-Type", "Warning", "Location")
# DefaultEncoding values Orthanc accepts (Toolbox::StringToEncoding).
ENCODINGS = ("Ascii", "Utf8", "Latin1", "Latin2", "Latin3", "Latin4", "Latin5", "Cyrillic",
             "Windows1251", "Arabic", "Greek", "Hebrew", "Thai", "Japanese", "Chinese",
             "JapaneseKanji", "Korean", "SimplifiedChinese")


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


_JSON_TYPES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "an array", dict: "an object", type(None): "null"}


def _given(value: Any) -> str:
    """What a wrong value is, for messages: ``"yes" (a string)``."""
    shown = json.dumps(value) if not isinstance(value, dict | list) else type(value).__name__
    return f"{shown[:40]} ({_JSON_TYPES.get(type(value), type(value).__name__)})"


class _Boolean(fields.Boolean):
    """JSON ``true``/``false`` only: like Orthanc, ``"yes"``, ``1`` or ``"true"`` are refused."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError(f"expected true or false, got {_given(value)}.")
        return value


class _Integer(fields.Integer):
    """JSON integers only: like Orthanc, ``"8042"`` or ``8042.0`` are refused."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"expected an integer, got {_given(value)}.")
        return super()._deserialize(value, attr, data, **kwargs)


class _ProtocolVersion(fields.Integer):
    """``SslMinimumProtocolVersion``: 0-5 (civetweb's ``ssl_protocol_version``), an integer
    or, as Orthanc 1.8 configurations wrote it, a string of one digit."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
            raise ValidationError(f"expected an integer from 0 to 5, got {_given(value)}.")
        return value


class _String(fields.String):
    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise ValidationError(f"expected a string, got {_given(value)}.")
        return super()._deserialize(value, attr, data, **kwargs)



# Names the configuration's own Dictionary defines, while that configuration is validated
# (nothing is registered with pydicom before the server starts).
_DICTIONARY_NAMES: ContextVar[frozenset[str]] = ContextVar("dictionary_names",
                                                           default=frozenset())


def _check_tags(names: list[str]) -> None:
    """Extrapolated tags must be keywords or tags, of pydicom's dictionary or of the
    configuration's ``Dictionary`` (Orthanc refuses to start otherwise)."""
    from app.dicom.query import tag_of  # pydicom's dictionary; imported only when used

    bad = []
    for name in names:
        try:
            tag_of(name)
        except ValueError:
            if name not in _DICTIONARY_NAMES.get():
                bad.append(name)
    if bad:
        raise ValidationError(f"Unknown DICOM tag(s): {', '.join(map(repr, bad))}.")


def _check_servers(servers: Any) -> None:
    """Remote DICOMweb servers (reference §7.1): a bad definition stops start-up naming the
    server and the problem (Orthanc logs it and goes on without the server)."""
    from app.client.servers import ServerDefinitionError, parse_servers

    try:
        parse_servers(servers)
    except ServerDefinitionError as exc:
        raise ValidationError(str(exc)) from None


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class DicomWebSchema(_Strict):
    """The ``DicomWeb`` section of reference §2.1 (server and client options)."""

    Enable = _Boolean(load_default=True)
    Root = _String(load_default="/dicom-web/")
    EnableWado = _Boolean(load_default=True)
    WadoRoot = _String(load_default="/wado")
    Ssl = _Boolean(load_default=False)
    Host = _String(load_default="")
    PublicRoot = _String(load_default=None, allow_none=True)
    QidoCaseSensitive = _Boolean(load_default=None, allow_none=True)
    StudiesMetadata = _String(load_default="Full", validate=validate.OneOf(METADATA_MODES))
    SeriesMetadata = _String(load_default="Full", validate=validate.OneOf(METADATA_MODES))
    StudiesMetadataExtrapolatedTags = fields.List(_String(), load_default=list,
                                                  validate=_check_tags)
    SeriesMetadataExtrapolatedTags = fields.List(_String(), load_default=list,
                                                 validate=_check_tags)
    # Removed from Orthanc's plugin in 1.0 (reference §2.1); old files still carry them.
    StowMaxInstances = _Integer(load_default=10)
    StowMaxSize = _Integer(load_default=10)
    OtherBinaryMode = _String(load_default="BulkDataURI",
                                    validate=validate.OneOf(BINARY_MODES))
    Servers = fields.Raw(load_default=dict, validate=_check_servers)
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

    BucketName = _String(required=True)
    Region = _String(load_default=None, allow_none=True)
    AccessKey = _String(load_default=None, allow_none=True)
    SecretKey = _String(load_default=None, allow_none=True)
    Endpoint = _String(load_default=None, allow_none=True)
    VirtualAddressing = _Boolean(load_default=True)
    ConnectionTimeout = _Integer(load_default=30, validate=validate.Range(min=1))
    RequestTimeout = _Integer(load_default=1200, validate=validate.Range(min=1))
    RootPath = _String(load_default="")
    CreateBucket = _Boolean(load_default=False)  # ours: create the bucket at start-up
    # Ours: attempts per S3 request (the first included) before answering 503.
    MaxAttempts = _Integer(load_default=5, validate=validate.Range(min=1))
    # Orthanc plugin keys accepted and ignored here (docs/conformance.md).
    StorageStructure = _String(load_default="flat")
    MigrationFromFileSystemEnabled = _Boolean(load_default=False)
    EnableAwsSdkLogs = _Boolean(load_default=False)
    StorageEncryption = fields.Raw(load_default=None, allow_none=True)
    HybridMode = _String(load_default="Disabled")
    UseTransferManager = _Boolean(load_default=False)
    TransferPoolSize = _Integer(load_default=10)
    TransferBufferSize = _Integer(load_default=5)


class PostgreSQLSchema(_Strict):
    """Orthanc's PostgreSQL plugin section; ``EnableIndex`` = the index lives in PostgreSQL."""

    EnableIndex = _Boolean(load_default=False)
    EnableStorage = _Boolean(load_default=False)
    Host = _String(load_default="localhost")
    Port = _Integer(load_default=5432, validate=validate.Range(min=1, max=65535))
    Database = _String(load_default="orthanc")
    Username = _String(load_default="orthanc")
    Password = _String(load_default="")
    ConnectionUri = _String(load_default=None, allow_none=True)
    IndexConnectionsCount = _Integer(load_default=10, validate=validate.Range(min=1))
    # Orthanc plugin keys accepted and ignored here (docs/conformance.md).
    EnableSsl = _Boolean(load_default=False)
    Lock = _Boolean(load_default=True)
    MaximumConnectionRetries = _Integer(load_default=10)
    ConnectionRetryInterval = _Integer(load_default=5)
    TransactionMode = _String(load_default="SERIALIZABLE")
    EnableVerboseLogs = _Boolean(load_default=False)
    HousekeepingInterval = _Integer(load_default=1)


class CorsSchema(_Strict):
    """Ours: Cross-Origin Resource Sharing, so that a viewer served from another origin can
    call the server directly (Orthanc needs a reverse proxy for it). Empty = CORS off."""

    AllowedOrigins = fields.List(_String(), load_default=list)  # ["*"] = any origin
    AllowedMethods = fields.List(_String(), load_default=lambda: list(CORS_METHODS))
    AllowedHeaders = fields.List(_String(), load_default=lambda: list(CORS_HEADERS))
    ExposedHeaders = fields.List(_String(), load_default=lambda: list(CORS_EXPOSED))
    AllowCredentials = _Boolean(load_default=False)
    MaxAge = _Integer(load_default=600, validate=validate.Range(min=0))


class LimitsSchema(_Strict):
    """Ours: request limits; going over answers 413/431/400 with a JSON reason. 0 = none."""

    MaximumRequestSize = _Integer(load_default=0, validate=validate.Range(min=0))  # MiB
    MaximumStowInstances = _Integer(load_default=0, validate=validate.Range(min=0))
    MaximumHeaderSize = _Integer(load_default=8190, validate=validate.Range(min=256))  # bytes
    MaximumHeaderCount = _Integer(load_default=100, validate=validate.Range(min=10))
    # Data elements + sequence items of one stored instance (hostile files: 0xA700).
    MaximumInstanceElements = _Integer(load_default=1_000_000, validate=validate.Range(min=0))
    # ZIP archives of POST /instances: entries, and uncompressed MiB in all (zip bombs).
    MaximumArchiveMembers = _Integer(load_default=100_000, validate=validate.Range(min=0))
    MaximumArchiveSize = _Integer(load_default=0, validate=validate.Range(min=0))  # MiB


class SettingsSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    Name = _String(load_default="DICOMweb")
    HttpPort = _Integer(load_default=8042, validate=validate.Range(min=0, max=65535))
    RemoteAccessEnabled = _Boolean(load_default=False)
    RemoteAccessAllowed = _Boolean(load_default=False)  # Orthanc's name for the same switch
    StorageDirectory = _String(load_default="OrthancStorage")
    IndexDirectory = _String(load_default=None, allow_none=True)
    DefaultEncoding = _String(load_default="Latin1", validate=validate.OneOf(ENCODINGS))
    CaseSensitivePN = _Boolean(load_default=False)
    ReadOnly = _Boolean(load_default=False)
    # Orthanc's options that change what DICOMweb answers (docs/configuration.md).
    StorageCompression = _Boolean(load_default=False)
    MaximumStorageSize = _Integer(load_default=0, validate=validate.Range(min=0))  # MB
    MaximumPatientCount = _Integer(load_default=0, validate=validate.Range(min=0))
    MaximumStorageMode = _String(load_default="Recycle",
                                       validate=validate.OneOf(("Recycle", "Reject")))
    OverwriteInstances = _Boolean(load_default=False)
    HttpDescribeErrors = _Boolean(load_default=True)
    LimitFindResults = _Integer(load_default=0, validate=validate.Range(min=0))
    LimitFindInstances = _Integer(load_default=0, validate=validate.Range(min=0))
    Dictionary = fields.Dict(keys=_String(), values=fields.List(fields.Raw()),
                             load_default=dict)
    DefaultPrivateCreator = _String(load_default="")
    LoadPrivateDictionary = _Boolean(load_default=True)
    ExtraMainDicomTags = fields.Dict(keys=_String(validate=validate.OneOf(
        ("Patient", "Study", "Series", "Instance"))), values=fields.List(_String()),
        load_default=dict)
    # Security (Orthanc's keys; docs/security.md). AuthenticationEnabled unset = the value
    # of RemoteAccessAllowed, as in Orthanc. RegisteredUsers values are plain passwords or
    # hashes ("pbkdf2_sha256$iterations$salt$hash", ours).
    AuthenticationEnabled = _Boolean(load_default=None, allow_none=True)
    RegisteredUsers = fields.Dict(keys=_String(), values=_String(), load_default=dict)
    SslEnabled = _Boolean(load_default=False)
    SslCertificate = _String(load_default="certificate.pem")
    SslVerifyPeers = _Boolean(load_default=False)
    SslTrustedClientCertificates = _String(load_default="")
    # Orthanc ≥ 1.8.2: the oldest protocol accepted (4: TLS 1.2) and the TLS ≤ 1.2 cipher
    # suites (OpenSSL names; unset: Orthanc's FIPS 140-2 list).
    SslMinimumProtocolVersion = _ProtocolVersion(load_default=4)
    SslCiphersAccepted = fields.List(_String(), load_default=None, allow_none=True)
    # Ours: a role per user ("read-only", "read-write", "admin"); users not listed are
    # "read-write" (Orthanc has no roles: every registered user may do everything but
    # what the admin role guards here).
    UserRoles = fields.Dict(keys=_String(), values=_String(validate=validate.OneOf(ROLES)),
                            load_default=dict)
    Cors = fields.Nested(CorsSchema, load_default=lambda: CorsSchema().load({}))
    Limits = fields.Nested(LimitsSchema, load_default=lambda: LimitsSchema().load({}))
    # Ours: one JSON line per request touching patient data, appended to this file ("" = off).
    AuditLogFile = _String(load_default="")
    HttpTimeout = _Integer(load_default=60, validate=validate.Range(min=0))
    # Orthanc's outgoing HTTP client options, for the DICOMweb client (docs/client.md).
    HttpProxy = _String(load_default="")
    HttpsVerifyPeers = _Boolean(load_default=True)
    HttpsCACertificates = _String(load_default="")
    # Jobs (docs/jobs.md): jobs each worker process runs at once (0: one per core), and
    # finished jobs kept for /jobs.
    ConcurrentJobs = _Integer(load_default=2, validate=validate.Range(min=0))
    JobsHistorySize = _Integer(load_default=10, validate=validate.Range(min=0))
    HttpRequestTimeout = _Integer(load_default=30, validate=validate.Range(min=0))
    KeepAlive = _Boolean(load_default=True)
    KeepAliveTimeout = _Integer(load_default=1, validate=validate.Range(min=0))
    DicomWeb = fields.Nested(DicomWebSchema, load_default=lambda: DicomWebSchema().load({}))
    Gunicorn = fields.Nested(GunicornSchema, load_default=lambda: GunicornSchema().load({}))
    AwsS3Storage = fields.Nested(AwsS3StorageSchema, load_default=None, allow_none=True)
    PostgreSQL = fields.Nested(PostgreSQLSchema, load_default=None, allow_none=True)

    @post_load
    def _build(self, data: dict[str, Any], **_: Any) -> Settings:
        data["Cors"] = Cors(**data["Cors"])
        data["Limits"] = Limits(**data["Limits"])
        data["DicomWeb"] = DicomWeb(**data["DicomWeb"])
        data["Gunicorn"] = Gunicorn(**data["Gunicorn"])
        if data["AwsS3Storage"] is not None:
            data["AwsS3Storage"] = AwsS3Storage(**data["AwsS3Storage"])
        if data["PostgreSQL"] is not None:
            data["PostgreSQL"] = PostgreSQL(**data["PostgreSQL"])
        return Settings(**data)


@dataclass(frozen=True)
class Cors:
    AllowedOrigins: list[str] = field(default_factory=list)
    AllowedMethods: list[str] = field(default_factory=lambda: list(CORS_METHODS))
    AllowedHeaders: list[str] = field(default_factory=lambda: list(CORS_HEADERS))
    ExposedHeaders: list[str] = field(default_factory=lambda: list(CORS_EXPOSED))
    AllowCredentials: bool = False
    MaxAge: int = 600


@dataclass(frozen=True)
class Limits:
    MaximumRequestSize: int = 0
    MaximumStowInstances: int = 0
    MaximumHeaderSize: int = 8190
    MaximumHeaderCount: int = 100
    MaximumInstanceElements: int = 1_000_000
    MaximumArchiveMembers: int = 100_000
    MaximumArchiveSize: int = 0


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
    StorageCompression: bool = False
    MaximumStorageSize: int = 0
    MaximumPatientCount: int = 0
    MaximumStorageMode: str = "Recycle"
    OverwriteInstances: bool = False
    HttpDescribeErrors: bool = True
    LimitFindResults: int = 0
    LimitFindInstances: int = 0
    Dictionary: dict[str, list[Any]] = field(default_factory=dict)
    DefaultPrivateCreator: str = ""
    LoadPrivateDictionary: bool = True
    ExtraMainDicomTags: dict[str, list[str]] = field(default_factory=dict)
    AuthenticationEnabled: bool | None = None
    RegisteredUsers: dict[str, str] = field(default_factory=dict)
    SslEnabled: bool = False
    SslCertificate: str = "certificate.pem"
    SslVerifyPeers: bool = False
    SslTrustedClientCertificates: str = ""
    SslMinimumProtocolVersion: int = 4
    SslCiphersAccepted: list[str] | None = None
    UserRoles: dict[str, str] = field(default_factory=dict)
    Cors: Cors = field(default_factory=Cors)
    Limits: Limits = field(default_factory=Limits)
    AuditLogFile: str = ""
    HttpTimeout: int = 60
    HttpProxy: str = ""
    HttpsVerifyPeers: bool = True
    HttpsCACertificates: str = ""
    ConcurrentJobs: int = 2
    JobsHistorySize: int = 10
    HttpRequestTimeout: int = 30
    KeepAlive: bool = True
    KeepAliveTimeout: int = 1
    DicomWeb: DicomWeb = field(default_factory=DicomWeb)
    Gunicorn: Gunicorn = field(default_factory=Gunicorn)
    AwsS3Storage: AwsS3Storage | None = None
    PostgreSQL: PostgreSQL | None = None
    source: str = "<defaults>"
    ignored: tuple[tuple[str, str], ...] = ()  # (key, reason) of the Orthanc keys not used

    @property
    def remote_access(self) -> bool:
        """Listen beyond loopback: Orthanc's ``RemoteAccessAllowed`` or ``RemoteAccessEnabled``."""
        return self.RemoteAccessAllowed or self.RemoteAccessEnabled

    @property
    def authentication(self) -> bool:
        """HTTP Basic authentication on: AuthenticationEnabled, or when unset, remote access
        (Orthanc ≥ 1.5.8)."""
        if self.AuthenticationEnabled is not None:
            return self.AuthenticationEnabled
        return self.remote_access

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
SECTIONS: dict[str, type[Schema]] = {"DicomWeb": DicomWebSchema, "Gunicorn": GunicornSchema,
                                     "AwsS3Storage": AwsS3StorageSchema,
                                     "PostgreSQL": PostgreSQLSchema, "Cors": CorsSchema,
                                     "Limits": LimitsSchema}


def ignored_keys(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, reason) of the Orthanc keys present that this server does not use."""
    return [(key, IGNORED[key]) for key in sorted(data) if key in IGNORED]


def parse_settings(data: dict[str, Any], source: str = "<dict>",
                   origins: dict[str, str] | None = None) -> Settings:
    """Validate a decoded configuration; errors name the file, the key and, for an unknown
    key, the closest known one. ``origins`` maps each top-level key to the file defining it
    (a configuration folder)."""
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: the configuration must be a JSON object")
    origins = origins or {}
    unknown = sorted(set(data) - KNOWN_TOP_LEVEL - set(IGNORED))
    if unknown:
        raise ConfigurationError("; ".join(
            f"{origins.get(key, source)}: unknown configuration key \"{key}\""
            f"{suggestion(key, KNOWN_TOP_LEVEL | set(IGNORED))}" for key in unknown))
    _log_ignored(data, source)
    names = _DICTIONARY_NAMES.set(_dictionary_names(data))
    try:
        settings: Settings = SettingsSchema().load({k: v for k, v in data.items()
                                                    if k in KNOWN_TOP_LEVEL})
    except ValidationError as exc:
        raise ConfigurationError("; ".join(_problems(exc.messages, source, origins))) from None
    finally:
        _DICTIONARY_NAMES.reset(names)
    return replace(settings, source=source, ignored=tuple(ignored_keys(data)))


def _dictionary_names(data: dict[str, Any]) -> frozenset[str]:
    """Keywords the ``Dictionary`` of this configuration defines (invalid entries are
    reported by its own check)."""
    dictionary, creator = data.get("Dictionary"), data.get("DefaultPrivateCreator", "")
    if not isinstance(dictionary, dict) or not isinstance(creator, str):
        return frozenset()
    from app.dicom.dictionary import parse_entries

    return frozenset(entry.name for entry in parse_entries(dictionary, creator)[0])


def _log_ignored(data: dict[str, Any], source: str) -> None:
    """One line per reason, naming the keys it covers."""
    by_reason: dict[str, list[str]] = {}
    for key, reason in ignored_keys(data):
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        log.info("%s: ignored %s: %s", source, ", ".join(keys), reason)


def _problems(messages: Any, source: str, origins: dict[str, str]) -> list[str]:
    """marshmallow's nested messages as ``file: Section.Key: problem`` lines."""
    out = []
    for key, value in messages.items():
        where = origins.get(key, source)
        schema = SECTIONS.get(key)
        if schema is not None and isinstance(value, dict):
            known = set(schema().fields)
            for line in _flatten(value, f"{key}."):
                name, _, problem = line.partition(": ")
                inner = name.split(".")[-1]
                if problem == "Unknown field.":
                    problem = f"unknown key{suggestion(inner, known)}"
                out.append(f"{where}: {name}: {problem}")
        else:
            out.extend(f"{where}: {line}" for line in _flatten(value, f"{key}."))
    return out


def _flatten(messages: Any, prefix: str = "") -> list[str]:
    """Nested marshmallow messages into ``Section.Key: problem`` lines."""
    if isinstance(messages, dict):
        # "_schema" is marshmallow's key for errors about a whole section (not an object).
        return [line for k, v in messages.items()
                for line in _flatten(v, prefix if k == "_schema" else f"{prefix}{k}.")]
    if isinstance(messages, list) and messages and isinstance(messages[0], str):
        return [f"{prefix.rstrip('.')}: {' '.join(messages)}"]
    return [f"{prefix.rstrip('.')}: {messages}"]


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the file given, else the one named by ``$DICOMWEB_CONFIG``, else defaults.

    With no file at all the server keeps its data in ``./data`` (filesystem storage
    and SQLite index), which is what the README's first command relies on.
    """
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return parse_settings({"StorageDirectory": "data/storage",
                               "IndexDirectory": "data/index"}, "<defaults>")
    data, origins = read_configuration(path)
    return parse_settings(data, str(path), origins)


def read_configuration(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The decoded configuration of a file, or of a folder as Orthanc reads one: every
    ``*.json`` in it (not recursive) merged at the top level, a key defined in two files
    being an error naming both. Returns the data and the file each top-level key came from."""
    if not Path(path).is_dir():
        data = read_file(path)
        return data, dict.fromkeys(data, str(path))
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    files = sorted(p for p in Path(path).iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise ConfigurationError(f"{path}: no *.json configuration file in this folder")
    for file in files:
        for key, value in read_file(file).items():
            if key in origins:
                raise ConfigurationError(
                    f'configuration key "{key}" is defined in both {origins[key]} and {file}')
            merged[key], origins[key] = value, str(file)
    return merged, origins


def read_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """One JSON file with comments; errors name the file."""
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
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: the configuration must be a JSON object")
    return data
