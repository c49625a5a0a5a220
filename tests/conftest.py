"""Fixtures shared by the api and e2e layers."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from app.settings import Settings, parse_settings
from tests.s3server import MotoServer


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    data: dict[str, object] = {"StorageDirectory": str(tmp_path / "storage"),
                               "IndexDirectory": str(tmp_path / "index")}
    dicomweb = overrides.pop("DicomWeb", None)
    data.update(overrides)
    if dicomweb is not None:
        data["DicomWeb"] = dicomweb
    return parse_settings(data, "<test>")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    application = create_app(make_settings(tmp_path))
    yield application
    application.extensions["jobs"].stop()  # runner threads a test's job started
    application.extensions["dicomweb"].index.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def stow_body(files: list[bytes], boundary: str = "XXbound4ryXX",
              part_type: str = "application/dicom") -> tuple[bytes, str]:
    """A STOW-RS request body and its Content-Type."""
    body = b"".join(
        f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode() + f + b"\r\n"
        for f in files
    ) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoServer]:
    """moto's S3 server on a loopback port for the session (``.endpoint``, ``.stop()``,
    ``.start()``: a restart keeps the port but forgets every bucket). Fails, never skips,
    when the server cannot start: CI requires the S3 tests to run."""
    server = MotoServer()
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        pytest.fail(f"cannot start the moto S3 server: {exc}")
    yield server
    server.stop()
    server.log.unlink(missing_ok=True)


# Under CI (.ci/run sets CI=1) hypothesis runs derandomized: a build fails only for a change
# of the code, never for a new random draw; by hand every run explores new inputs.
if os.environ.get("CI"):
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True)
    _hypothesis_settings.load_profile("ci")
