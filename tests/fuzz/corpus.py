"""The regression corpus of tests/data/corpus (see its README)."""

from __future__ import annotations

import gzip
import re
from functools import cache
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus"
BOUNDARY = "FUZZBOUNDARY"
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|\\)")


def _unescape(line: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        return "\\" if code == "\\" else chr(int(code[1:], 16))

    return _ESCAPE.sub(replace, line)


@cache
def hostile_strings() -> list[str]:
    """Lines of hostile_strings.txt (``#`` comments and empty lines skipped), with the
    escapes ``\\xHH``, ``\\uHHHH`` and ``\\\\`` resolved."""
    text = (CORPUS / "hostile_strings.txt").read_text("utf-8")
    return [_unescape(line) for line in text.splitlines()
            if line and not line.startswith("#")]


def read(path: Path) -> bytes:
    """A corpus file's bytes (``.gz`` files decompressed)."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def dicom_files() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if ".dcm" in p.suffixes)


def multipart_bodies() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if ".multipart" in p.suffixes)
