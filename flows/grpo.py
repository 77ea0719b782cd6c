"""Flows `grpo/single` and `grpo/iterative` (deployments of the flow named "grpo").

    python -m flows.grpo                      # the iterative pipeline on the embedded default
    prefect deployment run grpo/iterative     # the same on a Prefect server (see prefect.yaml)
"""

from __future__ import annotations

from flows.settings import apply_offline_defaults

apply_offline_defaults()

from prefect import flow, get_run_logger  # noqa: E402

from flows import tasks  # noqa: E402
from flows.report import publish_report  # noqa: E402
from grpo_core.config import ExperimentConfig  # noqa: E402
from grpo_core.pipeline.iterate import run_iterations  # noqa: E402


@flow(name="grpo", flow_run_name="single-{cfg.run_name}", log_prints=True)
def grpo_single(cfg: ExperimentConfig = ExperimentConfig(), trial_id: str | None = None) -> dict:
    """One GRPO run with outcome supervision: policy, evaluate, M steps, evaluate."""
    run_id = tasks.start_run(cfg, trial_id)
    policy = tasks.bootstrap_policy(cfg)
    before = tasks.evaluate(cfg, policy, run_id, 0, 0, trial_id)
    policy = tasks.grpo(cfg, policy, run_id, 1, None, trial_id)
    after = tasks.evaluate(cfg, policy, run_id, 1, cfg.grpo.steps, trial_id)
    tasks.finish_run(cfg, trial_id)
    return {"run_id": run_id, "policy": policy, "evals": {0: before, 1: after}}


@flow(name="grpo", flow_run_name="iterative-{cfg.run_name}", log_prints=True)
def grpo_iterative(cfg: ExperimentConfig = ExperimentConfig(), trial_id: str | None = None) -> dict:
    """Iterative RL (Algorithm 1): each iteration sets reference <- policy, labels fresh policy
    samples and continues the PRM on them with replay (process supervision), runs M GRPO
    steps, then evaluates (greedy, Pass@K, Maj@K). Ends with the RL-effects report
    (<runs_dir>/<run_id>/report/, and a Prefect artifact)."""
    log = get_run_logger()

    def log_evaluation(iteration: int, evaluation: dict[str, float]) -> bool:
        log.info("iteration %d: %s", iteration, {k: round(v, 3) for k, v in evaluation.items()})
        return False

    run_id = tasks.start_run(cfg, trial_id)
    result = run_iterations(cfg, tasks.TASKS, run_id, trial_id=trial_id, on_evaluation=log_evaluation)
    tasks.finish_run(cfg, trial_id)
    report = publish_report(cfg, [run_id])
    log.info("report: %s", report["html"])
    return {"run_id": run_id, "policy": result.policy, "reward_model": result.reward_model, "evals": result.evals,
            "report": report}


if __name__ == "__main__":
    grpo_iterative(ExperimentConfig())
