"""Labelled solutions: step rows (prm.label.LabelRow) checked and grouped per solution.

Rows come from `prm.label.label_solutions`, from the store's prm_labels view, or
from a label file (JSONL or Parquet, one row per step). Every row is checked
before any training starts; a bad row fails with a `LabelError` naming the row,
its solution and the field:

    required   problem_id (str), solution_index (int >= 0), step_index (int >= 0),
               step_text (str, non-blank, no delimiter inside), prompt (str),
               hard (bool or 0/1), soft (float in [0, 1])
    optional   exact (bool, 0/1 or null), n_completions, completions_correct (ints >= 0),
               run_id, iteration (which labelling produced the row), any other column (ignored)

A solution is the set of rows sharing (run_id, iteration, problem_id,
solution_index); its step_index values must be exactly 0..S-1, and its steps
joined with the delimiter must split back into the same S steps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_core.maths.steps import split_steps

REQUIRED = ("problem_id", "solution_index", "step_index", "step_text", "prompt", "hard", "soft")


class LabelError(ValueError):
    """A label row or file that cannot be trained on; the message names the field."""


@dataclass(frozen=True)
class LabelledSolution:
    """One solution with per-step labels (all lists have length S >= 1)."""

    key: tuple[Any, ...]  # (run_id, iteration, problem_id, solution_index)
    problem_id: str
    prompt: str
    steps: list[str]
    hard: list[bool]
    soft: list[float]
    exact: list[bool | None]

    @property
    def correct(self) -> bool:
        """The solution's own verdict: the label of its last (answer) step."""
        return self.hard[-1]

    def completion(self, delimiter: str) -> str:
        return delimiter.join(self.steps)


def _where(i: int, row: Mapping[str, Any]) -> str:
    return f"label row {i} (problem {row.get('problem_id')!r}, solution {row.get('solution_index')!r})"


def _binary(i: int, row: Mapping[str, Any], name: str, nullable: bool = False) -> bool | None:
    value = row[name]
    if value is None and nullable:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return bool(value)
    allowed = "true/false, 0/1 or null" if nullable else "true/false or 0/1"
    raise LabelError(f"{_where(i, row)}: field '{name}' must be {allowed}, got {value!r}")


def _index(i: int, row: Mapping[str, Any], name: str) -> int:
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        if isinstance(value, float) and value.is_integer() and value >= 0:
            return int(value)
        raise LabelError(f"{_where(i, row)}: field '{name}' must be an integer >= 0, got {value!r}")
    return value


def _check_row(i: int, row: Mapping[str, Any]) -> tuple[tuple[Any, ...], int, bool, float, bool | None]:
    """(solution key, step index, hard, soft, exact) of one row, or a LabelError."""
    if not isinstance(row, Mapping):
        raise LabelError(f"label row {i}: expected a mapping of fields, got {type(row).__name__}")
    for name in REQUIRED:
        if name not in row or (row[name] is None):
            raise LabelError(f"{_where(i, row)}: missing field '{name}' (required: {', '.join(REQUIRED)})")
    for name in ("problem_id", "step_text", "prompt"):
        if not isinstance(row[name], str):
            raise LabelError(f"{_where(i, row)}: field '{name}' must be a string, got {row[name]!r}")
    solution_index = _index(i, row, "solution_index")
    step_index = _index(i, row, "step_index")
    hard = _binary(i, row, "hard")
    soft = row["soft"]
    if isinstance(soft, bool) or not isinstance(soft, (int, float)) or not (0.0 <= float(soft) <= 1.0):
        raise LabelError(f"{_where(i, row)}: field 'soft' must be a number in [0, 1], got {soft!r}")
    exact = _binary(i, row, "exact", nullable=True) if "exact" in row else None
    for name in ("n_completions", "completions_correct"):
        if row.get(name) is not None:
            _index(i, row, name)
    key = (row.get("run_id"), row.get("iteration"), row["problem_id"], solution_index)
    return key, step_index, bool(hard), float(soft), exact


def solutions_from_rows(rows: Iterable[Mapping[str, Any]], delimiter: str = "\n") -> list[LabelledSolution]:
    """Check every row and group them into solutions (in order of first appearance)."""
    groups: dict[tuple[Any, ...], dict[int, tuple[int, Mapping[str, Any], bool, float, bool | None]]] = {}
    for i, row in enumerate(rows):
        key, j, hard, soft, exact = _check_row(i, row)
        steps = groups.setdefault(key, {})
        if j in steps:
            raise LabelError(f"{_where(i, row)}: field 'step_index' {j} repeats row {steps[j][0]} of the same solution")
        steps[j] = (i, row, hard, soft, exact)
    out: list[LabelledSolution] = []
    for key, steps in groups.items():
        first_row = steps[min(steps)][1]
        where = _where(steps[min(steps)][0], first_row)
        if sorted(steps) != list(range(len(steps))):
            missing = sorted(set(range(max(steps) + 1)) - set(steps))
            raise LabelError(
                f"{where}: field 'step_index' must run 0..S-1 without gaps; "
                f"got {len(steps)} steps, missing index(es) {missing}"
            )
        ordered = [steps[j] for j in range(len(steps))]
        texts = [r["step_text"] for _, r, *_ in ordered]
        resplit = split_steps(delimiter.join(texts), delimiter)
        if resplit != texts:
            raise LabelError(
                f"{where}: field 'step_text': {len(texts)} labelled steps split back into {len(resplit)} "
                f"(a step is blank or contains the delimiter {delimiter!r}); steps count mismatch"
            )
        prompts = {r["prompt"] for _, r, *_ in ordered}
        if len(prompts) != 1:
            raise LabelError(f"{where}: field 'prompt' differs between the steps of one solution")
        out.append(LabelledSolution(
            key=key, problem_id=first_row["problem_id"], prompt=first_row["prompt"], steps=texts,
            hard=[h for *_, h, _, _ in ordered], soft=[s for *_, s, _ in ordered], exact=[e for *_, e in ordered],
        ))
    return out


def _clean(value: Any) -> Any:
    """JSON/Parquet scalars as plain Python (NaN in an optional column means null)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def load_label_file(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a label file: JSONL (one object a line) or Parquet. Rows are checked later,
    by `solutions_from_rows`; here only the file format is."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: no such label file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return [{k: _clean(v) for k, v in r.items()} for r in pq.read_table(path).to_pylist()]
        except Exception as e:  # pyarrow raises several types for corrupt files
            raise LabelError(f"{path}: not a readable Parquet file: {e}") from e
    rows: list[dict[str, Any]] = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise LabelError(f"{path}:{n}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise LabelError(f"{path}:{n}: expected a JSON object per line, got {type(row).__name__}")
        rows.append(row)
    return rows


def save_label_file(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Write rows as JSONL (the format `load_label_file` reads back)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(dict(r), default=str) + "\n" for r in rows))
    return path
