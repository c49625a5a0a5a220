"""``dicomweb-server``: serve the application with gunicorn, or migrate a deployment.

    dicomweb-server [serve] [--config FILE|FOLDER] [--workers N] [--threads N] [--port N]
    dicomweb-server check-config FILE|FOLDER
    dicomweb-server check [--config FILE|FOLDER] [--repair] [--grace SECONDS] [--sizes]
    dicomweb-server hash-password [--iterations N] < password
    dicomweb-server migrate --from OLD_CONFIG --to NEW_CONFIG [--delete-source] [--batch N]
                            [--jobs N]

With no configuration the data lives under ``./data`` (filesystem storage and
SQLite index) and the server answers at http://localhost:8042/dicom-web/.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Any

from app.errors import ConfigurationError
from app.migrate import Deployment, Progress, same_index
from app.migrate import migrate as run_migration
from app.settings import CONFIG_ENV, Settings, load_settings
from backends.base import BackendUnavailable


def gunicorn_options(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """gunicorn settings in one place (docs/deployment notes refer to this)."""
    host = "0.0.0.0" if settings.remote_access else "127.0.0.1"
    port = args.port if args.port is not None else settings.HttpPort
    from app.gunicorn_worker import REQUEST_LINE_LIMIT, tls_options

    limits = settings.Limits
    return {
        "bind": f"{host}:{port}",
        "workers": args.workers or settings.Gunicorn.workers,
        # Threads let one worker stream a study while it answers QIDO; a server that
        # lists itself as a remote needs that concurrency too. The worker is gthread with
        # HttpRequestTimeout applied to client sockets (app/gunicorn_worker.py).
        "worker_class": "app.gunicorn_worker.RequestTimeoutWorker",
        "threads": args.threads or settings.Gunicorn.Threads,
        "timeout": settings.Gunicorn.Timeout,
        # Build the app once in the master and fork: workers share its pages (pydicom,
        # numpy, Flask), which keeps the total memory of N workers well below N copies.
        # The index opens its connections lazily in each worker after the fork.
        "preload_app": True,
        "graceful_timeout": 30,
        # gunicorn ≥ 27 opens an admin control socket (~/.gunicorn/gunicorn.ctl, one path
        # for every server of a user): not needed, one attack surface less.
        "control_socket_disable": True,
        # Orthanc's KeepAlive / KeepAliveTimeout: gunicorn closes idle connections after
        # `keepalive` seconds, and 0 turns keep-alive off (Connection: close).
        "keepalive": settings.KeepAliveTimeout if settings.KeepAlive else 0,
        "accesslog": "-" if args.access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        # Limits: gunicorn refuses bigger heads before the app sees them; the worker answers
        # in JSON (431 header size/count, 414 request line).
        "limit_request_field_size": limits.MaximumHeaderSize,
        "limit_request_fields": limits.MaximumHeaderCount,
        "limit_request_line": REQUEST_LINE_LIMIT,
        # SslEnabled: TLS in gunicorn (certfile = keyfile = SslCertificate, checked at
        # start-up); SslVerifyPeers: a client certificate signed by a trusted one required.
        **tls_options(settings),
        # Each worker starts its job runner once forked; the master runs none (app/jobs.py).
        "post_worker_init": _start_jobs,
    }


def _start_jobs(worker: Any) -> None:
    jobs = getattr(worker.wsgi, "extensions", {}).get("jobs")
    if jobs is not None:
        jobs.start()


def serve(settings: Settings, args: argparse.Namespace) -> None:
    from gunicorn.app.base import BaseApplication

    from app import create_app

    if args.port is not None:  # what the app reports (GET /system) is the port it serves on
        settings = dataclasses.replace(settings, HttpPort=args.port)

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings, args).items():
                if value is not None and key in self.cfg.settings:  # older gunicorns lack some
                    self.cfg.set(key, value)

        def load(self) -> Any:
            from app.gunicorn_worker import RequestTimeoutWorker

            RequestTimeoutWorker.request_timeout = float(settings.HttpRequestTimeout)
            RequestTimeoutWorker.describe_errors = settings.HttpDescribeErrors
            RequestTimeoutWorker.header_size = settings.Limits.MaximumHeaderSize
            RequestTimeoutWorker.header_count = settings.Limits.MaximumHeaderCount
            return create_app(settings)

    _Server().run()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dicomweb-server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _serve_options(parser)
    commands = parser.add_subparsers(
        dest="command", metavar="{serve,check-config,check,migrate,hash-password}")
    # Options may also follow ``serve``; SUPPRESS keeps the subparser from resetting the
    # ones given before it to their defaults.
    _serve_options(commands.add_parser("serve", help="run the server (the default)"),
                   suppress=True)
    check = commands.add_parser(
        "check-config", help="print what a configuration means; exit 1 on problems")
    check.add_argument("path", metavar="FILE|FOLDER",
                       help="an Orthanc-style JSON file, or a folder of them")
    _check_options(commands.add_parser(
        "check", help="compare the index with the storage; exit 1 on problems",
        description=CHECK_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    _migrate_options(commands.add_parser(
        "migrate", help="copy every instance from one deployment to another",
        description=MIGRATE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter))
    hashing = commands.add_parser(
        "hash-password", help="print a RegisteredUsers value for a password read from stdin")
    hashing.add_argument("--iterations", type=_positive, default=600_000, metavar="N",
                         help="PBKDF2-SHA256 iterations (default: 600000)")
    args = parser.parse_args(argv)
    args.command = args.command or "serve"
    return args


def _serve_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", default=default,
                        help=f"Orthanc-style JSON file or folder (default: ${CONFIG_ENV})")
    parser.add_argument("--workers", type=int, default=default,
                        help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=default, help="threads per worker")
    parser.add_argument("--port", type=int, default=default,
                        help="HTTP port (default: HttpPort, 8042)")
    parser.add_argument("--access-log", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="log every request")


CHECK_HELP = """\
Compare the index with the storage of the deployment the configuration describes (the
server may keep running): orphan blobs (no index row refers to them), index rows whose
blob is missing, interrupted writes, and with --sizes blobs whose size differs from the
recorded one. --repair removes the rows without blobs (index first), then deletes the
orphan blobs and interrupted writes older than the grace period: a younger unreferenced
blob may belong to a STOW in flight (blob written, index row not yet committed), so it is
never deleted. Exit status: 0 consistent, 1 problems remain, 2 bad configuration or a
backend unreachable.
"""


def _check_options(parser: argparse.ArgumentParser) -> None:
    from app.consistency import DEFAULT_GRACE

    parser.add_argument("--config", default=argparse.SUPPRESS,
                        help=f"Orthanc-style JSON file or folder (default: ${CONFIG_ENV})")
    parser.add_argument("--repair", action="store_true",
                        help="remove rows without blobs, delete orphan blobs older than the"
                             " grace period and interrupted writes")
    parser.add_argument("--grace", type=float, default=DEFAULT_GRACE, metavar="SECONDS",
                        help="age under which an unreferenced blob is left alone, as maybe a"
                             f" STOW in flight (default: {DEFAULT_GRACE:.0f})")
    parser.add_argument("--sizes", action="store_true",
                        help="also compare every blob's size with the recorded one (one stat,"
                             " on S3 one HEAD request, per instance)")


def run_check(args: argparse.Namespace) -> int:
    """``dicomweb-server check``: the same backends as the server, the report on stdout."""
    from app import build_index, build_storage
    from app.consistency import check

    if args.grace < 0:
        print("dicomweb-server: --grace cannot be negative", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
        storage, index = build_storage(settings), build_index(settings)
    except (ConfigurationError, ValueError) as exc:
        print(f"dicomweb-server: configuration error: {exc}", file=sys.stderr)
        return 2
    except BackendUnavailable as exc:
        print(f"dicomweb-server: {exc}", file=sys.stderr)
        return 2
    print(f"storage: {storage!r}\nindex: {index!r}", flush=True)
    try:
        report = check(storage, index, repair=args.repair, grace=args.grace, sizes=args.sizes)
    except BackendUnavailable as exc:
        print(f"dicomweb-server: check stopped: {exc}", file=sys.stderr)
        return 2
    finally:
        index.close()
    print(report.text())
    return 0 if report.consistent else 1


MIGRATE_HELP = """\
Copy every instance of the deployment OLD_CONFIG describes into the one NEW_CONFIG
describes (e.g. filesystem + SQLite -> S3 + PostgreSQL), re-ingesting each file as STOW
does. Instances already in the target are skipped: run it again to resume. Exit status:
0 all copied, 1 some instance failed or a backend became unreachable, 2 bad configuration.
"""


def _migrate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="OLD_CONFIG",
                        help="configuration of the deployment to copy from")
    parser.add_argument("--to", dest="target", required=True, metavar="NEW_CONFIG",
                        help="configuration of the deployment to copy to")
    parser.add_argument("--delete-source", action="store_true",
                        help="remove each instance from the old deployment once copied")
    parser.add_argument("--batch", type=_positive, default=100, metavar="N",
                        help="studies listed per index query (default: 100)")
    parser.add_argument("--jobs", type=_positive, default=4, metavar="N",
                        help="instances copied at once (default: 4)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def migrate(args: argparse.Namespace) -> int:
    """``dicomweb-server migrate``: build both deployments, copy, report on stderr."""
    try:
        old, new = load_settings(args.source), load_settings(args.target)
        if same_index(old, new):
            raise ConfigurationError("--from and --to use the same index")
        from app import configure_dicom

        configure_dicom(new)  # records are built for the target: its dictionary and tags
        source, target = deployment(old), deployment(new)
    except (ConfigurationError, ValueError) as exc:
        print(f"dicomweb-server: configuration error: {exc}", file=sys.stderr)
        return 2
    except BackendUnavailable as exc:  # e.g. CreateBucket with S3 unreachable
        print(f"dicomweb-server: {exc}", file=sys.stderr)
        return 1
    progress = Progress()
    try:
        summary = run_migration(source, target, delete_source=args.delete_source,
                                batch=args.batch, jobs=args.jobs, progress=progress)
    finally:
        source.index.close()
        target.index.close()
    progress.finish(summary)
    print(summary.report(), file=sys.stderr)
    return 0 if summary.ok else 1


def deployment(settings: Settings) -> Deployment:
    from app import build_index, build_storage

    return Deployment(storage=build_storage(settings), index=build_index(settings),
                      binary_mode=settings.DicomWeb.OtherBinaryMode)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "check-config":
        from app.check_config import check

        logging.getLogger().setLevel(logging.WARNING)  # the report lists what is ignored
        report, status = check(args.path)
        print(report)
        return status
    if args.command == "hash-password":
        from app.security import hash_password_command

        return hash_password_command(args.iterations)
    if args.command == "migrate":
        logging.getLogger().setLevel(logging.WARNING)  # the progress bar says the rest
        return migrate(args)
    if args.command == "check":
        logging.getLogger().setLevel(logging.WARNING)  # the report says the rest
        return run_check(args)
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    try:
        settings = load_settings(args.config)
    except ConfigurationError as exc:
        print(f"dicomweb-server: configuration error: {exc}", file=sys.stderr)
        return 2
    from app.check_config import extra_problems

    problems = extra_problems(settings)  # Dictionary, ExtraMainDicomTags: before gunicorn
    if problems:
        print(f"dicomweb-server: configuration error: {'; '.join(problems)}", file=sys.stderr)
        return 2
    serve(settings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
