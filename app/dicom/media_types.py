"""Media type and parameter parsing (RFC 9110 §8.3.1, §5.6.6), shared by the multipart
framing (request Content-Type, PS3.18 §8.6) and Accept negotiation (PS3.18 §8.7)."""

from __future__ import annotations

from app.errors import BadRequest

__all__ = ["parse_content_type", "split_outside_quotes"]


def split_outside_quotes(value: str, sep: str) -> list[str]:
    """Split ``value`` on ``sep`` wherever it is outside a quoted-string.

    Backslash escapes inside quotes are skipped over, so ``"a\\";b"`` is one piece.
    Pieces are returned unstripped; empty pieces are kept.
    """
    pieces: list[str] = []
    start = 0
    quoted = escaped = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == sep and not quoted:
            pieces.append(value[start:index])
            start = index + 1
    pieces.append(value[start:])
    return pieces


def _unquote(raw: str, context: str) -> str:
    """Strip and unquote a parameter value, resolving backslash escapes."""
    raw = raw.strip()
    if not raw.startswith('"'):
        return raw
    out: list[str] = []
    escaped = False
    for index in range(1, len(raw)):
        char = raw[index]
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            if raw[index + 1 :].strip():
                raise BadRequest(f"Unexpected text after a quoted string in {context!r}")
            return "".join(out)
        else:
            out.append(char)
    raise BadRequest(f"Unterminated quoted string in {context!r}")


def _parse_parameter(piece: str, context: str) -> tuple[str, str]:
    """Parse one ``key=value`` parameter; the key is lowercased."""
    key, sep, raw = piece.partition("=")
    key = key.strip().lower()
    if not sep or not key:
        raise BadRequest(f"Malformed parameter {piece.strip()!r} in {context!r}")
    return key, _unquote(raw, context)


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """Split a Content-Type (or one Accept media range) into media type and parameters.

    The media type is stripped and lowercased; parameters are split on ``;``
    outside quoted strings, keys are lowercased and values unquoted (PS3.18 §8.7,
    RFC 9110 §5.6.6). Empty parameters (``a/b;;c=d``) are ignored; a parameter
    with no ``=`` or a broken quoted string raises :class:`BadRequest`.
    """
    media, *pieces = split_outside_quotes(value, ";")
    params: dict[str, str] = {}
    for piece in pieces:
        if piece.strip():
            key, param_value = _parse_parameter(piece, value)
            params[key] = param_value
    return media.strip().lower(), params
