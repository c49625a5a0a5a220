"""One error hierarchy for the whole server, each class bound to an HTTP status.

Nothing here imports Flask: the DICOM layer (``app.dicom``) raises these, and
``app.create_app`` maps them to responses in one handler. Bodies follow the
shape of Orthanc's error answers (``HttpStatus``, ``HttpError``, ``Message``)
so tools written for Orthanc read them unchanged.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class DicomWebError(Exception):
    """Base class: a failure with an HTTP status and a message for the client."""

    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        details: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self, method: str = "", uri: str = "") -> dict[str, Any]:
        """JSON body naming the problem; never carries paths, SQL or secrets."""
        body: dict[str, Any] = {
            "HttpStatus": self.status,
            "HttpError": HTTPStatus(self.status).phrase,
            "Message": self.message,
        }
        if self.details:
            body["Details"] = self.details
        if method:
            body["Method"] = method
        if uri:
            body["Uri"] = uri
        return body


class BadRequest(DicomWebError):
    status = 400


class Unauthorized(DicomWebError):
    status = 401


class Forbidden(DicomWebError):
    status = 403


class NotFound(DicomWebError):
    status = 404


class MethodNotAllowed(DicomWebError):
    status = 405


class NotAcceptable(DicomWebError):
    status = 406


class Conflict(DicomWebError):
    status = 409


class PayloadTooLarge(DicomWebError):
    status = 413


class UnsupportedMediaType(DicomWebError):
    status = 415


class BadGateway(DicomWebError):
    status = 502


class ServiceUnavailable(DicomWebError):
    status = 503


class GatewayTimeout(DicomWebError):
    status = 504


class ConfigurationError(Exception):
    """The settings file is unusable; raised at start-up, never during a request."""
