"""The store writer: file layout, atomic replace, schema errors, concurrent writers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis.catalog import connect, query
from grpo_core.store import ROLLOUTS, RUNS, STEP_METRICS, SchemaError, Store


def rollout_row(**overrides) -> dict:
    """One rollout with every column the caller must give (context columns are filled by the Store)."""
    row = {
        "decoding": "sample",
        "problem_id": "p0",
        "group_index": 0,
        "sample_index": 0,
        "prompt": "What is 2 + 2?",
        "completion": "2 + 2 = 4. The answer is 4.",
        "gold": "4",
        "answer": "4",
        "answer_norm": "4",
        "correct": True,
        "reward": 1.0,
        "step_rewards": [0.9, 1.0],
        "advantage": 0.5,
        "n_tokens": 12,
        "finished": True,
        "kl": 0.01,
        "logprob_sum": -3.5,
        "engine": "hf",
        "reward_model": None,
        "entropy": 0.8,
        "draw": 0,
        "filtered": False,
    }
    row.update(overrides)
    return row


def group_rows(n_groups: int, group_size: int, tag: str = "") -> list[dict]:
    return [
        rollout_row(problem_id=f"p{g}{tag}", group_index=g, sample_index=s, completion=f"c{g}.{s}{tag}")
        for g in range(n_groups)
        for s in range(group_size)
    ]


def read_all(root: Path, table: str) -> pa.Table:
    files = sorted((root / table).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})


# -- layout and contents ------------------------------------------------------------------------
def test_write_rollouts_layout_types_and_filled_columns(tmp_path):
    store = Store(tmp_path)
    store.write_run("run-1", trial_id="7", name="demo", config={"beta": 0.04})
    path = store.write_rollouts(group_rows(2, 3), run_id="run-1", iteration=1, step=12, split="train")
    assert path == tmp_path / "rollouts" / "run-1" / "it001-step000012-train.parquet"
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == ROLLOUTS.schema
    assert table.num_rows == 6
    for column, value in [("run_id", "run-1"), ("trial_id", "7"), ("iteration", 1), ("step", 12), ("split", "train")]:
        assert set(table.column(column).to_pylist()) == {value}, column
    assert table.column("created_at").null_count == 0
    assert table.column("step_rewards")[0].as_py() == [0.9, 1.0]


def test_write_rollouts_accepts_an_arrow_table_and_casts(tmp_path):
    rows = pa.Table.from_pylist(group_rows(1, 4))  # group_index etc. arrive as int64
    rows = rows.append_column("trial_id", pa.array([None] * 4, pa.string()))
    path = Store(tmp_path).write_rollouts(rows, run_id="r", iteration=0, step=0, split="eval")
    table = pq.read_table(path)
    assert table.schema.field("group_index").type == pa.int32()
    assert table.column("trial_id").null_count == 4


def test_a_table_read_back_from_the_store_can_be_written_again(tmp_path):
    store = Store(tmp_path)
    path = store.write_rollouts(group_rows(2, 2), run_id="r", iteration=0, step=1, split="train")
    table = pq.read_table(path)
    again = store.write_rollouts(table, run_id="r", iteration=np.int64(0), step=np.int32(1), split="train")
    assert pq.read_table(again).equals(table)  # created_at too: given columns are kept


def test_trial_id_without_run_record_is_null(tmp_path):
    path = Store(tmp_path).write_rollouts(group_rows(1, 2), run_id="r", iteration=0, step=0, split="train")
    assert pq.read_table(path).column("trial_id").null_count == 2


def test_empty_step_writes_an_empty_typed_file(tmp_path):
    path = Store(tmp_path).write_rollouts([], run_id="r", iteration=0, step=0, split="train")
    table = pq.read_table(path)
    assert table.num_rows == 0 and table.schema.remove_metadata() == ROLLOUTS.schema


def test_write_run_replaces_and_keeps_created_at(tmp_path):
    store = Store(tmp_path)
    path = store.write_run("r", trial_id=None, name="n", config={"g": 4})
    first = pq.read_table(path).to_pylist()[0]
    store.write_run("r", trial_id=None, name="n", config={"g": 4}, status="finished")
    rows = pq.read_table(path).to_pylist()
    assert len(rows) == 1
    assert rows[0]["status"] == "finished"
    assert rows[0]["created_at"] == first["created_at"] <= rows[0]["updated_at"]
    assert json.loads(rows[0]["config_json"]) == {"g": 4}
    versions = json.loads(rows[0]["versions_json"])
    assert versions["python"] == sys.version.split()[0] and "pyarrow" in versions
    sha = rows[0]["git_sha"]
    assert sha is None or (len(sha) == 40 and int(sha, 16) >= 0)


def test_step_metrics_long_format(tmp_path):
    store = Store(tmp_path)
    store.write_run("r", trial_id="t", name="n", config={})
    path = store.write_step_metrics(
        {"train/kl": 0.02, "rollout/reward_mean": 0.5, "time/generate_s": 3}, run_id="r", trial_id="t", iteration=2, step=7
    )
    assert path == tmp_path / "step_metrics" / "r" / "it002-step000007.parquet"
    table = pq.read_table(path)
    assert table.schema.remove_metadata() == STEP_METRICS.schema
    got = {r["metric"]: r["value"] for r in table.to_pylist()}
    assert got == {"train/kl": 0.02, "rollout/reward_mean": 0.5, "time/generate_s": 3.0}
    assert set(table.column("trial_id").to_pylist()) == {"t"}


def test_step_and_prm_metrics_share_one_long_format(tmp_path):
    """The same metrics written as step metrics and as reward-model metrics give the same rows, but for
    the index column (step vs epoch) and the write time."""
    store = Store(tmp_path)
    store.write_run("r", trial_id="t3", name="n", config={})
    metrics = {"train/kl": np.float32(0.25), "rollout/reward_mean": 1, "time/generate_s": 2.5}
    step = pq.read_table(store.write_step_metrics(metrics, run_id="r", trial_id="t3", iteration=4, step=9))
    prm = pq.read_table(store.write_prm_metrics(metrics, run_id="r", iteration=4, epoch=9))
    assert step.drop(["step", "created_at"]).equals(prm.drop(["epoch", "created_at"]))
    assert step.column("step").to_pylist() == prm.column("epoch").to_pylist() == [9, 9, 9]
    assert step.select(["trial_id", "metric", "value"]).to_pylist() == [
        {"trial_id": "t3", "metric": "train/kl", "value": 0.25},
        {"trial_id": "t3", "metric": "rollout/reward_mean", "value": 1.0},
        {"trial_id": "t3", "metric": "time/generate_s", "value": 2.5},
    ]


# -- trial_id: always the run's ---------------------------------------------------------------------
def test_every_run_scoped_table_takes_trial_id_from_the_run_record(tmp_path):
    store = Store(tmp_path)
    store.write_run("r", trial_id="t7", name="n", config={})
    paths = [
        store.write_rollouts(group_rows(1, 2), run_id="r", iteration=0, step=0, split="train"),
        store.write_step_metrics({"train/kl": 0.1}, run_id="r", trial_id="t7", iteration=0, step=0),
        store.write_prm_metrics({"prm/train_loss": 0.1}, run_id="r", iteration=0, epoch=1),
        store.write_prm_labels([], run_id="r", iteration=0),
    ]
    assert [pq.read_table(p).column("trial_id").to_pylist() for p in paths] == [["t7", "t7"], ["t7"], ["t7"], []]
    # a fresh Store (another process) finds the same trial_id in the record
    again = Store(tmp_path).write_prm_metrics({"prm/x": 1.0}, run_id="r", iteration=1, epoch=0)
    assert pq.read_table(again).column("trial_id").to_pylist() == ["t7"]


@pytest.mark.parametrize("given", [None, "t8"])
def test_a_trial_id_that_disagrees_with_the_run_record_is_rejected(tmp_path, given):
    store = Store(tmp_path)
    store.write_run("r", trial_id="t7", name="n", config={})
    with pytest.raises(SchemaError, match=r"column 'trial_id' must equal trial_id='t7'"):
        store.write_step_metrics({"train/kl": 0.1}, run_id="r", trial_id=given, iteration=0, step=0)
    with pytest.raises(SchemaError, match=r"column 'trial_id' must equal trial_id='t7'"):
        store.write_rollouts([rollout_row(trial_id=given)], run_id="r", iteration=0, step=0, split="train")
    with pytest.raises(SchemaError, match=r"column 'trial_id' must equal trial_id=None"):
        store.write_step_metrics({"train/kl": 0.1}, run_id="no-record", trial_id="t7", iteration=0, step=0)
    assert not list(tmp_path.glob("*/*/*.parquet"))


# -- read_run and code_fingerprint --------------------------------------------------------------------
def test_read_run_round_trips_code_fingerprint(tmp_path):
    store = Store(tmp_path)
    assert store.read_run("r") is None
    store.write_run("r", trial_id="t1", name="n", config={"g": 4}, code_fingerprint="sha256:abc123")
    run = store.read_run("r")
    assert run is not None and list(run) == RUNS.schema.names
    assert [run[c] for c in ("run_id", "trial_id", "code_fingerprint", "status")] == ["r", "t1", "sha256:abc123", "running"]
    assert json.loads(run["config_json"]) == {"g": 4}
    store.write_run("r", trial_id="t1", name="n", config={"g": 4}, status="finished")  # no fingerprint given
    assert Store(tmp_path).read_run("r")["code_fingerprint"] is None
    assert query(tmp_path, "select code_fingerprint, status from runs").to_pylist() == [
        {"code_fingerprint": None, "status": "finished"}]


def test_runs_written_before_code_fingerprint_stay_readable(tmp_path):
    store = Store(tmp_path)
    path = store.write_run("old", trial_id="t2", name="n", config={})
    pq.write_table(pq.read_table(path).drop(["code_fingerprint"]), path)  # a file from before the column
    run = store.read_run("old")
    assert run["code_fingerprint"] is None and run["trial_id"] == "t2"
    assert query(tmp_path, "select run_id, code_fingerprint from runs").to_pylist() == [
        {"run_id": "old", "code_fingerprint": None}]
    store.write_run("new", trial_id=None, name="n", config={}, code_fingerprint="f00d")
    got = query(tmp_path, "select run_id, code_fingerprint from runs order by run_id").to_pylist()
    assert got == [{"run_id": "new", "code_fingerprint": "f00d"}, {"run_id": "old", "code_fingerprint": None}]


# -- atomicity ----------------------------------------------------------------------------------
def test_rewriting_a_step_replaces_its_rows(tmp_path):
    store = Store(tmp_path)
    store.write_rollouts(group_rows(4, 4, tag="old"), run_id="r", iteration=0, step=3, split="train")
    store.write_rollouts(group_rows(2, 4, tag="new"), run_id="r", iteration=0, step=3, split="train")
    store.write_rollouts(group_rows(1, 4), run_id="r", iteration=0, step=3, split="eval")  # other split: kept
    completions = query(tmp_path, "select completion from rollouts where split = 'train'").column(0).to_pylist()
    assert len(completions) == 8 and all(c.endswith("new") for c in completions)
    assert query(tmp_path, "select count(*) as n from rollouts").column("n")[0].as_py() == 12


def test_leftover_temp_file_is_not_read(tmp_path):
    store = Store(tmp_path)
    final = store.write_rollouts(group_rows(1, 2), run_id="r", iteration=0, step=0, split="train")
    # What a writer killed between write and rename leaves: a whole Parquet file under a temp name,
    # and a torn one.
    pq.write_table(pq.read_table(final), final.with_name(f".{final.name}.999-dead.tmp"))
    final.with_name(f".it000-step000001-train.parquet.999-torn.tmp").write_bytes(b"PAR1\x00half")
    assert query(tmp_path, "select count(*) as n from rollouts").column("n")[0].as_py() == 2


def test_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path, monkeypatch):
    store = Store(tmp_path)
    path = store.write_rollouts(group_rows(1, 2), run_id="r", iteration=0, step=0, split="train")

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.write_rollouts(group_rows(3, 2), run_id="r", iteration=0, step=0, split="train")
    assert pq.read_table(path).num_rows == 2
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_readers_never_see_a_partial_step(tmp_path):
    """A reader querying while the same step is rewritten over and over sees all its rows, every time."""
    store = Store(tmp_path)
    rows = group_rows(50, 20)
    store.write_rollouts(rows, run_id="r", iteration=0, step=0, split="train")
    stop = threading.Event()

    def rewrite():
        while not stop.is_set():
            store.write_rollouts(rows, run_id="r", iteration=0, step=0, split="train")

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        con = connect(tmp_path)
        counts = {con.sql("select count(*) from rollouts").fetchall()[0][0] for _ in range(30)}
        con.close()
    finally:
        stop.set()
        writer.join()
    assert counts == {1000}


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("answer_norm"), "missing column(s) 'answer_norm'"),
        (lambda r: r.update(temperature=0.7), "unexpected column(s) 'temperature'"),
        (lambda r: r.update(n_tokens="many"), "column 'n_tokens'"),
        (lambda r: r.update(correct=None), "column 'correct' has 2 null"),
        (lambda r: r.update(decoding="beam"), "column 'decoding' must be one of"),
        (lambda r: r.update(step=4), "column 'step' must equal step=3"),
    ],
)
def test_schema_errors_name_the_column(tmp_path, mutate, message):
    rows = group_rows(1, 2)
    for row in rows:
        mutate(row)
    with pytest.raises(SchemaError) as err:
        Store(tmp_path).write_rollouts(rows, run_id="r", iteration=0, step=3, split="train")
    assert message in str(err.value)
    assert not list(tmp_path.rglob("*.parquet")) and not list(tmp_path.rglob("*.tmp"))


def test_rows_that_disagree_on_columns_are_rejected(tmp_path):
    rows = group_rows(1, 3)
    del rows[2]["kl"]
    with pytest.raises(SchemaError, match=r"row 2 has missing column\(s\) \['kl'\]"):
        Store(tmp_path).write_rollouts(rows, run_id="r", iteration=0, step=0, split="train")


def test_arrow_table_with_an_extra_column_is_rejected(tmp_path):
    rows = pa.Table.from_pylist(group_rows(1, 2)).append_column("foo", pa.array([1, 2]))
    with pytest.raises(SchemaError, match="unexpected column.*'foo'"):
        Store(tmp_path).write_rollouts(rows, run_id="r", iteration=0, step=0, split="train")


@pytest.mark.parametrize("run_id", ["", "..", "a/b", "../escape", "has space", "x\x00y", None])
def test_unsafe_run_id_is_rejected(tmp_path, run_id):
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="run_id must be a safe path component"):
        store.write_rollouts(group_rows(1, 1), run_id=run_id, iteration=0, step=0, split="train")
    with pytest.raises(ValueError, match="run_id must be a safe path component"):
        store.write_run(run_id, trial_id=None, name="x", config={})
    with pytest.raises(ValueError, match="run_id must be a safe path component"):
        store.write_step_metrics({"train/kl": 0.0}, run_id=run_id, trial_id=None, iteration=0, step=0)


def test_bad_split_step_and_metrics_are_rejected(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(SchemaError, match="split must be one of"):
        store.write_rollouts(group_rows(1, 1), run_id="r", iteration=0, step=0, split="test")
    with pytest.raises(ValueError, match="step must be a non-negative int32"):
        store.write_rollouts(group_rows(1, 1), run_id="r", iteration=0, step=-1, split="train")
    with pytest.raises(SchemaError, match="metric name 'kl' must look like 'namespace/name'"):
        store.write_step_metrics({"kl": 0.1}, run_id="r", trial_id=None, iteration=0, step=0)
    with pytest.raises(SchemaError, match="metric 'train/kl' has non-numeric value 'high'"):
        store.write_step_metrics({"train/kl": "high"}, run_id="r", trial_id=None, iteration=0, step=0)


def test_store_imports_neither_duckdb_nor_torch():
    code = "import sys, grpo_core.store.writer; print(sorted({'duckdb', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- concurrent writers -------------------------------------------------------------------------
def _write_trial(root: str, run_id: str, trial_id: str, n_steps: int) -> None:
    store = Store(Path(root))
    store.write_run(run_id, trial_id=trial_id, name=run_id, config={"trial": trial_id})
    for step in range(n_steps):
        store.write_rollouts(group_rows(8, 4, tag=run_id), run_id=run_id, iteration=0, step=step, split="train")
        store.write_step_metrics({"train/loss": float(step)}, run_id=run_id, trial_id=trial_id, iteration=0, step=step)
    store.write_run(run_id, trial_id=trial_id, name=run_id, config={"trial": trial_id}, status="finished")


def test_two_writer_processes_share_one_root(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_write_trial, args=(str(tmp_path), f"run-{i}", str(i), 25)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    counts = query(tmp_path, "select run_id, trial_id, count(*) as n from rollouts group by all order by run_id")
    assert counts.to_pylist() == [
        {"run_id": "run-0", "trial_id": "0", "n": 25 * 32},
        {"run_id": "run-1", "trial_id": "1", "n": 25 * 32},
    ]
    runs = query(tmp_path, "select run_id, status from runs order by run_id").to_pylist()
    assert runs == [{"run_id": "run-0", "status": "finished"}, {"run_id": "run-1", "status": "finished"}]
    assert query(tmp_path, "select count(*) as n from step_metrics").column("n")[0].as_py() == 50
