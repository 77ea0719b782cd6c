"""Experiments (arms x seeds): the spec's validation, run identity and tags, the shared before-RL evaluation,
a real tiny experiment (outcome vs process, 2 seeds each, in parallel processes) and its rerun, and the
experiment report's numbers against the statistics computed directly from the stored rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from analysis.catalog import query
from analysis.experiment_report import findings, load_experiment, summary_sentences
from analysis.stats import hierarchical_bootstrap_diff, hierarchical_bootstrap_mean
from grpo_core import experiment as experiments
from grpo_core.config import ConfigError, ExperimentConfig, ReportConfig, load_config
from grpo_core.pipeline.stages import run_id_for
from grpo_core.store import ROLLOUTS, Store
from tests.conftest import tiny_config
from tests.test_store import rollout_row
from tests.test_flows import prefect_api  # noqa: F401  (the module-scoped Prefect test server)

B, G, STEPS = 2, 2, 2            # questions per step, samples per question, GRPO steps (one iteration)
N_EVAL, N_SAMPLES = 6, 4         # held-out problems, samples per problem (K = 4)
PROCESS = ["iterative.label_problems=2", "prm.samples_per_problem=1", "prm.n_completions=2", "prm.epochs=1"]


# -- the spec -----------------------------------------------------------------------------------------
def test_a_bad_arm_override_names_the_arm_and_the_field():
    with pytest.raises(ConfigError, match=r"experiment arm 'ps': grpo.supervision: Input should be 'outcome' or "
                                          r"'process' \(got 'proc'\)"):
        load_config(None, ["experiment.arms={os: {grpo.supervision: outcome}, ps: {grpo.supervision: proc}}"])
    with pytest.raises(ConfigError, match=r"experiment arm 'big': grpo.group_size: Input should be greater than or "
                                          r"equal to 2"):
        load_config(None, ["experiment.arms={big: {grpo.group_size: 1}}"])
    with pytest.raises(ConfigError, match=r"experiment arm 'a': grpo.nope: Extra inputs are not permitted"):
        load_config(None, ["experiment.arms={a: {grpo.nope: 1}}"])
    with pytest.raises(ConfigError, match=r"experiment arm 'a': key 'store.root' must be section.field of a section "
                                          r"that changes a run's result"):
        load_config(None, ["experiment.arms={a: {store.root: elsewhere}}"])
    with pytest.raises(ConfigError, match=r"arm 'a' sets grpo.seed: the experiment's seeds set grpo.seed, prm.seed"):
        load_config(None, ["experiment.arms={a: {grpo.seed: 3}}"])
    with pytest.raises(ConfigError, match=r"experiment: Value error, arms is empty"):
        load_config(None, ["experiment.arms={}"])
    with pytest.raises(ConfigError, match=r"arm name 'a/b'"):
        load_config(None, ["experiment.arms={a/b: {grpo.beta: 0.0}}"])
    same = load_config(None, ["experiment.arms={a: {grpo.beta: 0.04}, b: {}}"])  # beta 0.04 is the default
    with pytest.raises(ConfigError, match=r"arms 'a' and 'b' make the same run"):
        experiments.plan(same)


def test_seeds_set_the_seed_knobs_and_the_tags_leave_run_ids_alone():
    cfg = load_config(None, ["experiment.seeds=3", "experiment.first_seed=5", "experiment.name=one"])
    runs = experiments.plan(cfg)
    assert [(r.arm, r.seed) for r in runs] == [(a, s) for a in ("outcome", "process") for s in (5, 6, 7)]
    for r in runs:
        assert (r.cfg.grpo.seed, r.cfg.prm.seed, r.cfg.grpo.supervision) == (r.seed, r.seed, r.arm)
        assert r.cfg.model == cfg.model and r.cfg.task == cfg.task  # one starting policy, one problem set
        assert r.run_id == run_id_for(r.cfg) and r.run_id.startswith(f"{cfg.run_name}-")
        assert r.overrides == {"grpo.supervision": r.arm, "grpo.seed": r.seed, "prm.seed": r.seed}
        assert r.membership("one") == {"experiment": "one", "arm": r.arm, "seed": r.seed, "run_id": r.run_id,
                                       "overrides_json": json.dumps(r.overrides, sort_keys=True)}
    assert len({r.run_id for r in runs}) == 6
    # another experiment holding the same arm config and seed under other names shares the run
    other = load_config(None, ["experiment.name=two", "experiment.arms={ps: {grpo.supervision: process}}",
                               "experiment.first_seed=6", "experiment.seeds=1", "experiment.n_parallel=1"])
    (shared,) = experiments.plan(other)
    assert shared.run_id == next(r.run_id for r in runs if (r.arm, r.seed) == ("process", 6))
    # the seed is the only difference the plan makes: the arm's run is the plain config with those knobs
    plain = load_config(None, ["grpo.supervision=process", "grpo.seed=6", "prm.seed=6"])
    assert run_id_for(plain) == shared.run_id


def test_the_before_rl_evaluation_is_shared_by_every_arm_and_seed_unless_vllm_seeds_it():
    runs = experiments.plan(load_config(None, ["experiment.seeds=2"]))
    assert len(experiments.shared_start_evaluations(runs)) == 1
    other_policy = experiments.plan(load_config(None, ["experiment.seeds=1", "experiment.arms={a: {}, b: {model.seed: 1}}"]))
    assert [len(g) for g in experiments.shared_start_evaluations(other_policy).values()] == [1, 1]
    vllm = experiments.plan(load_config(None, ["experiment.seeds=2", "rollout.engine=vllm"]))
    assert sorted(len(g) for g in experiments.shared_start_evaluations(vllm).values()) == [2, 2]  # one per seed


def test_a_deployment_run_gets_its_runs_config_and_a_failed_one_is_named(monkeypatch: pytest.MonkeyPatch):
    import prefect.deployments
    from prefect.states import Completed, Failed

    from flows.experiment import run_as_deployment

    calls, states = [], [Completed(), Failed()]

    class FlowRun:
        def __init__(self) -> None:
            self.name, self.state = "brave-fox", states.pop(0)

    def fake_run_deployment(name: str, parameters: dict, timeout: float | None) -> FlowRun:
        calls.append((name, parameters, timeout))
        return FlowRun()

    monkeypatch.setattr(prefect.deployments, "run_deployment", fake_run_deployment)
    run = experiments.plan(load_config(None, []))[3]  # process, seed 1
    params = run.cfg.model_dump(mode="json")
    assert run_as_deployment.fn(run.arm, run.seed, "grpo/iterative", params) == 0
    assert calls == [("grpo/iterative", {"cfg": params}, None)]  # waits for the flow run to end
    assert run_id_for(ExperimentConfig.model_validate(calls[0][1]["cfg"])) == run.run_id  # the worker's run is ours
    with pytest.raises(RuntimeError, match=r"flow run brave-fox of grpo/iterative \(arm process, seed 1\) ended Failed"):
        run_as_deployment.fn(run.arm, run.seed, "grpo/iterative", params)


# -- the store --------------------------------------------------------------------------------------
def test_memberships_are_a_table_and_copied_rollouts_belong_to_their_new_run(tmp_path: Path):
    store = Store(tmp_path)
    store.write_run("src", trial_id="t-1", name="src", config={})
    store.write_run("dst", trial_id=None, name="dst", config={})
    row = rollout_row(decoding="greedy", problem_id="p")
    store.write_rollouts([row, {**row, "problem_id": "p2", "correct": False}], run_id="src", iteration=0, step=0,
                         split="eval")
    path = store.copy_rollouts("src", run_id="dst", iteration=0, step=0, split="eval")
    assert path == ROLLOUTS.file(tmp_path, run_id="dst", iteration=0, step=0, split="eval")
    src, dst = (pq.read_table(ROLLOUTS.file(tmp_path, run_id=r, iteration=0, step=0, split="eval")).to_pylist()
                for r in ("src", "dst"))
    assert [(r["run_id"], r["trial_id"]) for r in dst] == [("dst", None)] * 2
    assert [{**r, "run_id": None, "trial_id": None} for r in dst] == [{**r, "run_id": None, "trial_id": None}
                                                                      for r in src]  # created_at kept
    with pytest.raises(FileNotFoundError, match="run src has no eval rollouts at iteration 1"):
        store.copy_rollouts("src", run_id="dst", iteration=1, step=0, split="eval")
    for seed in (0, 1):
        store.write_experiment_run({"experiment": "e", "arm": "os", "seed": seed, "run_id": f"r{seed}",
                                    "overrides_json": json.dumps({"grpo.seed": seed})})
    rows = query(tmp_path, "select experiment, arm, seed, run_id, overrides->>'$.\"grpo.seed\"' as s "
                           "from experiment_runs order by seed").to_pylist()
    assert rows == [{"experiment": "e", "arm": "os", "seed": s, "run_id": f"r{s}", "s": str(s)} for s in (0, 1)]


def test_a_stored_evaluation_is_read_back_not_recomputed(tmp_path: Path, tiny_cfg: ExperimentConfig,
                                                         tiny_policy_dir: Path):
    from flows.stages import evaluate
    from tests.conftest import one_thread

    cfg = _cfg(tmp_path, tiny_cfg)
    a, b = experiments.plan(cfg)[:2]
    with one_thread():
        computed = evaluate(a.cfg, str(tiny_policy_dir), a.run_id, 0, 0)
    Store(cfg.store.root).copy_rollouts(a.run_id, run_id=b.run_id, iteration=0, step=0, split="eval")
    # a policy that does not exist: evaluating it would fail, reading the stored rows back does not
    assert evaluate(b.cfg, "/nonexistent/policy", b.run_id, 0, 0) == computed
    assert computed["greedy_accuracy"] == query(cfg.store.root, "select greedy_accuracy from evals where run_id = $r",
                                                {"r": a.run_id}).to_pylist()[0]["greedy_accuracy"]


# -- a real experiment --------------------------------------------------------------------------------
def _cfg(root: Path, tiny_cfg: ExperimentConfig, *extra: str) -> ExperimentConfig:
    """Outcome vs process, 2 seeds each, 2 runs at a time: 2 GRPO steps of B x G, one iteration, 6 problems x 4."""
    return tiny_config(
        tiny_cfg.model.cache_dir, f"store.root={root / 'store'}", f"store.runs_dir={root / 'runs'}",
        "run_name=exp", f"grpo.group_size={G}", f"grpo.questions_per_step={B}", f"grpo.minibatch_size={B * G}",
        f"grpo.steps={STEPS}", "iterative.iterations=1", "rollout.max_new_tokens=24", f"eval.n_problems={N_EVAL}",
        f"eval.n_samples={N_SAMPLES}", f"eval.k_max={N_SAMPLES}", *PROCESS, "experiment.name=tiny",
        "experiment.seeds=2", "experiment.n_parallel=2", *extra,
    )


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: ExperimentConfig, tiny_policy_dir: Path,
                    prefect_api: str) -> tuple[ExperimentConfig, dict]:  # noqa: F811
    from flows.experiment import experiment

    cfg = _cfg(tmp_path_factory.mktemp("experiment"), tiny_cfg)
    return cfg, experiment(cfg)


def _start_eval_stamps(cfg: ExperimentConfig, run_ids: list[str]) -> dict[str, set]:
    """run id -> the created_at values of its before-RL evaluation's rows."""
    return {r: set(pq.read_table(ROLLOUTS.file(cfg.store.root, run_id=r, iteration=0, step=0, split="eval"),
                                 columns=["created_at"]).column("created_at").to_pylist()) for r in run_ids}


def test_an_experiment_runs_every_arm_and_seed_tagged_in_the_store(tiny_experiment):
    cfg, result = tiny_experiment
    plan = experiments.plan(cfg)
    assert result["failed"] == [] and [(r["arm"], r["seed"], r["run_id"], r["status"], r["ran"])
                                       for r in result["runs"]] == [(p.arm, p.seed, p.run_id, "finished", True)
                                                                    for p in plan]
    tags = query(cfg.store.root, "select e.arm, e.seed, e.run_id, r.status, r.config->>'$.grpo.supervision' as sup, "
                 "(r.config->>'$.grpo.seed')::int as grpo_seed, (r.config->>'$.prm.seed')::int as prm_seed "
                 "from experiment_runs e join runs r using (run_id) where experiment = 'tiny' order by 1, 2").to_pylist()
    assert tags == [{"arm": p.arm, "seed": p.seed, "run_id": p.run_id, "status": "finished", "sup": p.arm,
                     "grpo_seed": p.seed, "prm_seed": p.seed} for p in plan]
    counts = {(r["run_id"], r["split"], r["iteration"]): r["n"] for r in query(
        cfg.store.root, "select run_id, split, iteration, count(*) as n from rollouts group by all").to_pylist()}
    for p in plan:
        assert counts[(p.run_id, "train", 1)] == STEPS * B * G
        assert counts[(p.run_id, "eval", 0)] == counts[(p.run_id, "eval", 1)] == N_EVAL * (N_SAMPLES + 1)
        assert (Path(cfg.store.runs_dir) / p.run_id / "report" / "report.md").exists()  # each run's own report
    labels = query(cfg.store.root, "select distinct run_id from prm_labels").to_pylist()
    assert sorted(r["run_id"] for r in labels) == sorted(p.run_id for p in plan if p.arm == "process")

    # the before-RL evaluation was computed once: every run's rows are the same rows, written at one moment
    stamps = _start_eval_stamps(cfg, [p.run_id for p in plan])
    assert len(set().union(*stamps.values())) == 1
    rows = [pq.read_table(ROLLOUTS.file(cfg.store.root, run_id=p.run_id, iteration=0, step=0, split="eval"),
                          columns=["problem_id", "sample_index", "completion"]).to_pylist() for p in plan]
    assert all(r == rows[0] for r in rows)


def test_a_rerun_skips_the_finished_runs(tiny_experiment):
    from flows.experiment import experiment

    cfg, first = tiny_experiment
    run_ids = [r["run_id"] for r in first["runs"]]
    files = sorted(Path(cfg.store.root, "rollouts").rglob("*.parquet"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = experiment(cfg)
    assert [(r["run_id"], r["status"], r["ran"]) for r in again["runs"]] == [(r, "finished", False) for r in run_ids]
    assert sorted(Path(cfg.store.root, "rollouts").rglob("*.parquet")) == files
    assert [f.stat().st_mtime_ns for f in files] == mtimes  # nothing recomputed, nothing rewritten
    assert Path(again["report"]).exists()


def _direct_scores(cfg: ExperimentConfig, run_ids: dict[tuple[str, int], str]) -> dict[str, dict[str, np.ndarray]]:
    """Per-problem greedy correctness and Pass@K (math.comb) read straight from the rollouts files:
    metric -> arm -> (seeds, evaluations, problems)."""
    k = N_SAMPLES
    out: dict[str, dict[str, np.ndarray]] = {"greedy": {}, "pass": {}}
    for arm in ("outcome", "process"):
        per_seed = {"greedy": [], "pass": []}
        for seed in (0, 1):
            per_eval = {"greedy": [], "pass": []}
            for iteration, step in ((0, 0), (1, STEPS)):
                rows = pq.read_table(ROLLOUTS.file(cfg.store.root, run_id=run_ids[(arm, seed)], iteration=iteration,
                                                   step=step, split="eval")).to_pylist()
                problems = sorted({r["problem_id"] for r in rows})
                greedy = {r["problem_id"]: float(r["correct"]) for r in rows if r["decoding"] == "greedy"}
                n = {p: sum(1 for r in rows if r["problem_id"] == p and r["decoding"] == "sample") for p in problems}
                c = {p: sum(1 for r in rows if r["problem_id"] == p and r["decoding"] == "sample" and r["correct"])
                     for p in problems}
                per_eval["greedy"].append([greedy[p] for p in problems])
                per_eval["pass"].append([1 - math.comb(n[p] - c[p], k) / math.comb(n[p], k) for p in problems])
            for m in per_seed:
                per_seed[m].append(per_eval[m])
        for m in out:
            out[m][arm] = np.array(per_seed[m])
    return out


def test_the_report_states_the_stats_of_the_stored_scores(tiny_experiment):
    cfg, result = tiny_experiment
    data = load_experiment(cfg.store.root, "tiny", ["outcome", "process"])
    assert (data.arms, data.seeds, data.k, data.iterations) == (["outcome", "process"],
                                                                 {"outcome": [0, 1], "process": [0, 1]}, N_SAMPLES,
                                                                 [0, 1])
    direct = _direct_scores(cfg, data.run_ids)
    for m in direct:
        for arm in data.arms:
            np.testing.assert_allclose(data.scores[m][arm], direct[m][arm], atol=1e-12)
    found = findings(data, ReportConfig(resamples=300, seed=4, level=0.9))
    boot = {"resamples": 300, "seed": 4, "level": 0.9}
    by_key = {(f.metric, f.kind, f.arm, f.iteration): f.interval for f in found}
    for m, by_arm in direct.items():
        for arm, x in by_arm.items():
            assert by_key[(m, "level", arm, 0)] == hierarchical_bootstrap_mean(x[:, 0], **boot)
            assert by_key[(m, "gain", arm, 1)] == hierarchical_bootstrap_mean(x[:, 1] - x[:, 0], **boot)
        a, b = by_arm["outcome"], by_arm["process"]
        assert by_key[(m, "difference", "process", 1)] == hierarchical_bootstrap_diff(a[:, 1], b[:, 1], **boot)
        assert by_key[(m, "gain difference", "process", 1)] == hierarchical_bootstrap_diff(
            a[:, 1] - a[:, 0], b[:, 1] - b[:, 0], **boot)
    # the shared before-RL evaluation: both arms start level, exactly
    assert by_key[("greedy", "level", "outcome", 0)].estimate == by_key[("greedy", "level", "process", 0)].estimate

    # each sentence's verdict is its interval's
    sentences = summary_sentences(data, found)
    diff = by_key[("greedy", "difference", "process", 1)]
    side = {"gain": "process is higher", "loss": "process is lower",
            "not distinguishable": "the arms are not distinguishable"}[diff.verdict()]
    assert any(s.startswith("greedy accuracy after iteration 1, process minus outcome") and diff.text() in s
               and s.endswith(side + ".") for s in sentences)
    md = Path(result["markdown"]).read_text()
    assert "## Summary" in md and "| evaluation | outcome % | outcome gain |" in md
    assert "![" in md and (Path(result["markdown"]).parent / "seed_curves.png").exists()
    assert all(s in md for s in summary_sentences(data, findings(data, cfg.report)))  # the flow's: cfg.report
    assert result["summary"] == summary_sentences(data, findings(data, cfg.report))  # what grpo experiment prints


def test_an_experiment_of_unknown_name_lists_the_known_ones(tiny_experiment):
    cfg, _ = tiny_experiment
    with pytest.raises(ValueError, match=r"no experiment 'nope' .* known experiments: \['tiny'\]"):
        load_experiment(cfg.store.root, "nope")


def test_only_the_experiment_form_shows_the_experiment_section():
    """Prefect builds each deployment's run form from its flow's parameter schema."""
    from prefect.utilities.callables import parameter_schema

    from flows.experiment import experiment
    from flows.grpo import grpo_iterative
    from grpo_core.config import ArmsExperimentConfig

    def properties(flow, model: str) -> dict:
        return json.loads(json.dumps(parameter_schema(flow.fn).model_dump()))["definitions"][model]["properties"]

    assert "experiment" not in properties(grpo_iterative, "ExperimentConfig")
    assert "experiment" in properties(experiment, "ArmsExperimentConfig")
    cfg = load_config(None, ["experiment.seeds=5"])  # a plain config (what load_config returns) is accepted
    assert ArmsExperimentConfig.model_validate(cfg).experiment.seeds == 5
    assert run_id_for(ArmsExperimentConfig.model_validate(cfg)) == run_id_for(cfg)
