"""The gunicorn worker ``dicomweb-server`` runs: gthread, plus Orthanc's ``HttpRequestTimeout``.

gunicorn's threaded worker reads request bodies and sends responses on a blocking socket
with no timeout, so a client that stops sending in the middle of a STOW, or stops reading a
WADO answer, holds a worker thread forever. Orthanc bounds both with SO_RCVTIMEO and
SO_SNDTIMEO set to ``HttpRequestTimeout``; this worker does the same once a request's
headers are in: a socket idle for that many seconds fails, and gunicorn closes it.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker


class RequestTimeoutWorker(ThreadWorker):  # type: ignore[misc]
    request_timeout: float = 0.0  # seconds; 0 = no limit. Set before the workers fork.

    def handle_request(self, req: Any, conn: Any) -> Any:
        if self.request_timeout:
            conn.sock.settimeout(self.request_timeout)
        return super().handle_request(req, conn)
