"""Folded column values: the ASCII short cut gives what ``backends.base.fold`` gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from backends import matching
from backends.base import fold


@given(st.text())
def test_fold_short_cut(text: str) -> None:
    assert matching._fold(text) == fold(text)


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_fold_short_cut_ascii(text: str) -> None:
    assert matching._fold(text) == fold(text)
