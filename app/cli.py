"""``dicomweb-server``: serve the application with gunicorn.

    dicomweb-server [--config FILE] [--workers N] [--threads N] [--port N]

With no configuration the data lives under ``./data`` (filesystem storage and
SQLite index) and the server answers at http://localhost:8042/dicom-web/.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from app.errors import ConfigurationError
from app.settings import CONFIG_ENV, Settings, load_settings


def gunicorn_options(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """gunicorn settings in one place (docs/deployment notes refer to this)."""
    host = "0.0.0.0" if settings.remote_access else "127.0.0.1"
    port = args.port if args.port is not None else settings.HttpPort
    return {
        "bind": f"{host}:{port}",
        "workers": args.workers or settings.Gunicorn.workers,
        # Threads let one worker stream a study while it answers QIDO; a server that
        # lists itself as a remote needs that concurrency too.
        "worker_class": "gthread",
        "threads": args.threads or settings.Gunicorn.Threads,
        "timeout": settings.Gunicorn.Timeout,
        # Build the app once in the master and fork: workers share its pages (pydicom,
        # numpy, Flask), which keeps the total memory of N workers well below N copies.
        # The index opens its connections lazily in each worker after the fork.
        "preload_app": True,
        "graceful_timeout": 30,
        "accesslog": "-" if args.access_log else None,
        "errorlog": "-",
        "loglevel": "info",
    }


def serve(settings: Settings, args: argparse.Namespace) -> None:
    from gunicorn.app.base import BaseApplication

    from app import create_app

    class _Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings, args).items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self) -> Any:
            return create_app(settings)

    _Server().run()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dicomweb-server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"Orthanc-style JSON file (default: ${CONFIG_ENV})")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, help="threads per worker")
    parser.add_argument("--port", type=int, help="HTTP port (default: HttpPort, 8042)")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.config:
        os.environ[CONFIG_ENV] = os.path.abspath(args.config)
    try:
        settings = load_settings(args.config)
    except ConfigurationError as exc:
        print(f"dicomweb-server: configuration error: {exc}", file=sys.stderr)
        return 2
    serve(settings, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
