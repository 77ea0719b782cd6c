"""PRM labels and metrics in the store, read back through the prm_labels / prm_metrics views."""

from __future__ import annotations

import pytest

from analysis.catalog import query
from grpo_core.store import SchemaError, Store
from prm.data import solutions_from_rows


def label_rows(n_solutions=2, exact=True):
    rows = []
    for i in range(n_solutions):
        for j, text in enumerate(["1 + 1 = 2", "2 * 3 = 6", "The answer is 6"]):
            rows.append({"problem_id": f"p{i}", "solution_index": i, "step_index": j, "step_text": text,
                         "prompt": "Q\n", "hard": j != 1 or i == 0, "soft": 0.25 * j, "exact": exact if j else None,
                         "n_completions": 4 if j < 2 else 0, "completions_correct": j})
    return rows


def test_write_prm_labels_round_trip_and_retry_replaces(tmp_path):
    store = Store(tmp_path)
    store.write_run("r1", trial_id="t7", name="x", config={})
    path = store.write_prm_labels(label_rows(), run_id="r1", iteration=0)
    assert path == tmp_path / "prm_labels" / "r1" / "it000.parquet"
    store.write_prm_labels(label_rows(1), run_id="r1", iteration=1)
    store.write_prm_labels(label_rows(3), run_id="r1", iteration=1)  # a retried labelling replaces its file
    got = query(tmp_path, "select iteration, count(*) n, any_value(trial_id) t, sum(is_last_step::int) last "
                          "from prm_labels group by iteration order by iteration").to_pylist()
    assert got == [{"iteration": 0, "n": 6, "t": "t7", "last": 2}, {"iteration": 1, "n": 9, "t": "t7", "last": 3}]
    back = query(tmp_path, "from prm_labels where iteration = 0 order by solution_index, step_index").to_pylist()
    assert [r["exact"] for r in back[:3]] == [None, True, True]
    # rows read back from the view train as they were written
    sols = solutions_from_rows(back)
    assert [s.hard for s in sols] == [[True, True, True], [True, False, True]]
    assert sols[0].steps == ["1 + 1 = 2", "2 * 3 = 6", "The answer is 6"]


def test_write_prm_labels_rejects_bad_rows(tmp_path):
    store = Store(tmp_path)
    rows = label_rows()
    rows[0]["soft"] = "high"
    with pytest.raises(SchemaError, match="column 'soft'"):
        store.write_prm_labels(rows, run_id="r1", iteration=0)
    rows = label_rows()
    for r in rows:
        del r["step_text"]
    with pytest.raises(SchemaError, match="missing column.*'step_text'"):
        store.write_prm_labels(rows, run_id="r1", iteration=0)
    with pytest.raises(SchemaError, match="column 'iteration' must equal iteration=0"):
        store.write_prm_labels([dict(r, iteration=3) for r in label_rows()], run_id="r1", iteration=0)
    assert not (tmp_path / "prm_labels").exists() or not list((tmp_path / "prm_labels").rglob("*.parquet"))


def test_write_prm_metrics_long_format_per_epoch_and_model(tmp_path):
    store = Store(tmp_path)
    store.write_prm_metrics({"prm/label_agreement": 0.8}, run_id="r1", iteration=0, epoch=0)
    store.write_prm_metrics({"prm/train_loss": 0.5, "prm/eval_auc": 0.7}, run_id="r1", iteration=0, epoch=1)
    store.write_prm_metrics({"prm/train_loss": 0.3, "prm/eval_auc": 0.9}, run_id="r1", iteration=0, epoch=2)
    store.write_prm_metrics({"prm/train_loss": 0.2, "prm/eval_auc": 0.95}, run_id="r1", iteration=0, epoch=2)
    store.write_prm_metrics({"orm/train_loss": 0.4}, run_id="r1", iteration=0, epoch=2, model="orm")
    got = query(tmp_path, "select epoch, metric, namespace, value from prm_metrics order by epoch, metric").to_pylist()
    assert [(r["epoch"], r["metric"], r["value"]) for r in got] == [
        (0, "prm/label_agreement", 0.8),
        (1, "prm/eval_auc", 0.7), (1, "prm/train_loss", 0.5),
        (2, "orm/train_loss", 0.4), (2, "prm/eval_auc", 0.95), (2, "prm/train_loss", 0.2),
    ]
    assert {r["namespace"] for r in got} == {"prm", "orm"}
    with pytest.raises(SchemaError, match="metric name 'loss' must look like 'namespace/name'"):
        store.write_prm_metrics({"loss": 1.0}, run_id="r1", iteration=0, epoch=1)
    with pytest.raises(SchemaError, match="non-numeric value"):
        store.write_prm_metrics({"prm/x": "a"}, run_id="r1", iteration=0, epoch=1)
    with pytest.raises(ValueError, match="epoch must be a non-negative int32"):
        store.write_prm_metrics({"prm/x": 1.0}, run_id="r1", iteration=0, epoch=-1)
