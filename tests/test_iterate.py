"""Algorithm 1's loop (grpo_core.pipeline.iterate) over recording stages, and the launcher's rank-0 stages."""

from __future__ import annotations

from pathlib import Path

from grpo_core.config import load_config
from grpo_core.pipeline.iterate import Stages, first_reward_model_init, run_iterations


def recording_stages(calls: list[tuple]) -> Stages:
    """Stages that record each call and return names that show what produced them."""

    def bootstrap_policy(cfg):
        calls.append(("bootstrap",))
        return "pi0"

    def evaluate(cfg, policy, run_id, iteration, step, trial_id):
        calls.append(("evaluate", policy, iteration, step, trial_id))
        return {"greedy_accuracy": iteration / 10}

    def label_steps(cfg, policy, run_id, iteration):
        calls.append(("label", policy, iteration))
        return 7

    def train_reward_model(cfg, init, run_id, iteration):
        calls.append(("train_rm", init, iteration))
        return f"rm{iteration}"

    def grpo(cfg, policy, run_id, iteration, reward_model, trial_id):
        calls.append(("grpo", policy, iteration, reward_model, trial_id))
        return f"pi{iteration}"

    return Stages(bootstrap_policy=bootstrap_policy, evaluate=evaluate, label_steps=label_steps,
                  train_reward_model=train_reward_model, grpo=grpo)


def test_outcome_supervision_evaluates_before_rl_and_after_each_iteration():
    cfg = load_config(None, ["grpo.supervision=outcome", "iterative.iterations=2", "grpo.steps=5"])
    calls: list[tuple] = []
    result = run_iterations(cfg, recording_stages(calls), "run", trial_id="t1")
    assert calls == [("bootstrap",), ("evaluate", "pi0", 0, 0, "t1"),
                     ("grpo", "pi0", 1, None, "t1"), ("evaluate", "pi1", 1, 5, "t1"),
                     ("grpo", "pi1", 2, None, "t1"), ("evaluate", "pi2", 2, 5, "t1")]
    assert (result.policy, result.reward_model, result.stopped_early) == ("pi2", None, False)
    assert result.evals == {0: {"greedy_accuracy": 0.0}, 1: {"greedy_accuracy": 0.1}, 2: {"greedy_accuracy": 0.2}}


def test_process_supervision_continues_the_reward_model_from_the_policy_then_from_itself():
    cfg = load_config(None, ["grpo.supervision=process", "iterative.iterations=2", "grpo.steps=3"])
    calls: list[tuple] = []
    result = run_iterations(cfg, recording_stages(calls), "run", evaluate_start=False)
    assert calls == [("bootstrap",),
                     ("label", "pi0", 1), ("train_rm", "pi0", 1), ("grpo", "pi0", 1, "rm1", None),
                     ("evaluate", "pi1", 1, 3, None),
                     ("label", "pi1", 2), ("train_rm", "rm1", 2), ("grpo", "pi1", 2, "rm2", None),
                     ("evaluate", "pi2", 2, 3, None)]
    assert result.reward_model == "rm2" and sorted(result.evals) == [1, 2]


def test_prm_init_path_starts_the_first_reward_model(tmp_path):
    cfg = load_config(None, ["grpo.supervision=process", "iterative.iterations=1", f"prm.init_path={tmp_path}"])
    calls: list[tuple] = []
    run_iterations(cfg, recording_stages(calls), "run")
    assert ("train_rm", str(tmp_path), 1) in calls
    assert first_reward_model_init(cfg, "pi0") == Path(tmp_path)
    assert first_reward_model_init(load_config(None, []), "pi0") == Path("pi0")


def test_a_true_from_on_evaluation_stops_before_the_next_iteration():
    cfg = load_config(None, ["grpo.supervision=outcome", "iterative.iterations=3"])
    calls: list[tuple] = []
    seen: list[int] = []

    def stop_after_first(iteration, evaluation):
        seen.append(iteration)
        return iteration == 1

    result = run_iterations(cfg, recording_stages(calls), "run", on_evaluation=stop_after_first)
    assert seen == [0, 1] and result.stopped_early and sorted(result.evals) == [0, 1]
    assert [c[0] for c in calls].count("grpo") == 1
    # on the last iteration a True has nothing left to stop
    calls.clear()
    last = run_iterations(load_config(None, ["iterative.iterations=1"]), recording_stages(calls), "run",
                          evaluate_start=False, on_evaluation=lambda it, e: True)
    assert not last.stopped_early and sorted(last.evals) == [1]


def test_launcher_runs_evaluation_and_prm_stages_on_rank_zero_only(monkeypatch):
    from flows import launch, stages

    calls: list[tuple] = []
    monkeypatch.setattr(stages, "PLAIN", recording_stages(calls))
    cfg = load_config(None, ["grpo.supervision=process", "iterative.iterations=1", "grpo.steps=2"])
    broadcasts: list[list] = []

    def from_rank_zero(box: list) -> None:  # what rank 0 would have sent
        broadcasts.append(list(box))
        box[0] = {"evaluate": {"greedy_accuracy": 0.5}, "label": 7, "train_rm": "rm1"}[stage[0]]

    stage = [""]
    worker = launch.rank_zero_stages(1, from_rank_zero)
    for name, call in (("evaluate", lambda: worker.evaluate(cfg, "pi0", "r", 0, 0, None)),
                       ("label", lambda: worker.label_steps(cfg, "pi0", "r", 1)),
                       ("train_rm", lambda: worker.train_reward_model(cfg, "pi0", "r", 1))):
        stage[0] = name
        assert call() == {"evaluate": {"greedy_accuracy": 0.5}, "label": 7, "train_rm": "rm1"}[name]
    assert broadcasts == [[None], [None], [None]]  # rank 1 computed none of them
    assert calls == []
    assert worker.grpo(cfg, "pi0", "r", 1, "rm1", None) == "pi1"  # GRPO runs on every rank
    leader = launch.rank_zero_stages(0, lambda box: None)
    assert leader.label_steps(cfg, "pi0", "r", 1) == 7 and ("label", "pi0", 1) in calls
