"""Checks on what the store writer is given: ids that become path components, int32 indices, metric
dicts, and rows converted to a table's exact Arrow schema. Every failure names the offending value or
column, so a caller's bug is reported at the write instead of surfacing later in a query."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["SchemaError", "check_id", "check_index", "metric_values", "to_table"]

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
_METRIC_NAME = re.compile(r"[A-Za-z0-9_]+/\S+")


class SchemaError(ValueError):
    """Rows that do not fit a store schema; the message names the offending column."""


def check_id(what: str, value: object) -> str:
    """`value`, checked to be a safe path component (it names a directory or file of the store)."""
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value) or value in (".", ".."):
        raise ValueError(
            f"{what} must be a safe path component of letters, digits, '.', '_' or '-', got {value!r}"
        )
    return value


def check_index(what: str, value: object) -> int:
    """`value` as an int (numpy integers welcome) in int32's non-negative range."""
    try:
        index = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        index = -1
    if isinstance(value, bool) or not 0 <= index < 2**31:
        raise ValueError(f"{what} must be a non-negative int32, got {value!r}")
    return index


def metric_values(what: str, metrics: Mapping[str, Any]) -> tuple[list[str], list[float]]:
    """(names, values) of a {'namespace/name': number} dict; python, numpy and 0-d torch numbers alike."""
    names, values = [], []
    for metric, value in metrics.items():
        if not isinstance(metric, str) or not _METRIC_NAME.fullmatch(metric):
            raise SchemaError(f"{what}: metric name {metric!r} must look like 'namespace/name'")
        try:
            if isinstance(value, (str, bytes)):
                raise TypeError
            values.append(float(value))
        except (TypeError, ValueError):
            raise SchemaError(f"{what}: metric {metric!r} has non-numeric value {value!r}") from None
        names.append(metric)
    return names, values


def _column_names(rows: pa.Table | Sequence[Mapping[str, Any]]) -> list[str]:
    """The columns of a table, or of the first dict of a row list."""
    if isinstance(rows, pa.Table):
        return rows.column_names
    return list(rows[0].keys()) if len(rows) else []


def to_table(
    rows: pa.Table | Sequence[Mapping[str, Any]],
    schema: pa.Schema,
    context: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    what: str,
) -> pa.Table:
    """Rows as a table with exactly `schema`; errors name the column.

    A column missing from `rows` is filled from `context` or `defaults`; a `context` column that is
    present must equal its context value (null only equals null), so rows cannot contradict the
    arguments they were written under.
    """
    given = _column_names(rows)
    extra = [c for c in given if c not in schema.names]
    if extra:
        raise SchemaError(f"{what}: unexpected column(s) {', '.join(map(repr, extra))}; schema is {schema.names}")
    optional = set(context) | set(defaults)
    missing = [c for c in schema.names if c not in given and c not in optional]
    if missing:
        raise SchemaError(f"{what}: missing column(s) {', '.join(map(repr, missing))}")
    if not isinstance(rows, pa.Table):
        for i, row in enumerate(rows):
            if row.keys() != set(given):
                gone = [c for c in given if c not in row]
                new = [c for c in row if c not in given]
                detail = f"missing column(s) {gone}" if gone else f"unexpected column(s) {new}"
                raise SchemaError(f"{what}: row {i} has {detail}, unlike row 0")
    n = rows.num_rows if isinstance(rows, pa.Table) else len(rows)
    columns = []
    for field in schema:
        name = field.name
        if name in given:
            try:
                if isinstance(rows, pa.Table):
                    col = rows.column(name).cast(field.type)
                else:
                    col = pa.array([row[name] for row in rows], type=field.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, OverflowError) as e:
                raise SchemaError(f"{what}: column '{name}' does not convert to {field.type}: {e}") from e
            if name in context and not _all_equal(col, context[name], field.type):
                source = "from the arguments and the run's record"
                raise SchemaError(f"{what}: column '{name}' must equal {name}={context[name]!r} ({source})")
        else:
            fill = context[name] if name in context else defaults[name]
            col = pa.array([fill] * n, field.type)
        if not field.nullable and col.null_count:
            raise SchemaError(f"{what}: column '{name}' has {col.null_count} null value(s) but may not be null")
        columns.append(col)
    return pa.Table.from_arrays(columns, schema=schema)


def _all_equal(col: pa.Array | pa.ChunkedArray, value: object, type_: pa.DataType) -> bool:
    """Whether every entry of `col` is `value`, null counting as equal to null only."""
    if value is None or len(col) == 0:
        return col.null_count == len(col)
    return col.null_count == 0 and pc.all(pc.equal(col, pa.scalar(value, type_))).as_py()
