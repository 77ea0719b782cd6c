"""Label rows and files: grouping into solutions, and clear errors naming the bad field."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prm.data import LabelError, load_label_file, save_label_file, solutions_from_rows


def rows(n_steps=3, solution_index=0, problem_id="p0", over=None):
    out = []
    for j in range(n_steps):
        r = {"problem_id": problem_id, "solution_index": solution_index, "step_index": j,
             "step_text": f"{j} + 1 = {j + 1}" if j < n_steps - 1 else "The answer is 3",
             "prompt": "Q\n", "hard": j != 1, "soft": 0.5, "exact": None, "n_completions": 4,
             "completions_correct": 2}
        out.append(r)
    for (j, key), value in (over or {}).items():
        if value is ...:
            del out[j][key]
        else:
            out[j][key] = value
    return out


def kw(j, key, value):
    return {(j, key): value}


def test_rows_group_into_solutions_in_step_order():
    mixed = rows(3, 0)[::-1] + rows(2, 1, "p1")
    sols = solutions_from_rows(mixed)
    assert [s.problem_id for s in sols] == ["p0", "p1"]
    assert sols[0].steps == ["0 + 1 = 1", "1 + 1 = 2", "The answer is 3"]
    assert sols[0].hard == [True, False, True] and sols[0].correct is True
    assert sols[0].completion("\n") == "0 + 1 = 1\n1 + 1 = 2\nThe answer is 3"
    # the same (problem, solution_index) from two iterations are two solutions
    again = rows(3) + [dict(r, iteration=1) for r in rows(3)]
    assert len(solutions_from_rows(again)) == 2


@pytest.mark.parametrize(
    "over, field",
    [
        (kw(1, "hard", ...), "missing field 'hard'"),
        (kw(0, "step_text", ...), "missing field 'step_text'"),
        (kw(2, "prompt", None), "missing field 'prompt'"),
        (kw(1, "hard", 0.5), "field 'hard' must be true/false or 0/1, got 0.5"),
        (kw(1, "hard", "yes"), "field 'hard' must be true/false or 0/1"),
        (kw(1, "soft", 1.5), "field 'soft' must be a number in [0, 1], got 1.5"),
        (kw(1, "soft", float("nan")), "field 'soft' must be a number in [0, 1]"),
        (kw(0, "exact", 2), "field 'exact' must be true/false, 0/1 or null, got 2"),
        (kw(0, "solution_index", -1), "field 'solution_index' must be an integer >= 0"),
        (kw(1, "step_index", 5), "field 'step_index' must run 0..S-1 without gaps; got 3 steps, missing index(es) [1, 3, 4]"),
        (kw(1, "step_index", 0), "field 'step_index' 0 repeats row 0"),
        (kw(1, "step_text", "1 + 1 = 2\nmore"), "field 'step_text': 3 labelled steps split back into 4"),
        (kw(1, "step_text", "   "), "field 'step_text': 3 labelled steps split back into 2"),
        (kw(2, "prompt", "other"), "field 'prompt' differs"),
        (kw(0, "n_completions", "4"), "field 'n_completions' must be an integer >= 0"),
    ],
)
def test_bad_rows_fail_naming_the_field(over, field):
    with pytest.raises(LabelError) as err:
        solutions_from_rows(rows(3, over=over))
    assert field in str(err.value)
    assert "problem 'p0'" in str(err.value)


def test_labels_as_ints_and_nullable_exact_are_accepted():
    r = rows(2)
    r[0].update(hard=1, exact=0)
    r[1].update(hard=0, exact=None, soft=1)
    s = solutions_from_rows(r)[0]
    assert s.hard == [True, False] and s.exact == [False, None] and s.soft == [0.5, 1.0]


def test_label_files_jsonl_and_parquet(tmp_path):
    r = rows(3)
    path = save_label_file(r, tmp_path / "labels.jsonl")
    assert solutions_from_rows(load_label_file(path))[0].steps == solutions_from_rows(r)[0].steps
    pq.write_table(pa.Table.from_pylist(r), tmp_path / "labels.parquet")
    assert solutions_from_rows(load_label_file(tmp_path / "labels.parquet"))[0].hard == [True, False, True]


def test_bad_label_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem_id": "p0"}\n{not json\n')
    with pytest.raises(LabelError, match=r"bad.jsonl:2: not valid JSON"):
        load_label_file(bad)
    bad.write_text("[1, 2]\n")
    with pytest.raises(LabelError, match=r"bad.jsonl:1: expected a JSON object per line, got list"):
        load_label_file(bad)
    bad.write_text('{"problem_id": "p0", "solution_index": 0, "step_index": 0, "step_text": "x", "prompt": "q", "soft": 1}\n')
    with pytest.raises(LabelError, match="label row 0 .*missing field 'hard'"):
        solutions_from_rows(load_label_file(bad))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(LabelError, match="not a readable Parquet file"):
        load_label_file(tmp_path / "junk.parquet")
    with pytest.raises(LabelError, match="no such label file"):
        load_label_file(tmp_path / "missing.jsonl")
