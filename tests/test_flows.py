"""The Prefect flows on the tiny policy: what grpo/single and grpo/iterative return and store, and a
flow killed mid-GRPO that reruns from Prefect's cache and the trainer's checkpoint."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.catalog import query
from grpo_core.config import ExperimentConfig
from grpo_core.pipeline.stages import run_id_for
from grpo_core.training import checkpoint
from tests.conftest import one_thread, tiny_config

REPO = Path(__file__).resolve().parents[1]
B, G = 4, 4  # questions per step, samples per question
N_EVAL, N_SAMPLES = 8, 4  # held-out problems, samples per problem


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prefect's test harness (a temporary server and database); Prefect's home and the persisted
    task results and caches in a temp dir. Yields the harness's API URL. Module-scoped: the
    server's background work would slow later tests that use two torch threads."""
    home = tmp_path_factory.mktemp("prefect_home")
    with pytest.MonkeyPatch.context() as mp:
        # before flows.settings (imported by flows.grpo) would default them into the checkout
        mp.setenv("PREFECT_HOME", str(home))
        mp.setenv("PREFECT_LOCAL_STORAGE_PATH", str(home / "results"))
        from prefect.settings import PREFECT_API_URL, PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        with temporary_settings({PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: home / "results"}), \
                prefect_test_harness(server_startup_timeout=120):
            yield PREFECT_API_URL.value()


def flow_config(tmp_path: Path, tiny_cfg: ExperimentConfig, *extra: str) -> ExperimentConfig:
    """The tiny policy (reused from the session's cache), small GRPO batches and evaluations."""
    return tiny_config(
        tiny_cfg.model.cache_dir, f"store.root={tmp_path / 'store'}", f"store.runs_dir={tmp_path / 'runs'}",
        "grpo.supervision=outcome", f"grpo.group_size={G}", f"grpo.questions_per_step={B}",
        f"grpo.minibatch_size={B * G}", "grpo.steps=2", "rollout.max_new_tokens=24",
        f"eval.n_problems={N_EVAL}", f"eval.n_samples={N_SAMPLES}", f"eval.k_max={N_SAMPLES}", *extra,
    )


def rollout_counts(cfg: ExperimentConfig, run_id: str) -> dict[tuple, int]:
    """Rows per (split, decoding, iteration, step) of a run."""
    rows = query(cfg.store.root, "SELECT split, decoding, iteration, step, count(*) AS n FROM rollouts "
                 "WHERE run_id = $run_id GROUP BY ALL", {"run_id": run_id}).to_pylist()
    return {(r["split"], r["decoding"], r["iteration"], r["step"]): r["n"] for r in rows}


def expected_counts(iterations: int, steps: int) -> dict[tuple, int]:
    """B x G train rows per step; greedy and sampled eval rows before RL and after each iteration."""
    train = {("train", "sample", it, s): B * G for it in range(1, iterations + 1) for s in range(1, steps + 1)}
    evals = {}
    for it, step in [(0, 0), *((it, steps) for it in range(1, iterations + 1))]:
        evals[("eval", "greedy", it, step)] = N_EVAL
        evals[("eval", "sample", it, step)] = N_EVAL * N_SAMPLES
    return train | evals


def _check_evals(evals: dict, iterations: int) -> None:
    assert sorted(evals) == list(range(iterations + 1))
    for e in evals.values():
        assert {"greedy_accuracy", "wellformed_rate", "pass@1", "pass@2", "pass@4", "maj@1", "maj@4"} <= set(e)
        assert all(0.0 <= v <= 1.0 for v in e.values()), e
        assert e["pass@1"] <= e["pass@2"] <= e["pass@4"]


def _mtimes(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*.parquet")}


def test_single_flow_returns_evals_and_stores_every_rollout(prefect_api, tmp_path, tiny_cfg, tiny_policy_dir):
    from flows.grpo import grpo_single

    cfg = flow_config(tmp_path, tiny_cfg, "run_name=single")
    with one_thread():
        result = grpo_single(cfg)
    run_id = run_id_for(cfg)
    assert result["run_id"] == run_id
    assert Path(result["policy"]) == cfg.store.runs_dir / run_id / "it001" / "checkpoints" / "step-000002"
    _check_evals(result["evals"], 1)
    assert rollout_counts(cfg, run_id) == expected_counts(1, 2)
    greedy = query(cfg.store.root, "SELECT avg(correct::INT) AS acc FROM rollouts WHERE run_id = $r AND "
                   "split = 'eval' AND decoding = 'greedy' AND iteration = 1", {"r": run_id}).to_pylist()[0]["acc"]
    assert result["evals"][1]["greedy_accuracy"] == pytest.approx(greedy)
    status = query(cfg.store.root, "SELECT status FROM runs WHERE run_id = $r", {"r": run_id}).to_pylist()
    assert status == [{"status": "finished"}]


def test_iterative_flow_evaluates_each_iteration_and_reruns_from_cache(prefect_api, tmp_path, tiny_cfg,
                                                                        tiny_policy_dir):
    from flows.grpo import grpo_iterative

    cfg = flow_config(tmp_path, tiny_cfg, "run_name=iterative", "iterative.iterations=2")
    with one_thread():
        result = grpo_iterative(cfg)
    run_id = run_id_for(cfg)
    _check_evals(result["evals"], 2)
    assert result["reward_model"] is None  # outcome supervision trains no PRM
    assert Path(result["policy"]).parent.parent.name == "it002"
    assert rollout_counts(cfg, run_id) == expected_counts(2, 2)
    # The main job ends with the RL-effects report of its run, numbers as the evaluations printed.
    assert result["report"]["markdown"] == str(cfg.store.runs_dir / run_id / "report" / "report.md")
    md = Path(result["report"]["markdown"]).read_text()
    before, after = result["evals"][0], result["evals"][2]
    assert f"| {N_SAMPLES} | {before[f'pass@{N_SAMPLES}']:.1%} | {after[f'pass@{N_SAMPLES}']:.1%} |" in md
    assert Path(result["report"]["html"]).exists()

    # The same config again: every stage comes from the cache, nothing is rewritten.
    before = _mtimes(cfg.store.root / "rollouts")
    with one_thread():
        again = grpo_iterative(cfg)
    assert again["evals"] == result["evals"] and again["policy"] == result["policy"]
    assert _mtimes(cfg.store.root / "rollouts") == before


def test_iterative_flow_with_process_supervision_labels_trains_a_prm_and_uses_its_step_rewards(
        prefect_api, tmp_path, tiny_cfg, tiny_policy_dir):
    from flows.grpo import grpo_iterative

    cfg = flow_config(tmp_path, tiny_cfg, "run_name=process", "iterative.iterations=2", "grpo.supervision=process",
               "iterative.label_problems=4", "prm.samples_per_problem=2", "prm.n_completions=2", "prm.epochs=1")
    with one_thread():
        result = grpo_iterative(cfg)
    run_id = run_id_for(cfg)
    _check_evals(result["evals"], 2)
    assert rollout_counts(cfg, run_id) == expected_counts(2, 2)
    assert Path(result["reward_model"]) == cfg.store.runs_dir / run_id / "it002" / "prm"
    labels = query(cfg.store.root, "SELECT iteration, count(DISTINCT solution_index) AS n FROM prm_labels "
                   "WHERE run_id = $r GROUP BY ALL ORDER BY ALL", {"r": run_id}).to_pylist()
    # 4 problems x 2 solutions each; a solution with no step text has nothing to label
    assert [row["iteration"] for row in labels] == [1, 2] and all(1 <= row["n"] <= 8 for row in labels)
    train = query(cfg.store.root, "SELECT iteration, reward_model, step_rewards, advantage, correct FROM rollouts "
                  "WHERE run_id = $r AND split = 'train'", {"r": run_id}).to_pylist()
    w = cfg.grpo.process_outcome_weight
    assert w == 1.0  # the default: the verifier's outcome joins the last step's reward
    for row in train:  # every training rollout carries the PRM's step scores and the PRM's version
        assert row["reward_model"] and f"it{row['iteration']:03d}" in row["reward_model"]
        scores = list(row["step_rewards"])  # empty for step-less text
        if scores:
            scores[-1] -= w * row["correct"]
        assert all(0.0 < r < 1.0 for r in scores)  # sigmoid scores
    assert sum(len(row["step_rewards"]) for row in train) > len(train)
    trained = query(cfg.store.root, "SELECT DISTINCT iteration FROM prm_metrics WHERE run_id = $r AND epoch >= 1 "
                    "ORDER BY 1", {"r": run_id}).to_pylist()
    assert trained == [{"iteration": 1}, {"iteration": 2}]


def _iteration_step(path: Path) -> tuple[int, int]:
    """(iteration, step) of a store file named it{iteration:03d}-step{step:06d}..."""
    it, step = re.match(r"it(\d+)-step(\d+)", path.name).groups()
    return int(it), int(step)


def _task_states(flow_run_name: str) -> list[tuple[str, str]]:
    """(task, state name) of the completed flow run called `flow_run_name`, in the order they ran."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])))
        done = [r for r in runs if r.state and r.state.is_completed()]
        assert len(done) == 1, [(r.name, r.state_name) for r in runs]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[done[0].id])))
    tasks.sort(key=lambda t: t.expected_start_time)
    return [(t.name, t.state.name) for t in tasks]


def test_killed_flow_reruns_finished_stages_from_cache_and_grpo_from_its_checkpoint(
        prefect_api, tmp_path, tiny_cfg, tiny_policy_dir):
    """SIGKILL inside iteration 2's GRPO stage, then the same flow again: iteration 1 is not redone,
    iteration 2 resumes from its checkpoint, and every step is in the store exactly once."""
    steps = 3
    cfg = flow_config(tmp_path, tiny_cfg, "run_name=crash", "iterative.iterations=2", f"grpo.steps={steps}",
               "grpo.checkpoint_every=1")
    run_id = run_id_for(cfg)
    (tmp_path / "cfg.json").write_text(cfg.model_dump_json())
    env = {
        **os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "prefect" / "results"), "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    args = [sys.executable, str(REPO / "tests" / "helpers" / "flow_script.py"), str(tmp_path / "cfg.json")]
    it2 = cfg.store.runs_dir / run_id / "it002"
    # Step 2's metrics come after step 1's checkpoint: the kill lands after a checkpoint of iteration 2.
    marker = cfg.store.root / "step_metrics" / run_id / "it002-step000002.parquet"

    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert marker.exists(), f"the flow never reached iteration 2's first step:\n{log.read_text()[-3000:]}"
    assert proc.returncode == -signal.SIGKILL
    resumed_from = checkpoint.latest(it2).step
    assert 1 <= resumed_from < steps, "killed after iteration 2's GRPO stage, not inside it"
    assert ("eval", "greedy", 2, steps) not in rollout_counts(cfg, run_id)
    before = _mtimes(cfg.store.root)

    rerun = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, output[-5000:]

    # Finished stages came from Prefect's cache; the unfinished GRPO stage and what follows ran.
    assert _task_states(f"iterative-{run_id}") == [
        ("start-run", "Completed"), ("bootstrap-policy", "Cached"),
        ("evaluate-it0-step0", "Cached"), ("grpo-it1", "Cached"), (f"evaluate-it1-step{steps}", "Cached"),
        ("grpo-it2", "Completed"), (f"evaluate-it2-step{steps}", "Completed"),  # iteration 2
        ("finish-run-finished", "Completed"), ("write-report", "Completed"),  # the report always reads the store anew
    ]
    # ... so their store files were not rewritten, nor were iteration 2's steps up to the checkpoint.
    after = _mtimes(cfg.store.root)
    kept = [p for p in before if p.parent.parent.name in ("rollouts", "step_metrics")
            and _iteration_step(p) <= (2, resumed_from)]
    assert kept and {p: after[p] for p in kept} == {p: before[p] for p in kept}
    assert f"resuming {run_id} from checkpoint step {resumed_from}" in output

    # Every step exactly once: B x G rows each, no duplicate sample keys, one row per metric and step.
    assert rollout_counts(cfg, run_id) == expected_counts(2, steps)
    dupes = query(cfg.store.root, "SELECT count(*) - count(DISTINCT (split, decoding, iteration, step, group_index, "
                  "sample_index)) AS d FROM rollouts WHERE run_id = $r", {"r": run_id}).to_pylist()
    assert dupes == [{"d": 0}]
    metrics = query(cfg.store.root, "SELECT iteration, step, count(*) AS n, count(DISTINCT metric) AS m "
                    "FROM step_metrics WHERE run_id = $r GROUP BY ALL ORDER BY ALL", {"r": run_id}).to_pylist()
    assert [(m["iteration"], m["step"]) for m in metrics] == [(i, s) for i in (1, 2) for s in range(1, steps + 1)]
    assert all(m["n"] == m["m"] for m in metrics)


def test_prm_train_flow_labels_policy_samples_and_trains_a_prm(prefect_api, tmp_path, tiny_cfg, tiny_policy_dir):
    from flows.prm import prm_train
    from prm.model import RM_INFO

    cfg = flow_config(tmp_path, tiny_cfg, "run_name=rm", "iterative.label_problems=4", "prm.samples_per_problem=2",
               "prm.n_completions=2", "prm.epochs=1")
    with one_thread():
        result = prm_train(cfg)
    run_id = run_id_for(cfg.model_copy(update={"run_name": "rm-prm"}))  # its own run, never a GRPO run's
    assert result["run_id"] == run_id and run_id.startswith("rm-prm-")
    assert Path(result["reward_model"]) == cfg.store.runs_dir / run_id / "it001" / "prm"
    assert (Path(result["reward_model"]) / RM_INFO).is_file()
    steps = query(cfg.store.root, "SELECT count(*) AS n, count(DISTINCT solution_index) AS s FROM prm_labels "
                  "WHERE run_id = $r AND iteration = 1", {"r": run_id}).to_pylist()[0]
    assert steps["n"] == result["label_steps"] > 0 and 1 <= steps["s"] <= 8  # 4 problems x 2 solutions
    assert {"prm/train_loss", "prm/eval_auc"} <= set(result["metrics"])
    status = query(cfg.store.root, "SELECT status FROM runs WHERE run_id = $r", {"r": run_id}).to_pylist()
    assert status == [{"status": "finished"}]


def test_prm_train_flow_starts_the_reward_model_from_prm_init_path(prefect_api, tmp_path, tiny_cfg):
    """Any local model dir with its own tokenizer can be the first reward model's backbone."""
    import json

    from flows.prm import prm_train
    from grpo_core.policy.bootstrap import build_policy

    other = tiny_config(tmp_path / "models", "model.hidden_size=48", "model.num_heads=4", "model.vocab_size=320",
                        "model.sft_steps=10")
    with one_thread():
        backbone = build_policy(other.model, other.task, progress=False)
        cfg = flow_config(tmp_path, tiny_cfg, "run_name=rm-init", f"prm.init_path={backbone}", "iterative.label_problems=4",
                   "prm.samples_per_problem=2", "prm.n_completions=2", "prm.epochs=1")
        result = prm_train(cfg)
    rm_dir = Path(result["reward_model"])
    assert json.loads((rm_dir / "config.json").read_text())["hidden_size"] == 48  # the policy's is 32
    vocab = [json.loads((d / "tokenizer.json").read_text())["model"]["vocab"] for d in (rm_dir, backbone)]
    assert vocab[0] == vocab[1] and len(vocab[0]) == 320  # its own tokenizer (the policy's has 300 tokens)


def test_report_flow_writes_the_report_and_a_markdown_artifact(prefect_api, tmp_path):
    """analysis/report on a hand-made store (no model needed): files in out_dir, artifact on the flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.report import report
    from grpo_core.store import Store
    from analysis.render import inline_figures
    from tests.test_analysis_sql import eval_samples

    store = Store(tmp_path / "store")
    store.write_run("r1", trial_id=None, name="r1", config={"grpo": {"supervision": "outcome", "steps": 3}})
    store.write_rollouts(eval_samples("p", ["4", "5", "5", "6"]), run_id="r1", iteration=0, step=0, split="eval")
    store.write_rollouts(eval_samples("p", ["4", "4", "4", "6"]), run_id="r1", iteration=1, step=3, split="eval")
    cfg = ExperimentConfig.model_validate({"store": {"root": str(tmp_path / "store"), "runs_dir": str(tmp_path)}})
    paths = report(["r1"], cfg)
    assert paths["markdown"] == str(tmp_path / "r1" / "report" / "report.md")
    md = Path(paths["markdown"]).read_text()
    assert "Maj@4 rose 100.0 points from 0.0% to 100.0% (95% CI +100.0 to +100.0); Pass@4 stayed at 100.0%" in md
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["rl-report-r1"])))
    assert len(artifacts) == 1 and artifacts[0].type == "markdown"
    assert artifacts[0].data.startswith(inline_figures(Path(paths["markdown"])))  # the figures embedded
    assert paths["html"] in artifacts[0].data


def test_offline_defaults_create_prefect_home_in_a_fresh_checkout(tmp_path, monkeypatch):
    """A fresh clone has no runs/: Prefect's home must exist before its temporary server opens its database."""
    from flows.settings import apply_offline_defaults

    monkeypatch.delenv("PREFECT_HOME", raising=False)
    monkeypatch.delenv("PREFECT_LOCAL_STORAGE_PATH", raising=False)
    work_dir = tmp_path / "fresh" / "runs"
    apply_offline_defaults(work_dir)
    assert os.environ["PREFECT_HOME"] == str((work_dir / "prefect").resolve())
    assert (work_dir / "prefect").is_dir()
