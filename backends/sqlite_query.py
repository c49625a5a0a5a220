"""SQL of QIDO searches on the SQLite index (:mod:`backends.index_sqlite`).

QIDO constraints on indexed columns become SQL (parameters only; column names come from
the fixed tuples of :mod:`backends.base`). Any other attribute is matched by
:func:`backends.matching.matches` on the level's stored DICOM JSON, called from SQL as the
``dicom_match`` function, so that limit and offset always stay in SQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence, Sized
from functools import lru_cache
from typing import Any

from . import matching
from .base import Constraint, Level, Match, Query
from .sql_schema import (
    ALIAS,
    CHILD_KEYWORD,
    COMPUTED_ANY,
    COMPUTED_COUNT,
    DEPTH,
    FROM,
    SELECT,
    column_term,
)

_CHUNK = 500  # bound parameters per IN (...) list
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_TAG = re.compile(r"[0-9A-F]{8}")

_ORDER = {
    Level.STUDY: "st.pk",
    Level.SERIES: "st.pk, se.pk",
    Level.INSTANCE: "st.pk, se.pk, i.InstanceNumber NULLS LAST, i.pk",
}
# Rows having a matching child: a semi-join on the children down to the deepest constrained
# level (not correlated, so SQLite can start from an index of the child table).
_DESCEND = {
    (Level.STUDY, Level.SERIES): "st.pk IN (SELECT se.study_pk FROM series se WHERE",
    (Level.STUDY, Level.INSTANCE): "st.pk IN (SELECT se.study_pk FROM series se"
    " JOIN instances i ON i.series_pk = se.pk WHERE",
    (Level.SERIES, Level.INSTANCE): "se.pk IN (SELECT i.series_pk FROM instances i WHERE",
}
INSTANCE_ORDER = "se.pk, i.InstanceNumber NULLS LAST, i.SOPInstanceUID"


def quote(name: str) -> str:
    """Quote a column name; only names from the fixed column tuples ever get here."""
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a column name: {name!r}")
    return f'"{name}"'


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # stateless, shared


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def marks(items: Sized) -> str:
    return ",".join("?" * len(items))


# ---------------------------------------------------------------------------------------------
# dicom_match(): Python matching of non-column attributes, called from SQL


@lru_cache(maxsize=256)
def _decode_spec(spec: str) -> tuple[Constraint, bool]:
    kind, vr, values, combined = json.loads(spec)
    return Constraint(Level.STUDY, "", "", vr, Match(kind), tuple(values)), combined


def _element(text: Any) -> dict[str, Any] | None:
    value = json.loads(text) if isinstance(text, str) else None
    return value if isinstance(value, dict) else None


def dicom_match(element: Any, also: Any, spec: str, case_sensitive: int) -> int:
    constraint, combined = _decode_spec(spec)
    if combined:
        return int(matching.matches_combined(
            constraint, _element(element), _element(also), bool(case_sensitive)))
    return int(matching.matches(constraint, _element(element), bool(case_sensitive)))


def _json_path(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise ValueError(f"not a tag: {tag!r}")
    return f'$."{tag}"'


# ---------------------------------------------------------------------------------------------
# QIDO constraints -> SQL


def _glob_literal(text: str) -> str:
    """Escape GLOB metacharacters so that ``text`` matches itself."""
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


def _glob_wildcard(pattern: str) -> str:
    """A DICOM wildcard as a GLOB pattern: '*' and '?' kept, '[' and ']' literal."""
    return "".join(f"[{c}]" if c in "[]" else c for c in pattern)


def _operand(alias: str, column: str, also: str | None, also_default: str) -> str:
    expr = f"{alias}.{quote(column)}"
    if also is None:
        return expr
    # Combined date-time matching (PS3.4 C.2.2.2.5.1).
    return f"({expr} || coalesce({alias}.{quote(also)}, '{also_default}'))"


def _compare(alias: str, column: str, c: Constraint, folded: bool) -> tuple[str, list[Any]]:
    """SQL comparing one column with a column constraint."""
    vr = matching.COLUMN_TAGS[c.keyword][1]
    if c.kind is Match.RANGE:  # C.2.2.2.5: '' is an open end
        lo, hi = (matching.query_value("DT" if c.also else vr, v, False)
                  for v in (list(c.values) + ["", ""])[:2])
        terms, params = [], []
        if lo:
            terms.append(f"{_operand(alias, column, c.also, matching.DAY_END)} >= ?")
            params.append(lo)
        if hi:
            terms.append(f"{_operand(alias, column, c.also, '')} <= ?")
            params.append(hi)
        return " AND ".join(terms) or f"{alias}.{quote(column)} IS NOT NULL", params
    expr = _operand(alias, column, c.also, "")
    values = [q for q in (matching.query_value(vr, v, folded) for v in c.values) if q]
    if not values:
        return "0", []
    if c.kind is Match.WILDCARD:  # C.2.2.2.4
        return " OR ".join([f"{expr} GLOB ?"] * len(values)), list(map(_glob_wildcard, values))
    if len(values) == 1:  # C.2.2.2.1 single value
        return f"{expr} = ?", values
    return f"{expr} IN ({marks(values)})", values  # C.2.2.2.2 list of values


def _fuzzy_term(alias: str, columns: Sequence[str], c: Constraint) -> tuple[str, list[Any]]:
    """Every query word is a prefix of some word of the name, in any of its groups."""
    words = [w for v in c.values for w in matching.fuzzy_words(v)]
    # ' ' + the name with '^' and the value delimiter as spaces: a word starts after a space.
    spaced = [f"(' ' || replace(replace({alias}.{quote(col)}, '^', ' '), '\\', ' '))"
              for col in columns]
    any_group = "(" + " OR ".join(f"{text} GLOB ?" for text in spaced) + ")"
    params = [f"* {_glob_literal(w)}*" for w in words for _ in columns]
    return " AND ".join([any_group] * len(words)), params


def _udf_term(alias: str, c: Constraint, case_sensitive: bool) -> tuple[str, list[Any]]:
    """Non-column attribute: matched in Python on the level's DICOM JSON."""
    also = "NULL"
    params: list[Any] = [_json_path(c.tag)]
    if c.also is not None:
        also = f"json_extract({alias}.attrs, ?)"
        params.append(_json_path(matching.tag_of(c.also)))
    spec = dumps([c.kind.value, c.vr, list(c.values), c.also is not None])
    params += [spec, int(case_sensitive)]
    return f"dicom_match(json_extract({alias}.attrs, ?), {also}, ?, ?)", params


def _computed_term(c: Constraint, case_sensitive: bool) -> tuple[str, list[Any]]:
    if c.keyword in COMPUTED_COUNT:
        numbers = [int(v) for v in c.values if v.strip().isdigit()]
        if c.kind not in (Match.SINGLE, Match.LIST) or not numbers:
            return "0", []  # counts only match numbers exactly
        return f"{COMPUTED_COUNT[c.keyword]} IN ({marks(numbers)})", numbers
    level, alias, semi_join = COMPUTED_ANY[c.keyword]
    keyword = CHILD_KEYWORD[c.keyword]
    tag, vr = matching.COLUMN_TAGS[keyword]
    child = Constraint(level, keyword, tag, vr, c.kind, c.values)
    sql, params = _term(child, case_sensitive, alias)
    return f"{semi_join}{sql})", params


def _term(c: Constraint, case_sensitive: bool, alias: str | None = None) -> tuple[str, list[Any]]:
    if c.keyword in COMPUTED_ANY or c.keyword in COMPUTED_COUNT:
        return _computed_term(c, case_sensitive)
    alias = alias or ALIAS[c.level]
    if not matching.is_column(c):
        return _udf_term(alias, c, case_sensitive)
    return column_term(c, case_sensitive, alias, _fuzzy_term, _compare)


def _where(query: Query) -> tuple[str, list[Any]]:
    """WHERE clause of a search: own and parent levels directly, children by a semi-join."""
    own: list[tuple[str, list[Any]]] = []
    below: list[tuple[str, list[Any]]] = []
    deepest = query.level
    for constraint in query.constraints:
        if matching.is_universal(constraint):
            continue
        term = _term(constraint, query.case_sensitive)
        if DEPTH[constraint.level] <= DEPTH[query.level]:
            own.append(term)
        else:  # a key of a lower level matches if any child matches (studies?Modality=CT)
            below.append(term)
            deepest = max(deepest, constraint.level, key=DEPTH.__getitem__)
    if below:
        conditions = " AND ".join(sql for sql, _ in below)
        semi_join = f"{_DESCEND[query.level, deepest]} {conditions})"
        own.append((semi_join, [p for _, params in below for p in params]))
    if not own:
        return "", []
    return " WHERE " + " AND ".join(sql for sql, _ in own), [p for _, ps in own for p in ps]


def search_sql(query: Query) -> tuple[str, list[Any]]:
    if query.offset < 0 or (query.limit is not None and query.limit < 0):
        raise ValueError("limit and offset must not be negative")
    where, params = _where(query)
    sql = f"SELECT {SELECT[query.level]} FROM {FROM[query.level]}{where}" \
          f" ORDER BY {_ORDER[query.level]}"
    if query.limit is not None or query.offset:
        sql += " LIMIT ? OFFSET ?"
        params += [-1 if query.limit is None else query.limit, query.offset]
    return sql, params


def uid_filter(study_uid: str, series_uid: str | None, sop_uid: str | None) -> tuple[str, list]:
    """WHERE over instances/series/studies: a child is only found under its own parents."""
    terms, params = ["st.StudyInstanceUID = ?"], [study_uid]
    if series_uid is not None:
        terms.append("se.SeriesInstanceUID = ?")
        params.append(series_uid)
    if sop_uid is not None:
        terms.append("i.SOPInstanceUID = ?")
        params.append(sop_uid)
    return " AND ".join(terms), params
