"""Loading GSM8K/MATH-layout files: exact answers, row numbers in errors, skips, splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grpo_core.config import SyntheticTaskConfig, TaskConfig
from grpo_core.data import DataError, format_prompt, load_problems, load_task
from grpo_core.data.loaders import hold_out, parse_gsm8k_answer
from grpo_core.data.problem import Problem
from grpo_core.reward.verify import extract_answer

DATA = Path(__file__).parent / "fixtures" / "data"
GSM8K_ANSWERS = ["24", "3600", "-3", "3.75", "84", "5"]
MATH_ANSWERS = ["2", "\\frac{3}{4}", "\\{-1, 1\\}", "4", "x^{2}"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- answer parsing


def test_gsm8k_answer_strips_annotations_and_commas() -> None:
    answer, solution = parse_gsm8k_answer("It sells 1,200 * 3 = <<1200*3=3600>>3,600 eggs.\n#### 3,600\n")
    assert answer == "3600"
    assert solution == "It sells 1,200 * 3 = 3,600 eggs.\n#### 3,600"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("It is 4.", "missing"),
        ("#### 4\nmore text", "not on the last line"),
        ("So\n#### ", "not a number"),
        ("So\n#### four", "not a number"),
        ("So\n#### 1,0000", "not a number"),
    ],
)
def test_gsm8k_answer_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_gsm8k_answer(text)


def test_math_gold_is_read_like_a_completion(tmp_path: Path) -> None:
    """The loader's gold answer is what the verifier would extract (grpo_core.reward.answer)."""
    solutions = {"spaced": "so $\\boxed {5}$", "escaped": "\\boxed{a\\}b}", "plain": "\\boxed{ 7 }"}
    path = tmp_path / "math.jsonl"
    rows = [{"id": k, "problem": "q " + k, "solution": v} for k, v in solutions.items()]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    answers = {p.problem_id: p.answer for p in load_problems(path, "math").problems}
    assert answers == {"spaced": "5", "escaped": "a\\}b", "plain": "7"}
    for problem_id, solution in solutions.items():
        assert extract_answer(solution, "boxed") == answers[problem_id]


# ---------------------------------------------------------------- formats


def test_gsm8k_jsonl() -> None:
    split = load_problems(DATA / "gsm8k_train.jsonl", "gsm8k")
    assert [p.answer for p in split.problems] == GSM8K_ANSWERS
    assert split.skipped == []
    first = split.problems[0]
    assert first.problem_id == "gsm8k_train-1"
    assert first.source == "gsm8k"
    assert first.solution == "Mia gives away 48/2 = 24 cookies.\nShe keeps 48 - 24 = 24 cookies.\n#### 24"
    assert [p.problem_id for p in split.problems][3:5] == ["gsm8k_train-4", "lee-pages"]


def test_parquet_matches_jsonl() -> None:
    jsonl = load_problems(DATA / "gsm8k_train.jsonl", "gsm8k").problems
    parquet = load_problems(DATA / "gsm8k_train.parquet", "gsm8k").problems
    assert [p.answer for p in parquet] == GSM8K_ANSWERS
    assert parquet == jsonl  # same stem, so even the default ids agree


def test_math_jsonl_and_json_array() -> None:
    for name in ("math_train.jsonl", "math_train.json"):
        split = load_problems(DATA / name, "math")
        assert [p.answer for p in split.problems] == MATH_ANSWERS
        assert split.problems[3].problem_id == "test/algebra/7.json"
        assert split.problems[4].problem_id == "math_train-5"
        assert split.problems[1].solution == "Divide by 2: $\\boxed{\\frac{3}{4}}$."  # kept as is


def test_saved_dataset_and_datasetdict(tmp_path: Path) -> None:
    import datasets

    rows = _rows(DATA / "gsm8k_train.jsonl")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "flat"))
    flat = load_problems(tmp_path / "flat", "gsm8k")
    assert [p.answer for p in flat.problems] == GSM8K_ANSWERS
    assert flat.problems[0].problem_id == "flat-1"

    datasets.DatasetDict(
        train=datasets.Dataset.from_list(rows[:4]), test=datasets.Dataset.from_list(rows[4:])
    ).save_to_disk(str(tmp_path / "gsm"))
    train = load_problems(tmp_path / "gsm", "gsm8k", split="train")
    test = load_problems(tmp_path / "gsm", "gsm8k", split="test")
    assert [p.answer for p in train.problems] == GSM8K_ANSWERS[:4]
    assert [p.answer for p in test.problems] == GSM8K_ANSWERS[4:]
    assert [p.problem_id for p in test.problems] == ["lee-pages", "gsm-test-2"]
    with pytest.raises(DataError, match=r"no split 'validation' \(has \['test', 'train'\]\)"):
        load_problems(tmp_path / "gsm", "gsm8k", split="validation")


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_problems(tmp_path / "missing.jsonl", "gsm8k")
    (tmp_path / "data.csv").write_text("question,answer\n")
    with pytest.raises(DataError, match="unsupported format '.csv'"):
        load_problems(tmp_path / "data.csv", "gsm8k")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match=r"no usable gsm8k rows \(0 malformed"):
        load_problems(tmp_path / "empty.jsonl", "gsm8k")
    (tmp_path / "notads").mkdir()
    with pytest.raises(DataError, match="not a directory written by Dataset.save_to_disk"):
        load_problems(tmp_path / "notads", "gsm8k")


# ---------------------------------------------------------------- malformed rows


GSM8K_BAD = [  # (line, field, reason) in tests/fixtures/data/gsm8k_bad.jsonl; line 3 is blank
    (2, "answer", "missing field"),
    (4, "question", "expected a string, got int"),
    (5, "question", "empty question"),
    (6, "answer", "the final '#### N' line is missing"),
    (7, "answer", "'####' is followed by '', not a number"),
    (8, "answer", "'####' is followed by 'four', not a number"),
    (9, "(json)", "unreadable JSON"),
]


def test_bad_gsm8k_row_raises_with_line_number() -> None:
    path = DATA / "gsm8k_bad.jsonl"
    with pytest.raises(DataError) as err:
        load_problems(path, "gsm8k")
    msg = str(err.value)
    assert f"{path}, line 2 (1-based), field 'answer': missing field" in msg
    assert "task.skip_bad_rows=true" in msg


def test_bad_gsm8k_rows_skipped_and_reported() -> None:
    split = load_problems(DATA / "gsm8k_bad.jsonl", "gsm8k", skip_bad_rows=True)
    assert [p.answer for p in split.problems] == ["24", "3600"]
    assert [p.problem_id for p in split.problems] == ["gsm8k_bad-1", "gsm8k_bad-10"]
    assert len(split.skipped) == 7
    for bad, (line, field, reason) in zip(split.skipped, GSM8K_BAD, strict=True):
        assert (bad.path, bad.row, bad.field) == (str(DATA / "gsm8k_bad.jsonl"), line, field)
        assert bad.reason.startswith(reason)


def test_bad_math_rows() -> None:
    path = DATA / "math_bad.jsonl"
    split = load_problems(path, "math", skip_bad_rows=True)
    assert [p.answer for p in split.problems] == ["2", "\\frac{3}{4}"]
    assert [(b.row, b.field) for b in split.skipped] == [
        (2, "solution"),
        (3, "solution"),
        (4, "solution"),
        (5, "problem"),
    ]
    assert split.skipped[1].reason == "no \\boxed{...} with balanced braces"
    assert split.skipped[2].reason == "expected a string, got null"
    assert "set task.source=gsm8k" in split.skipped[3].reason
    with pytest.raises(DataError, match=r"math_bad.jsonl, line 2 \(1-based\), field 'solution'"):
        load_problems(path, "math")


def test_corrupt_line_numbers_and_non_object_rows(tmp_path: Path) -> None:
    good = json.dumps({"question": "Q?", "answer": "#### 1"})
    path = tmp_path / "rows.jsonl"
    # U+2028 is legal inside a JSON string and must not split a line.
    path.write_bytes(
        "\n".join([good, '{"question": "a\u2028b", "answer": "#### 2"}', "[1, 2]", "{oops", good]).encode()
        + b"\n\xff\xfe\n"
    )
    split = load_problems(path, "gsm8k", skip_bad_rows=True)
    assert [p.answer for p in split.problems] == ["1", "2", "1"]
    assert [(b.row, b.field) for b in split.skipped] == [(3, "(row)"), (4, "(json)"), (6, "(json)")]
    assert split.skipped[2].reason.startswith("not UTF-8")
    with pytest.raises(DataError, match=r"rows.jsonl, line 3 \(1-based\), field '\(row\)'"):
        load_problems(path, "gsm8k")


def test_bad_row_in_parquet_uses_row_number(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows(DATA / "gsm8k_train.jsonl")
    rows[2]["answer"] = None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "nulls.parquet")
    with pytest.raises(DataError, match=r"nulls.parquet, row 3 \(1-based\), field 'answer': expected a string, got null"):
        load_problems(tmp_path / "nulls.parquet", "gsm8k")


# ---------------------------------------------------------------- task splits


def test_load_task_synthetic() -> None:
    cfg = TaskConfig(synthetic=SyntheticTaskConfig(n_train=20, n_test=5), seed=3)
    train, test = load_task(cfg)
    assert (len(train.problems), len(test.problems)) == (20, 5)
    assert train.skipped == test.skipped == []


def test_load_task_with_test_path(tmp_path: Path) -> None:
    cfg = TaskConfig(source="math", train_path=DATA / "math_train.jsonl", test_path=DATA / "math_train.json")
    train, test = load_task(cfg)
    assert [p.answer for p in train.problems] == [p.answer for p in test.problems] == MATH_ANSWERS


def test_load_task_holds_out_disjoint_deterministic_split(tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    path.write_text(
        "".join(json.dumps({"question": f"What is {i} + 0?", "answer": f"#### {i}"}) + "\n" for i in range(40))
        + "{broken\n"
    )
    cfg = TaskConfig(source="gsm8k", train_path=path, seed=7, skip_bad_rows=True)
    train, test = load_task(cfg)
    assert (len(train.problems), len(test.problems)) == (36, 4)
    assert [b.row for b in train.skipped] == [41] and test.skipped == []
    train_ids = {p.problem_id for p in train.problems}
    test_ids = {p.problem_id for p in test.problems}
    assert not train_ids & test_ids and len(train_ids | test_ids) == 40
    again, again_test = load_task(cfg)
    assert [p.problem_id for p in again_test.problems] == [p.problem_id for p in test.problems]
    other = load_task(cfg.model_copy(update={"seed": 8}))[1]
    assert {p.problem_id for p in other.problems} != test_ids


def test_hold_out_keeps_duplicate_questions_together() -> None:
    def prob(i: int, q: str) -> Problem:
        return Problem(problem_id=str(i), question=q, answer="1", solution="#### 1", source="gsm8k")

    problems = [prob(i, f"q{i % 5}") for i in range(20)]  # 5 questions, 4 rows each
    for seed in range(10):
        train, test = hold_out(problems, seed)
        assert len({p.question for p in test}) == 1 and len(test) == 4
        assert not {p.question for p in train} & {p.question for p in test}
    with pytest.raises(DataError, match="set task.test_path"):
        hold_out(problems[:1], 0)


# ---------------------------------------------------------------- prompts


def test_format_prompt_leaves_other_braces_alone() -> None:
    problem = load_problems(DATA / "math_train.jsonl", "math").problems[1]  # Simplify $\frac{6}{8}$.
    template = "Put the answer in \\boxed{}. {{literal}}\nQ: {question}\nA:"
    assert format_prompt(problem, template) == (
        "Put the answer in \\boxed{}. {{literal}}\nQ: Simplify $\\frac{6}{8}$.\nA:"
    )
    tricky = Problem(problem_id="x", question="Is {question} or {0} a {b}?", answer="", solution="", source="math")
    assert format_prompt(tricky, "[{question}|{question}]") == (
        "[Is {question} or {0} a {b}?|Is {question} or {0} a {b}?]"
    )
