"""Cross-Origin Resource Sharing (the Fetch standard's CORS protocol), as WSGI middleware.

A viewer served from another origin (OHIF on https://viewer.example.org, say) calls the
server directly when ``Cors.AllowedOrigins`` names its origin; empty (the default), this
module is not installed and nothing changes.

Middleware rather than Flask hooks, outermost around the application:

- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
  here, on every path, routed or not, before authentication, auditing or routing see it:
  204 with the allowed methods, headers and max-age for an allowed origin; 403 with a JSON
  reason and no CORS header for any other origin (the browser then blocks the request);
- every other answer to an allowed origin gets ``Access-Control-Allow-Origin`` and
  ``Access-Control-Expose-Headers``, whatever produced it: a view, an error handler
  (401/404/405/413/500 JSON errors), or a streamed multipart body (the headers go out with
  the status line, before the first byte).

``["*"]`` allows any origin. With ``AllowCredentials`` the answer never says ``*`` (browsers
refuse it with credentials): the request's origin is echoed instead, and ``Vary: Origin``
tells caches the answer depends on it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from app.errors import Forbidden
from app.settings import Cors, Settings

log = logging.getLogger(__name__)

_ORIGIN = re.compile(r"^[a-z][a-z0-9+.\-]*://[^/?#\s]+$")
# Response headers this middleware owns; an application value is replaced.
_OWNED = {"access-control-allow-origin", "access-control-allow-credentials",
          "access-control-expose-headers", "access-control-allow-methods",
          "access-control-allow-headers", "access-control-max-age"}

StartResponse = Callable[..., Any]


def install_cors(app: Any, settings: Settings) -> None:
    """Wrap ``app.wsgi_app`` when ``Cors.AllowedOrigins`` is not empty (call it last, so
    that preflights are answered before any other middleware or hook runs)."""
    if settings.Cors.AllowedOrigins:
        app.wsgi_app = CorsMiddleware(app.wsgi_app, settings.Cors,
                                      describe_errors=settings.HttpDescribeErrors)


class CorsMiddleware:
    def __init__(self, wsgi_app: Callable[..., Any], cors: Cors, *,
                 describe_errors: bool = True) -> None:
        self.wsgi_app = wsgi_app
        self.cors = cors
        self.describe_errors = describe_errors
        origins = [o.strip().rstrip("/").lower() for o in cors.AllowedOrigins]
        self.any_origin = "*" in origins
        self.origins = frozenset(o for o in origins if o != "*")
        for origin in sorted(self.origins):
            if origin != "null" and not _ORIGIN.match(origin):
                log.warning("Cors.AllowedOrigins: %r is not an origin (scheme://host[:port], "
                            "no path): no request will match it", origin)
        if self.any_origin and cors.AllowCredentials:
            log.warning("Cors: AllowedOrigins [\"*\"] with AllowCredentials lets any web site "
                        "send requests carrying the user's credentials; list the origins")
        # "*" is a literal answer when no credentials are involved; otherwise the origin is
        # echoed and the answer varies with it.
        self.wildcard = self.any_origin and not cors.AllowCredentials
        self.exposed = ", ".join(cors.ExposedHeaders)

    def allowed(self, origin: str) -> bool:
        if self.any_origin:
            # With credentials, "*" echoes the origin; never for the opaque "null" origin
            # (sandboxed frames, file: pages) unless it is listed.
            return origin != "null" or not self.cors.AllowCredentials
        return origin.lower() in self.origins

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        origin = environ.get("HTTP_ORIGIN")
        if (environ.get("REQUEST_METHOD") == "OPTIONS" and origin is not None
                and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ):
            return self.preflight(environ, origin, start_response)
        if origin is None or not self.allowed(origin):
            return self.wsgi_app(environ, self._vary_only(start_response))
        added = self._origin_headers(origin)
        if self.exposed:
            added.append(("Access-Control-Expose-Headers", self.exposed))

        def cors_start_response(status: str, headers: list[tuple[str, str]],
                                exc_info: Any = None) -> Any:
            return start_response(status, _merge(headers, added, self.wildcard), exc_info)

        return self.wsgi_app(environ, cors_start_response)

    def preflight(self, environ: dict[str, Any], origin: str,
                  start_response: StartResponse) -> Iterable[bytes]:
        vary = [] if self.wildcard else ["Origin"]
        if not self.allowed(origin):
            error = Forbidden(f"Origin {origin[:200]} is not allowed (Cors.AllowedOrigins)")
            body = error.body(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
            if not self.describe_errors:
                body = {key: body[key] for key in ("HttpStatus", "HttpError")}
            data = json.dumps(body).encode()
            start_response("403 FORBIDDEN", [
                ("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                *([("Vary", "Origin")] if vary else [])])
            return [data]
        headers = self._origin_headers(origin)
        methods = self.cors.AllowedMethods
        if "*" in methods and self.cors.AllowCredentials:
            # "*" means any method only without credentials: name the one asked for.
            methods = [environ["HTTP_ACCESS_CONTROL_REQUEST_METHOD"]]
            vary.append("Access-Control-Request-Method")
        allowed_headers = self.cors.AllowedHeaders
        if "*" in allowed_headers and self.cors.AllowCredentials:
            requested = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS", "")
            allowed_headers = [h.strip() for h in requested.split(",") if h.strip()]
            vary.append("Access-Control-Request-Headers")
        headers.append(("Access-Control-Allow-Methods", ", ".join(methods)))
        if allowed_headers:
            headers.append(("Access-Control-Allow-Headers", ", ".join(allowed_headers)))
        headers.append(("Access-Control-Max-Age", str(self.cors.MaxAge)))
        if vary:
            headers.append(("Vary", ", ".join(vary)))
        start_response("204 NO CONTENT", headers)
        return []

    def _origin_headers(self, origin: str) -> list[tuple[str, str]]:
        headers = [("Access-Control-Allow-Origin", "*" if self.wildcard else origin)]
        if self.cors.AllowCredentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers

    def _vary_only(self, start_response: StartResponse) -> StartResponse:
        """No CORS headers (no Origin, or one not allowed), but a cache must not serve this
        answer to an allowed origin: ``Vary: Origin`` unless the answer is the same for all."""
        if self.wildcard:
            return start_response

        def vary_start_response(status: str, headers: list[tuple[str, str]],
                                exc_info: Any = None) -> Any:
            return start_response(status, _merge(headers, [], False), exc_info)

        return vary_start_response


def _merge(headers: list[tuple[str, str]], added: list[tuple[str, str]],
           wildcard: bool) -> list[tuple[str, str]]:
    """The application's headers with ours: CORS ones replaced, ``Origin`` added to
    ``Vary`` (unless the answer is ``*`` for everyone)."""
    out = [(k, v) for k, v in headers if k.lower() not in _OWNED]
    out.extend(added)
    if wildcard:
        return out
    for i, (key, value) in enumerate(out):
        if key.lower() == "vary":
            names = [v.strip() for v in value.split(",") if v.strip()]
            if "*" not in names and "origin" not in (n.lower() for n in names):
                out[i] = (key, ", ".join([*names, "Origin"]))
            return out
    out.append(("Vary", "Origin"))
    return out
