"""Load GSM8K- and MATH-layout problems from local files into `Problem` records.

Formats (all local; nothing here reaches a hub):
  - `.jsonl`: one JSON object a line, parsed line by line so a corrupt line is
    reported with its line number (blank lines are ignored);
  - `.json`: a JSON array of objects (or JSON-lines content under a .json name);
  - `.parquet`: read with pyarrow, wrapped in a `datasets.Dataset`;
  - a directory written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`
    (then the split is picked by name), read with `datasets.load_from_disk`.

Row numbers are 1-based everywhere: the line number for JSON lines, the element
number for a JSON array, the row number for Parquet and saved datasets.

Layouts:
  - gsm8k: `question`, `answer` whose last line is `#### N`. Calculator
    annotations `<<48/2=24>>` are stripped; the gold answer is N without commas;
    the solution is the stripped answer text, ending with its `#### N` line
    (N as written there, commas included).
  - math: `problem`, `solution` holding `\\boxed{...}`. The gold answer is the
    content of the last box, read by `grpo_core.reward.answer.last_boxed`, the
    same reading the verifier applies to completions (escaped `\\{`/`\\}` do
    not count as braces). The solution is kept as is.

A malformed row raises `DataError` naming the file, row and field; with
`skip_bad_rows` it is skipped and returned in `LoadedSplit.skipped`.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from grpo_core.config import TaskConfig
from grpo_core.data.problem import Problem
from grpo_core.data.synthetic import generate_splits
from grpo_core.reward.answer import last_boxed

Layout = Literal["gsm8k", "math"]

FIELDS: dict[str, tuple[str, str]] = {"gsm8k": ("question", "answer"), "math": ("problem", "solution")}
ID_FIELDS = ("id", "problem_id", "unique_id")  # first present, non-empty one names the problem
HOLDOUT_FRACTION = 0.1  # share of train questions held out when task.test_path is None

_CALC_RE = re.compile(r"<<[^<>]*>>")  # GSM8K calculator annotation, e.g. <<48/2=24>>
_GSM8K_NUMBER_RE = re.compile(r"-?\d+(?:,\d{3})*(?:\.\d+)?")  # 72, 1,000, -3, 2.5


@dataclass
class BadRow:
    """One malformed row: where it is and what is wrong with it."""

    path: str
    row: int  # 1-based; the line number for JSON lines
    field: str  # the offending field, or "(json)" / "(row)" for the row as a whole
    reason: str


@dataclass
class LoadedSplit:
    """The problems of one split and the malformed rows skipped while reading it."""

    problems: list[Problem]
    skipped: list[BadRow]


class DataError(ValueError):
    """A data file cannot be used; the message says where and how to fix it."""


def _row_error(bad: BadRow, unit: str) -> DataError:
    return DataError(
        f"{bad.path}, {unit} {bad.row} (1-based), field {bad.field!r}: {bad.reason}. "
        "Fix the row, or set task.skip_bad_rows=true to skip malformed rows "
        "(they are counted and reported)."
    )


# ----------------------------------------------------------------------------
# Answer extraction


def parse_gsm8k_answer(answer: str) -> tuple[str, str]:
    """Return (gold answer, solution) from a GSM8K `answer` field.

    Raises ValueError with the reason when the last line is not `#### N`.
    """
    solution = _CALC_RE.sub("", answer).rstrip()
    last = solution.rsplit("\n", 1)[-1].strip()
    if not last.startswith("####"):
        where = "is not on the last line" if "####" in solution else "is missing"
        raise ValueError(f"the final '#### N' line {where}")
    number = last[4:].strip()
    if not _GSM8K_NUMBER_RE.fullmatch(number):
        raise ValueError(f"'####' is followed by {number!r}, not a number")
    return number.replace(",", ""), solution


# ----------------------------------------------------------------------------
# Reading rows


class _BadField(Exception):
    """Raised inside row parsing; becomes a BadRow with the file and row number."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


Rows = Iterator[tuple[int, Any]]  # (1-based row number, the row or a _BadField if unreadable)


def _read_json_lines(data: bytes) -> Rows:
    # Split on b"\n" only: str.splitlines would also split on U+2028, legal inside JSON strings.
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            yield lineno, json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as err:
            yield lineno, _BadField("(json)", f"not UTF-8 ({err.reason} at byte {err.start})")
        except json.JSONDecodeError as err:
            yield lineno, _BadField("(json)", f"unreadable JSON ({err.msg} at column {err.colno})")


def _read_saved(path: Path, split: str) -> Rows:
    import datasets  # heavy; needed for saved dirs and Parquet only

    try:
        ds = datasets.load_from_disk(str(path))
    except FileNotFoundError as err:
        raise DataError(f"{path}: not a directory written by Dataset.save_to_disk ({err})") from None
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(
                f"{path}: saved DatasetDict has no split {split!r} (has {sorted(ds)}); "
                "point the path at a dataset with that split"
            )
        ds = ds[split]
    return enumerate(ds, start=1)


def _read_parquet(path: Path) -> Rows:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataError(f"{path}: unreadable Parquet file ({err})") from None
    # Dataset(table) stays in memory: no builder, no cache dir, nothing reaches a hub.
    return enumerate(datasets.Dataset(table), start=1)


def _read_rows(path: Path, split: str) -> tuple[str, Rows]:
    """Return the unit rows are counted in ("line" or "row") and the rows."""
    if path.is_dir():
        return "row", _read_saved(path, split)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return "row", _read_parquet(path)
    if suffix == ".jsonl":
        return "line", _read_json_lines(path.read_bytes())
    if suffix == ".json":
        data = path.read_bytes()
        try:
            rows = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "line", _read_json_lines(data)  # JSON-lines content under a .json name
        if not isinstance(rows, list):
            raise DataError(f"{path}: expected a JSON array of objects, got {type(rows).__name__}")
        return "row", enumerate(rows, start=1)
    raise DataError(
        f"{path}: unsupported format {suffix or '(no suffix)'!r}; use .jsonl, .json, "
        ".parquet or a directory written by Dataset.save_to_disk"
    )


def _parse_row(row: dict[str, Any], layout: Layout, fallback_id: str) -> Problem:
    """Build a Problem from one row; raise _BadField when the row is malformed."""
    q_field, s_field = FIELDS[layout]
    for name in (q_field, s_field):
        if name not in row:
            other = "math" if layout == "gsm8k" else "gsm8k"
            hint = (
                f" (the row has {FIELDS[other]}: is this the {other} layout? set task.source={other})"
                if all(f in row for f in FIELDS[other])
                else ""
            )
            raise _BadField(name, f"missing field{hint}")
        if not isinstance(row[name], str):
            got = "null" if row[name] is None else type(row[name]).__name__
            raise _BadField(name, f"expected a string, got {got}")
    question, text = row[q_field], row[s_field]
    if not question.strip():
        raise _BadField(q_field, "empty question")
    if layout == "gsm8k":
        try:
            answer, solution = parse_gsm8k_answer(text)
        except ValueError as err:
            raise _BadField(s_field, str(err)) from None
    else:
        boxed = last_boxed(text)
        if boxed is None:
            raise _BadField(s_field, "no \\boxed{...} with balanced braces")
        if not boxed.strip():
            raise _BadField(s_field, "the last \\boxed{} is empty")
        answer, solution = boxed.strip(), text
    ids = [row[k] for k in ID_FIELDS if row.get(k) not in (None, "")]
    return Problem(
        problem_id=str(ids[0]) if ids else fallback_id,
        question=question,
        answer=answer,
        solution=solution,
        source=layout,
    )


def load_problems(
    path: Path, layout: Layout, *, split: str = "train", skip_bad_rows: bool = False
) -> LoadedSplit:
    """Read one local file or saved dataset dir in `layout`.

    `split` picks the split of a saved DatasetDict (ignored otherwise).
    Problem ids are the row's `id`/`problem_id`/`unique_id` if present, else
    `<file stem>-<row>` (a DatasetDict split: `<dir name>-<split>-<row>`).
    Raises DataError on the first malformed row unless `skip_bad_rows`, and
    when no problem is left.
    """
    path = Path(path)
    if layout not in FIELDS:
        raise DataError(f"unknown layout {layout!r}; expected one of {sorted(FIELDS)}")
    if not path.exists():
        raise DataError(f"{path}: no such file or directory (check task.train_path / task.test_path)")
    stem = path.stem
    if (path / "dataset_dict.json").exists():  # a DatasetDict: splits share the dir name
        stem = f"{path.name}-{split}"
    problems: list[Problem] = []
    skipped: list[BadRow] = []
    unit, rows = _read_rows(path, split)
    for row_no, row in rows:
        try:
            if isinstance(row, _BadField):
                raise row
            if not isinstance(row, dict):
                raise _BadField("(row)", f"expected a JSON object, got {type(row).__name__}")
            problems.append(_parse_row(row, layout, f"{stem}-{row_no}"))
        except _BadField as err:
            bad = BadRow(str(path), row_no, err.field, err.reason)
            if not skip_bad_rows:
                raise _row_error(bad, unit) from None
            skipped.append(bad)
    if not problems:
        raise DataError(f"{path}: no usable {layout} rows ({len(skipped)} malformed rows skipped)")
    return LoadedSplit(problems, skipped)


# ----------------------------------------------------------------------------
# Task-level loading


def hold_out(problems: list[Problem], seed: int, fraction: float = HOLDOUT_FRACTION) -> tuple[list[Problem], list[Problem]]:
    """Split problems into (train, test), disjoint by question text.

    Distinct questions are shuffled with `random.Random(seed)` and the first
    round(fraction * n_questions) (at least 1) go to test, with every row
    asking them; order within each split follows the input.
    """
    questions = list(dict.fromkeys(p.question for p in problems))
    if len(questions) < 2:
        raise DataError(
            f"cannot hold out a test split from {len(questions)} distinct question(s); "
            "set task.test_path"
        )
    random.Random(seed).shuffle(questions)
    n_test = max(1, round(fraction * len(questions)))
    test_q = set(questions[:n_test])
    return [p for p in problems if p.question not in test_q], [p for p in problems if p.question in test_q]


def load_task(cfg: TaskConfig) -> tuple[LoadedSplit, LoadedSplit]:
    """Return (train, test) splits for any `cfg.source`.

    Synthetic: `synthetic.generate_splits(cfg.synthetic, cfg.seed)`. Files: the
    train file's "train" split and the test file's "test" split (a saved
    DatasetDict may serve as both paths); without `test_path`, a deterministic
    10% of the train questions (seeded by `cfg.seed`) is held out. Rows skipped
    from the train file are reported on the train split.
    """
    if cfg.source == "synthetic":
        train, test = generate_splits(cfg.synthetic, cfg.seed)
        return LoadedSplit(train, []), LoadedSplit(test, [])
    assert cfg.train_path is not None  # TaskConfig validates this
    train = load_problems(cfg.train_path, cfg.source, split="train", skip_bad_rows=cfg.skip_bad_rows)
    if cfg.test_path is not None:
        test = load_problems(cfg.test_path, cfg.source, split="test", skip_bad_rows=cfg.skip_bad_rows)
        return train, test
    kept, held = hold_out(train.problems, cfg.seed)
    return LoadedSplit(kept, train.skipped), LoadedSplit(held, [])


def format_prompt(problem: Problem, template: str) -> str:
    """Substitute the question for `{question}` in the template; nothing else.

    Unlike str.format, other braces (LaTeX) stay as written, `{{` is not
    unescaped, and a question containing braces or `{question}` is inserted
    verbatim (the substitution is a single pass over the template).
    """
    return template.replace("{question}", problem.question)
