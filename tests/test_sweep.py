"""Optuna sweeps on the tiny policy: a sweep of 4 trials, 2 at a time on a journal storage with one trial
crashing; a rerun that continues the study, in which a trial left RUNNING by a crashed sweep is failed and
retried; the search space's suggestions, config errors, the report with too few trials for importances,
and that the sweep's code keeps to Optuna's public API."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from pydantic import BaseModel

from analysis.catalog import query
from analysis.sweep_report import write_sweep_report
from grpo_core.config import ConfigError, ExperimentConfig, load_config
from grpo_core.store import Store
from grpo_core.sweep import records
from grpo_core.sweep import study as sweeps
from grpo_core.sweep.space import grid_values
from grpo_core.sweep.study import TrialSpec
from grpo_core.sweep.suggest import suggest, trial_config, trial_id_for
from tests.conftest import tiny_config
from tests.test_flows import prefect_api  # noqa: F401  (the module-scoped Prefect test server)

B, STEPS, ITERATIONS = 4, 1, 2  # questions per step, GRPO steps per iteration, iterations per trial
N_EVAL, N_SAMPLES = 8, 4
BAD_POLICY = "/nonexistent/policy"  # a model.path holding no model: that trial's process crashes
# 4 trials: G and epsilon vary; the third points at a missing policy.
TRIALS = [
    {"grpo.group_size": 2, "grpo.epsilon": 0.1, "model.path": None},
    {"grpo.group_size": 4, "grpo.epsilon": 0.3, "model.path": None},
    {"grpo.group_size": 2, "grpo.epsilon": 0.2, "model.path": BAD_POLICY},
    {"grpo.group_size": 4, "grpo.epsilon": 0.15, "model.path": None},
]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _cfg(root: Path, tiny_cfg: ExperimentConfig, name: str, *extra: str) -> ExperimentConfig:
    """Tiny trials (B=4, 1 step x 2 iterations, 8 eval problems x 4 samples) in a store under `root`."""
    return tiny_config(
        tiny_cfg.model.cache_dir, f"store.root={root / 'store'}", f"store.runs_dir={root / 'runs'}",
        f"grpo.questions_per_step={B}", f"grpo.minibatch_size={B * 2}", f"grpo.steps={STEPS}",
        f"iterative.iterations={ITERATIONS}", "rollout.max_new_tokens=24", f"eval.n_problems={N_EVAL}",
        f"eval.n_samples={N_SAMPLES}", f"eval.k_max={N_SAMPLES}", f"sweep.name={name}", "sweep.n_parallel=2",
        "sweep.pruner=none", "sweep.space.grpo.beta=null", "sweep.space.grpo.group_size={choices: [2, 4]}",
        "sweep.space.grpo.epsilon={low: 0.05, high: 0.4}", f"sweep.space.model.path={{choices: [null, {BAD_POLICY}]}}",
        *extra,
    )


@pytest.fixture(scope="module")
def first_sweep(tmp_path_factory: pytest.TempPathFactory, tiny_cfg: ExperimentConfig, tiny_policy_dir: Path,
                prefect_api: str) -> tuple[ExperimentConfig, dict]:  # noqa: F811
    """The 4 TRIALS (enqueued, so their values are known) run 2 at a time by the sweep flow."""
    from flows.sweep import sweep

    cfg = _cfg(tmp_path_factory.mktemp("sweep"), tiny_cfg, "s1", "sweep.n_trials=4")
    study, _ = sweeps.open_study(cfg)
    for params in TRIALS:
        study.enqueue_trial(params)
    return cfg, sweep(cfg)


def test_sweep_states_store_rows_and_report(first_sweep: tuple[ExperimentConfig, dict]) -> None:
    cfg, result = first_sweep
    study = sweeps.load_study(cfg)
    assert sweeps.storage_url(cfg).endswith("optuna.journal") and Path(result["storage"]).exists()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL,
                                              TrialState.COMPLETE]
    assert [t.user_attrs["overrides"] for t in study.trials] == TRIALS
    for t in study.trials:  # an evaluation after each iteration was reported, up to the crash
        assert sorted(t.intermediate_values) == ([] if t.state == TrialState.FAIL else [1, 2])

    # the store: the trials view mirrors the study and holds why the crashed trial failed; each finished
    # trial's rollouts are under its trial_id
    trials = query(cfg.store.root, "SELECT * FROM trials WHERE sweep = 's1' ORDER BY trial_number").to_pylist()
    assert [r["state"] for r in trials] == [t.state.name for t in study.trials]
    assert [r["value"] for r in trials] == [t.value for t in study.trials]
    assert "holds no HF model" in trials[2]["error"] and "exited with 1" in trials[2]["error"]
    assert [r["error"] for r in trials if r["trial_number"] != 2] == [None, None, None]
    counts = {(r["trial_id"], r["split"]): r["n"] for r in query(
        cfg.store.root, "SELECT trial_id, split, count(*) AS n FROM rollouts GROUP BY ALL").to_pylist()}
    runs = {r["trial_id"]: r["status"] for r in query(cfg.store.root, "SELECT trial_id, status FROM runs").to_pylist()}
    for t, row in zip(study.trials, trials):
        assert row["trial_id"] == trial_id_for("s1", t.number) and row["run_id"] == t.user_attrs["run_id"]
        if t.state == TrialState.COMPLETE:
            g = t.user_attrs["overrides"]["grpo.group_size"]
            assert counts[(row["trial_id"], "train")] == ITERATIONS * STEPS * B * g
            assert counts[(row["trial_id"], "eval")] == ITERATIONS * N_EVAL * (N_SAMPLES + 1)  # sampled + greedy
            assert runs[row["trial_id"]] == "finished" and row["wall_s"] > 0
        else:
            assert (row["trial_id"], "train") not in counts and runs[row["trial_id"]] == "failed"

    # the report names Optuna's best trial; the sweeps view agrees
    best = study.best_trial
    out = records.sweep_dir(cfg)
    md = (out / "report.md").read_text()
    tied = [t.number for t in study.trials if t.state == TrialState.COMPLETE and t.value == best.value]
    if len(tied) == 1:
        assert f"Best trial: #{best.number} (maj@{N_SAMPLES} = {best.value:.4f})" in md
    else:  # the tiny policy often scores the same on every trial: then no trial is called best
        assert f"{len(tied)} trials tie for the best maj@{N_SAMPLES}" in md and "Best trial" not in md
    assert "| 2 | FAIL |" in md and "holds no HF model" in md  # the error's last line, from the store
    assert {"objective_vs_params.png", "history.png", "intermediate.png", "importances.png"} <= {p.name for p in out.glob("*.png")}
    assert "data:image/png;base64," in (out / "report.html").read_text()
    sweep_row = query(cfg.store.root, "SELECT * FROM sweeps WHERE sweep = 's1'").to_pylist()[0]
    assert (sweep_row["best_trial"], sweep_row["status"], result["best_trial"]) == (best.number, "finished",
                                                                                    best.number)


@pytest.fixture(scope="module")
def second_sweep(first_sweep: tuple[ExperimentConfig, dict]) -> tuple[ExperimentConfig, list, TrialSpec, dict]:
    """The same study continued by one more trial, after a trial was left RUNNING (asked, never told: what a
    sweep killed mid-trial leaves behind). Returns the config, the trials before, that trial and the result."""
    from flows.sweep import sweep

    cfg, _ = first_sweep
    study = sweeps.load_study(cfg)
    before = [(t.number, t.state, t.value) for t in study.trials]
    study.enqueue_trial({"grpo.group_size": 4, "grpo.epsilon": 0.25, "model.path": None})
    orphan = sweeps.ask(study, cfg)
    assert study.trials[orphan.number].state == TrialState.RUNNING
    again = cfg.model_copy(update={"sweep": cfg.sweep.model_copy(update={"n_trials": 1})})
    return cfg, before, orphan, sweep(again)


def test_rerun_continues_the_study(second_sweep: tuple[ExperimentConfig, list, TrialSpec, dict]) -> None:
    cfg, before, _, result = second_sweep
    trials = sweeps.load_study(cfg).trials
    assert result["n_trials"] == len(trials) == len(before) + 2  # the orphan and its retry
    assert [(t.number, t.state, t.value) for t in trials[: len(before)]] == before  # old trials kept as they were
    assert query(cfg.store.root, "SELECT n_trials FROM sweeps WHERE sweep = 's1'").to_pylist() == [{"n_trials": 6}]


def test_trial_left_running_by_a_crash_is_failed_and_retried(
        second_sweep: tuple[ExperimentConfig, list, TrialSpec, dict]) -> None:
    cfg, _, orphan, result = second_sweep
    trials = sweeps.load_study(cfg).trials
    failed, retry = trials[orphan.number], trials[orphan.number + 1]
    assert result["retried"] == [orphan.number]
    assert failed.state == TrialState.FAIL
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["retry_of"] == orphan.number
    assert retry.params == failed.params and retry.user_attrs["overrides"] == orphan.overrides
    rows = query(cfg.store.root, "SELECT trial_number, state, retry_of, error FROM trials WHERE trial_number >= $n "
                 "ORDER BY 1", {"n": orphan.number}).to_pylist()
    assert rows == [{"trial_number": orphan.number, "state": "FAIL", "retry_of": None, "error": sweeps.INTERRUPTED},
                    {"trial_number": retry.number, "state": "COMPLETE", "retry_of": orphan.number, "error": None}]


def test_default_space_suggests_beta_zero_or_log_uniform() -> None:
    cfg = ExperimentConfig()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = [suggest(study.ask(), cfg.sweep) for _ in range(40)]
    assert {s["grpo.group_size"] for s in seen} == {4, 8, 16}
    betas = [s["grpo.beta"] for s in seen]
    assert 0.0 in betas and all(b == 0.0 or 0.001 <= b <= 0.2 for b in betas) and len(set(betas)) > 10
    assert all(0.05 <= s["grpo.epsilon"] <= 0.4 for s in seen)
    grid = load_config(None, ["sweep.sampler=grid", "sweep.space.grpo.beta={low: 0.02, high: 0.04, step: 0.02, "
                              "extra: [0.0]}", "sweep.space.grpo.epsilon={choices: [0.2]}"]).sweep
    space = {k: grid_values(k, v) for k, v in grid.parameters.items()}
    assert space == {"grpo.group_size": [4, 8, 16], "grpo.beta": [0.0, 0.02, 0.04], "grpo.epsilon": [0.2]}


def test_a_continued_study_draws_new_values_and_names_its_objective(tmp_path: Path) -> None:
    """Rerunning a sweep (same sweep.name and seed) must not replay the first sweep's draws; the study's
    metric name is the objective's, which optuna-dashboard shows instead of "Objective 0"."""
    cfg = load_config(None, [f"store.root={tmp_path}", "sweep.name=again"])
    drawn = []
    for _ in range(2):  # two sweeps of one trial each on the same study
        study, _ = sweeps.open_study(cfg)
        spec = sweeps.ask(study, cfg)
        study.tell(spec.number, 0.5)
        drawn.append(spec.overrides)
    assert drawn[0] != drawn[1]
    assert study.metric_names == ["maj@16"]


def test_objective_k_beyond_the_evaluation_names_the_field(tmp_path: Path) -> None:
    cfg = load_config(None, [f"store.root={tmp_path}", "sweep.objective_k=64"])
    with pytest.raises(ConfigError, match="sweep.objective_k: K = 64 needs eval.k_max >= 64"):
        sweeps.open_study(cfg)


def test_report_with_one_complete_trial_explains_missing_importances(tmp_path: Path) -> None:
    study = optuna.create_study(study_name="one", direction="maximize")
    study.add_trial(optuna.trial.create_trial(
        params={"grpo.beta": 0.04}, distributions={"grpo.beta": optuna.distributions.FloatDistribution(0.001, 0.2,
                                                                                                       log=True)},
        value=0.5, user_attrs={"run_id": "one-t000-abc", "overrides": {"grpo.beta": 0.04}}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL))
    Store(tmp_path / "store").write_trial(records.trial_row("one", study.trials[1], "boom\nValueError: x"))
    (tmp_path / "runs" / "one-t000-abc" / "report").mkdir(parents=True)
    (tmp_path / "runs" / "one-t000-abc" / "report" / "report.html").write_text("<html></html>")
    paths = write_sweep_report(study, tmp_path / "r", objective="maj@16", store_root=tmp_path / "store",
                               runs_dir=tmp_path / "runs", storage="x.journal")
    md = paths.markdown.read_text()
    assert "Best trial: #0 (maj@16 = 0.5000)" in md and "at least 2 complete trials; this sweep has 1" in md
    assert "| 1 | FAIL |" in md and "ValueError: x" in md
    assert "[one-t000-abc](../runs/one-t000-abc/report/report.html)" in md  # the trial's run's report
    assert json.loads(json.dumps(records.trial_row("one", study.trials[1])))["state"] == "FAIL"


def test_report_names_tied_trials_and_hides_internal_parameters(tmp_path: Path) -> None:
    """Two trials at the same objective: neither is called best; `grpo.beta:choice` (how beta = 0 is offered)
    appears nowhere, the importances included."""
    study = optuna.create_study(study_name="tie", direction="maximize")
    choice = optuna.distributions.CategoricalDistribution(["range", 0.0])
    beta = optuna.distributions.FloatDistribution(0.001, 0.2, log=True)
    group = optuna.distributions.CategoricalDistribution([4, 8])
    for i, (g, b, value) in enumerate([(4, 0.01, 0.5), (8, None, 0.5), (4, 0.1, 0.25), (8, 0.05, 0.3)]):
        params = {"grpo.group_size": g, "grpo.beta:choice": "range" if b is not None else 0.0}
        dists = {"grpo.group_size": group, "grpo.beta:choice": choice}
        if b is not None:
            params["grpo.beta"], dists["grpo.beta"] = b, beta
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value, user_attrs={
            "run_id": f"tie-t00{i}-abc", "overrides": {"grpo.group_size": g, "grpo.beta": b or 0.0}}))
    paths = write_sweep_report(study, tmp_path / "r", objective="maj@16", store_root=tmp_path / "store",
                               runs_dir=tmp_path / "runs", storage="x.journal")
    md = paths.markdown.read_text()
    assert "2 trials tie for the best maj@16 (0.5000): #0, #1; no one of them is best" in md
    assert "Best trial" not in md and ":choice" not in md
    assert "| grpo.group_size |" in md  # the importances table names knobs only


@pytest.mark.parametrize("section", sorted(ExperimentConfig.BOOKKEEPING))
def test_space_over_a_bookkeeping_section_is_refused_naming_the_key(section: str) -> None:
    model = ExperimentConfig.model_fields[section].annotation
    field = next(iter(model.model_fields)) if isinstance(model, type) and issubclass(model, BaseModel) else "x"
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"sweep.space.{section}.{field}={{choices: [1]}}"])
    assert f"space.{section}.{field}: the {section} section cannot be searched" in str(err.value), str(err.value)


REPO = Path(__file__).resolve().parents[1]
OPTUNA_USERS = [*sorted((REPO / "grpo_core" / "sweep").glob("*.py")), REPO / "flows" / "sweep.py",
                REPO / "flows" / "trial.py", REPO / "analysis" / "sweep_report.py"]


@pytest.mark.parametrize("path", OPTUNA_USERS, ids=lambda p: str(p.relative_to(REPO)))
def test_sweep_code_touches_no_private_attribute(path: Path) -> None:
    """No `obj._name` anywhere in the code that drives Optuna (study._storage, trial._trial_id, ...): only
    Optuna's public API, which survives its releases."""
    private = [f"{path.name}:{node.lineno}: .{node.attr}" for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")]
    assert private == []


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


@pytest.mark.parametrize(("pruner", "state", "iterations_run", "statuses"), [
    (optuna.pruners.NopPruner(), TrialState.COMPLETE, [1, 2, 3], ["running", "finished"]),
    (_AlwaysPrune(), TrialState.PRUNED, [1], ["running", "pruned"]),
])
def test_trial_runs_the_shared_loop_and_reports_each_iteration(
        monkeypatch: pytest.MonkeyPatch, pruner: optuna.pruners.BasePruner, state: TrialState,
        iterations_run: list[int], statuses: list[str]) -> None:
    """flows.trial over stubbed stages: no evaluation before RL, one report per iteration (the objective read
    back from the store), a pruned trial stops after its first iteration; the study and the run's status
    hear the outcome."""
    import flows.trial as trial_process
    from grpo_core.pipeline.iterate import Stages

    calls: list[tuple[str, int]] = []
    seen_status: list[str] = []

    def stage(name: str, result: str | dict) -> object:
        def run(cfg: ExperimentConfig, policy: str, run_id: str, iteration: int, *_: object) -> str | dict:
            calls.append((name, iteration))
            return result
        return run

    stages = Stages(bootstrap_policy=lambda cfg: "policy", evaluate=stage("evaluate", {}),
                    label_steps=stage("label", 0), train_reward_model=stage("prm", "rm"), grpo=stage("grpo", "policy"))
    monkeypatch.setattr(trial_process, "PLAIN", stages)
    monkeypatch.setattr(trial_process, "start_run",
                        lambda cfg, *, trial_id, status="running": seen_status.append(status) or "run-1")
    monkeypatch.setattr(trial_process, "eval_objective", lambda root, run_id, iteration, step, objective: iteration / 10)
    reports: list[list[str]] = []
    monkeypatch.setattr(trial_process, "write_report", lambda root, run_ids, out: reports.append(run_ids))
    cfg = load_config(None, ["iterative.iterations=3"])
    study = optuna.create_study(direction="maximize", pruner=pruner)
    trial = study.ask()

    assert trial_process.run_trial(cfg, trial, "s-t000") == state
    assert calls == [(name, it) for it in iterations_run for name in ("grpo", "evaluate")]
    told = study.trials[0]
    assert told.state == state and told.intermediate_values == {it: it / 10 for it in iterations_run}
    assert told.value == iterations_run[-1] / 10  # told (COMPLETE), or Optuna's last reported value (PRUNED)
    assert seen_status == statuses
    assert reports == [["run-1"]]  # the run's report, which the sweep report links the trial to


def test_a_space_can_search_a_grpo_variant_and_the_trial_config_gets_it() -> None:
    """Issue 19's knobs are searchable like any other: a space over grpo.process_credit and
    grpo.advantage_scale; each trial's config carries the values drawn, and a value outside the
    knob's Literal is refused naming the key."""
    cfg = load_config(None, ["sweep.space.grpo.process_credit={choices: [sum, min]}",
                             "sweep.space.grpo.advantage_scale={choices: [group, none]}"])
    assert {"grpo.process_credit", "grpo.advantage_scale"} <= set(cfg.sweep.parameters)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for number in range(12):
        values = suggest(study.ask(), cfg.sweep)
        trial = trial_config(cfg, values, trial_id_for("variants", number))
        assert (trial.grpo.process_credit, trial.grpo.advantage_scale) == (values["grpo.process_credit"],
                                                                           values["grpo.advantage_scale"])
        seen.add(trial.grpo.process_credit)
    assert seen == {"sum", "min"}
    with pytest.raises(ConfigError, match="grpo.process_credit"):
        load_config(None, ["sweep.space.grpo.process_credit={choices: [sum, max]}"])
