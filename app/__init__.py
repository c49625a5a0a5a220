"""Application factory: build the backends, register one blueprint per service,
map every error to a JSON answer. This is the one wiring function."""

from __future__ import annotations

import logging
import os

from flask import Flask, Response, json, request
from werkzeug.exceptions import HTTPException

from app.audit import install_audit
from app.cors import install_cors
from app.errors import DicomWebError, MethodNotAllowed, ServiceUnavailable
from app.http import CollapseSlashes
from app.jobs import EXTENSION as JOBS
from app.jobs import JobEngine
from app.security import install_security
from app.services import EXTENSION, Services
from app.settings import Settings, load_settings
from backends import filesystem_storage, sqlite_index
from backends.base import BackendUnavailable, Index, StorageArea

log = logging.getLogger(__name__)
READ_METHODS = ("GET", "HEAD", "OPTIONS")


def create_app(
    settings: Settings | None = None,
    *,
    storage: StorageArea | None = None,
    index: Index | None = None,
) -> Flask:
    """Build the WSGI application from settings (default: ``load_settings()``).

    ``storage`` and ``index`` may be injected (contract and API tests); otherwise
    they are built from the settings.
    """
    settings = settings or load_settings()
    configure_dicom(settings)
    app = Flask(__name__)
    app.json.sort_keys = False  # DICOM JSON keeps tag order
    app.extensions[EXTENSION] = Services(
        settings=settings,
        storage=storage or build_storage(settings),
        index=index or build_index(settings),
    )
    # Jobs (app/jobs.py): runner threads start in each worker, never here (gunicorn's
    # master builds the app before it forks).
    app.extensions[JOBS] = JobEngine(app.extensions[EXTENSION],
                                     concurrency=settings.ConcurrentJobs or os.cpu_count() or 1,
                                     history=settings.JobsHistorySize,
                                     context=app.app_context)
    _register_blueprints(app, settings)
    _register_error_handlers(app)
    install_audit(app, settings)  # first: its status hook runs after every other one
    install_security(app, settings)  # the first before_request hook: nothing answers earlier
    app.wsgi_app = CollapseSlashes(app.wsgi_app)  # type: ignore[method-assign]
    install_cors(app, settings)  # outermost: preflights answered before any other layer
    return app


def configure_dicom(settings: Settings) -> None:
    """Process-wide DICOM knowledge from the configuration, before anything is ingested or
    parsed: Orthanc's Dictionary (tags, VRs, keywords, private creators), then
    ExtraMainDicomTags (which may name keywords the Dictionary defines)."""
    from app.dicom import dictionary, ingest
    from app.dicom.levels import configure_extra_tags

    dictionary.configure(settings.Dictionary, settings.DefaultPrivateCreator,
                         settings.LoadPrivateDictionary, settings.DefaultEncoding)
    configure_extra_tags(settings.ExtraMainDicomTags)
    ingest.configure(settings.Limits.MaximumInstanceElements)


def build_storage(settings: Settings) -> StorageArea:
    """S3 when an ``AwsS3Storage`` section is present (Orthanc's S3 plugin), else files;
    zlib-compressed blobs with ``StorageCompression`` (either way)."""
    from backends import compressed_storage

    # Always wrapped: a blob's key says whether it is compressed, so turning the option
    # off leaves the compressed files readable, and plain blobs cost nothing extra.
    return compressed_storage(_base_storage(settings), settings.StorageCompression)


def _base_storage(settings: Settings) -> StorageArea:
    s3 = settings.AwsS3Storage
    if s3 is None:
        return filesystem_storage(settings.storage_path)
    from backends import s3_storage

    return s3_storage(
        bucket=s3.BucketName, region=s3.Region, access_key=s3.AccessKey,
        secret_key=s3.SecretKey, endpoint=s3.Endpoint or None,
        virtual_addressing=s3.VirtualAddressing, connection_timeout=s3.ConnectionTimeout,
        request_timeout=s3.RequestTimeout, root_path=s3.RootPath,
        create_bucket=s3.CreateBucket, max_attempts=s3.MaxAttempts,
    )


def build_index(settings: Settings) -> Index:
    """PostgreSQL when ``PostgreSQL.EnableIndex`` (Orthanc's plugin), else SQLite."""
    pg = settings.PostgreSQL
    if pg is None or not pg.EnableIndex:
        return sqlite_index(settings.index_path)
    from backends import postgres_dsn, postgres_index

    dsn = pg.ConnectionUri or postgres_dsn(pg.Host, pg.Port, pg.Database, pg.Username,
                                           pg.Password)
    # A pool that cannot connect within 10 s answers 503 rather than holding the request.
    return postgres_index(dsn, max_size=pg.IndexConnectionsCount, timeout=10)


def _register_blueprints(app: Flask, settings: Settings) -> None:
    from app import (
        delete,
        dicomweb_client,
        jobs_api,
        orthanc_api,
        qido_rs,
        stow_rs,
        wado_rs,
        wado_uri,
        web,
    )

    dicomweb = settings.DicomWeb
    prefix = dicomweb.root.rstrip("/")
    if dicomweb.Enable:
        for module in (qido_rs, wado_rs, stow_rs, delete, dicomweb_client):
            app.register_blueprint(module.blueprint, url_prefix=prefix)
        app.register_blueprint(orthanc_api.info_blueprint, url_prefix=prefix)  # {root}info
        app.register_blueprint(web.client_blueprint, url_prefix=prefix)  # {root}app/client/
        if settings.ReadOnly:
            _refuse_writes(app, (stow_rs.blueprint.name, delete.blueprint.name))
    if dicomweb.EnableWado:
        app.register_blueprint(wado_uri.blueprint, url_prefix=dicomweb.wado_root)
    # Orthanc's own REST API lives at the server root, beside {root} (reference §1.3).
    for module in (orthanc_api, jobs_api, web):
        app.register_blueprint(module.blueprint)
    if settings.ReadOnly:
        _refuse_writes(app, orthanc_api.WRITE_ENDPOINTS)


def _refuse_writes(app: Flask, blueprints: tuple[str, ...]) -> None:
    """ReadOnly: every route of the writing services answers 405 with the reason and an
    ``Allow`` of the read methods of its path, before the body is read. The views are
    replaced (the endpoints stay), so authentication hooks still run first."""

    def refuse(**_: object) -> Response:
        adapter = app.create_url_adapter(request)
        allowed = adapter.allowed_methods() if adapter is not None else []
        raise MethodNotAllowed(
            f"This server is read-only (ReadOnly: true): {request.method} is refused",
            headers={"Allow": ", ".join(m for m in allowed if m in READ_METHODS)})

    for endpoint in list(app.view_functions):
        # A blueprint name refuses all its routes, an endpoint name that route only.
        if endpoint.partition(".")[0] in blueprints or endpoint in blueprints:
            app.view_functions[endpoint] = refuse


def error_response(status: int, body: dict[str, object], headers: dict[str, str]) -> Response:
    """A JSON error answer; with ``HttpDescribeErrors: false`` (Orthanc) only the status is
    told, never what went wrong."""
    from app.services import services

    if not services().settings.HttpDescribeErrors:
        body = {key: body[key] for key in ("HttpStatus", "HttpError") if key in body}
    return Response(json.dumps(body), status=status, headers=headers,
                    content_type="application/json")


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DicomWebError)
    def _dicomweb_error(exc: DicomWebError) -> Response:
        return error_response(exc.status, exc.body(request.method, request.path), exc.headers)

    @app.errorhandler(BackendUnavailable)
    def _backend_down(exc: BackendUnavailable) -> Response:
        # The reason names the service, never its address or credentials.
        log.error("backend unavailable on %s %s: %s", request.method, request.path, exc)
        err = ServiceUnavailable(f"Storage or index temporarily unavailable: {exc}")
        return error_response(503, err.body(request.method, request.path),
                              {"Retry-After": "5"})

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # Unknown routes (404), wrong methods (405 with Allow), oversize bodies (413)...
        status = exc.code or 500
        err = DicomWebError(exc.description or exc.name)
        err.status = status
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(status, err.body(request.method, request.path), headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        err = DicomWebError("Internal server error")
        return error_response(500, err.body(request.method, request.path), {})
