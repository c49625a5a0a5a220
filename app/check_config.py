"""``dicomweb-server check-config FILE|FOLDER``: what a configuration means to this server.

Prints the effective configuration (every key with its value, defaults filled in, secrets
masked), the Orthanc keys it ignores and why, and every problem found; the exit status
is 0 when the server would start with it, 1 otherwise. No backend is contacted.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from app.errors import ConfigurationError
from app.settings import Settings, load_settings, read_configuration

MASK = "********"
_SECRET_KEYS = re.compile(r"(Password|SecretKey|AccessKey|Pin)$")
_URI_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


def check(path: str) -> tuple[str, int]:
    """The report and the exit status for the configuration at ``path``."""
    lines = [f"Configuration: {path}"]
    try:
        data, origins = read_configuration(path)
    except ConfigurationError as exc:
        return "\n".join([*lines, "Problems:", f"  {exc}"]), 1
    files = sorted(set(origins.values()))
    if len(files) > 1:
        lines.append("Files: " + ", ".join(files))
    try:
        settings = load_settings(path)
        problems = extra_problems(settings)
    except ConfigurationError as exc:
        settings, problems = None, [p.strip() for p in str(exc).split("; ")]
    if settings is not None:
        lines += ["Effective configuration:", json.dumps(effective(settings), indent=2)]
        lines += _ignored(settings)
    lines.append("Problems:" if problems else "Problems: none")
    lines += [f"  {p}" for p in problems]
    return "\n".join(lines), 1 if problems else 0


def extra_problems(settings: Settings) -> list[str]:
    """Checks that need more than the schema: the DICOM dictionary entries and the extra
    main DICOM tags (validated without registering anything)."""
    problems = []
    for name, validate in _validators():
        try:
            validate(settings)
        except ConfigurationError as exc:
            problems.append(f"{settings.source}: {name}: {exc}")
    return problems


def _validators() -> list[tuple[str, Any]]:
    from app import security
    from app.dicom import dictionary, levels
    from app.gunicorn_worker import check_tls

    return [
        ("Dictionary", lambda s: dictionary.validate(
            s.Dictionary, s.DefaultPrivateCreator, s.DefaultEncoding)),
        ("ExtraMainDicomTags", lambda s: levels.validate_extra_tags(s.ExtraMainDicomTags)),
        ("SslEnabled", check_tls),  # certificate + key file, trusted clients
        ("Security", lambda s: security.check(s)),  # users, hashes, roles, AuditLogFile
    ]


def effective(settings: Settings) -> dict[str, Any]:
    """Every setting with its value, secrets masked."""
    values = dataclasses.asdict(settings)
    for key in ("source", "ignored"):
        values.pop(key)
    return _masked(values)


def _masked(value: Any, key: str = "", servers: bool = False) -> Any:
    """Passwords, secret keys and URI credentials replaced by a mask; ``servers``: inside
    DicomWeb.Servers, whose array form is ``[url, user, password]`` (reference §7.1)."""
    if isinstance(value, dict):
        if key == "RegisteredUsers":  # user -> password or hash: keep the names only
            return dict.fromkeys(value, MASK)
        if servers and key == "HttpHeaders":  # a remote's headers may carry tokens
            return dict.fromkeys(value, MASK)
        return {k: _masked(v, k, servers or k == "Servers") for k, v in value.items()}
    if isinstance(value, list):
        if servers and len(value) >= 3 and key != "Servers":
            return [*value[:2], MASK, *value[3:]]
        return [_masked(v, key, servers) for v in value]
    if isinstance(value, str):
        if value and _SECRET_KEYS.search(key):
            return MASK
        return _URI_PASSWORD.sub(rf"\1{MASK}@", value)
    return value


def _ignored(settings: Settings) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for key, reason in settings.ignored:
        by_reason.setdefault(reason, []).append(key)
    if not by_reason:
        return ["Ignored: none"]
    count = sum(len(keys) for keys in by_reason.values())
    return [f"Ignored ({count} Orthanc keys this server does not use):"] + [
        f"  {', '.join(keys)}: {reason}" for reason, keys in by_reason.items()]
