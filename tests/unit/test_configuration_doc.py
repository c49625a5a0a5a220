"""docs/configuration.md lists every key this server knows: each one used (top level and
in every section), each security key and each ignored Orthanc key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SECTIONS, SettingsSchema
from app.vocabulary import IGNORED

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
KEYS = sorted(set(SettingsSchema().fields) | set(IGNORED)
              | {key for schema in SECTIONS.values() for key in schema().fields})


@pytest.mark.parametrize("key", KEYS)
def test_every_key_is_documented(key: str) -> None:
    assert f"`{key}`" in DOC or f"`Gunicorn.{key}`" in DOC, key


def test_ignored_and_used_keys_do_not_overlap() -> None:
    assert not set(IGNORED) & set(SettingsSchema().fields)
