"""Flows `grpo/single` and `grpo/iterative` (deployments of the flow named "grpo").

    python -m flows.grpo                      # the iterative pipeline on the embedded default
    prefect deployment run grpo/iterative     # the same on a Prefect server (see prefect.yaml)

Flow runs are named by run id (`iterative-default-4f0cf1e8`). Each evaluation, the one before RL
included, is logged as one line of percentages; `grpo/iterative` also keeps a progress artifact
(evaluations done of I + 1) and a table artifact of every evaluation so far (key `evals-<run id>`).
"""

from __future__ import annotations

from flows.settings import apply_offline_defaults

apply_offline_defaults()

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact  # noqa: E402

from flows import tasks  # noqa: E402
from flows.report import artifact_key, publish_report  # noqa: E402
from grpo_core.config import ExperimentConfig  # noqa: E402
from grpo_core.pipeline.iterate import Evaluation, run_iterations  # noqa: E402

# The evaluation's metrics in the order a log line and the table artifact show them ({k}: eval.k_max).
SHOWN = ("greedy_accuracy", "pass@1", "pass@{k}", "maj@1", "maj@{k}", "wellformed_rate")


def shown(evaluation: Evaluation, k_max: int) -> dict[str, float]:
    """The SHOWN metrics of `evaluation`, in that order (pass@1 once when K is 1)."""
    names = dict.fromkeys(name.format(k=k_max) for name in SHOWN)
    return {n: evaluation[n] for n in names if n in evaluation}


def evaluation_line(iteration: int, step: int, evaluation: Evaluation, k_max: int) -> str:
    """'before RL: greedy_accuracy 45.0%, pass@1 40.2%, ...' or 'iteration 1 (step 60): ...'."""
    when = "before RL" if iteration == 0 else f"iteration {iteration} (step {step})"
    return f"{when}: " + ", ".join(f"{n} {v:.1%}" for n, v in shown(evaluation, k_max).items())


@flow(name="grpo", flow_run_name=tasks.named_by_run("single"), log_prints=True, **tasks.end_state_hooks())
def grpo_single(cfg: ExperimentConfig = ExperimentConfig()) -> dict:
    """One GRPO run with outcome supervision: policy, evaluate, M steps, evaluate."""
    log = get_run_logger()
    run_id = tasks.start_run(cfg)
    policy = tasks.bootstrap_policy(cfg)
    before = tasks.evaluate(cfg, policy, run_id, 0, 0)
    log.info(evaluation_line(0, 0, before, cfg.eval.k_max))
    policy = tasks.grpo(cfg, policy, run_id, 1, None)
    after = tasks.evaluate(cfg, policy, run_id, 1, cfg.grpo.steps)
    log.info(evaluation_line(1, cfg.grpo.steps, after, cfg.eval.k_max))
    tasks.finish_run(cfg)
    return {"run_id": run_id, "policy": policy, "evals": {0: before, 1: after}}


@flow(name="grpo", flow_run_name=tasks.named_by_run("iterative"), log_prints=True, **tasks.end_state_hooks())
def grpo_iterative(cfg: ExperimentConfig = ExperimentConfig()) -> dict:
    """Iterative RL (Algorithm 1): each iteration sets reference <- policy, labels fresh policy
    samples and continues the PRM on them with replay (process supervision), runs M GRPO
    steps, then evaluates (greedy, Pass@K, Maj@K). Ends with the RL-effects report
    (<runs_dir>/<run_id>/report/, and a Prefect artifact)."""
    log = get_run_logger()
    run_id = tasks.start_run(cfg)
    total = cfg.iterative.iterations + 1  # the evaluation before RL and one per iteration
    progress = create_progress_artifact(0.0, key=artifact_key("progress", run_id),
                                        description=f"evaluations of {run_id} done, of {total}")
    rows: list[dict] = []

    def show_evaluation(iteration: int, evaluation: Evaluation) -> bool:
        """A log line, a row of the table artifact and the progress artifact, after each evaluation."""
        step = 0 if iteration == 0 else cfg.grpo.steps
        log.info(evaluation_line(iteration, step, evaluation, cfg.eval.k_max))
        rows.append({"iteration": iteration, "step": step,
                     **{n: round(v, 4) for n, v in shown(evaluation, cfg.eval.k_max).items()}})
        create_table_artifact(rows, key=artifact_key("evals", run_id), description=f"evaluations of {run_id}")
        update_progress_artifact(progress, 100.0 * len(rows) / total)
        return False

    result = run_iterations(cfg, tasks.TASKS, run_id, on_evaluation=show_evaluation)
    tasks.finish_run(cfg)
    report = publish_report(cfg, [run_id])
    log.info("report: %s", report["html"])
    return {"run_id": run_id, "policy": result.policy, "reward_model": result.reward_model, "evals": result.evals,
            "report": report}


if __name__ == "__main__":
    grpo_iterative(ExperimentConfig())
