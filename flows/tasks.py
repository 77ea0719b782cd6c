"""Prefect tasks: one per stage, each a thin wrapper over grpo_core / prm / analysis.

Tasks take the config and plain values and return paths (as str) or small
dicts, never models. Finished stages are cached on their inputs and source
(results persisted under PREFECT_LOCAL_STORAGE_PATH), so a rerun of a crashed
or cancelled flow takes them from the cache; the GRPO stage resumes inside an
unfinished iteration from its last checkpoint. Retries are only on stages that
are idempotent (they rewrite the same store files).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import Task, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from analysis.summary import eval_summary
from grpo_core.pipeline import stages as pipeline
from grpo_core.config import ExperimentConfig
from grpo_core.training.loggers import mirror
from grpo_core.store.records import RunKey
from grpo_core.store.writer import Store

CACHED = {"cache_policy": INPUTS + TASK_SOURCE, "persist_result": True}


@task(name="start-run")
def start_run(cfg: ExperimentConfig, trial_id: str | None = None, status: str = "running") -> str:
    return pipeline.start_run(cfg, trial_id=trial_id, status=status)


@task(name="bootstrap-policy", retries=1, **CACHED)
def bootstrap_policy(cfg: ExperimentConfig) -> str:
    return str(pipeline.policy_dir(cfg))


@task(name="evaluate", retries=1, **CACHED)
def evaluate(cfg: ExperimentConfig, policy: str, run_id: str, iteration: int, step: int,
             trial_id: str | None = None) -> dict[str, float]:
    """Greedy accuracy, Pass@K and Maj@K of `policy` on held-out problems; rollouts go to the store."""
    _, test = pipeline.load_data(cfg)
    key = RunKey(run_id, trial_id, iteration, step)
    result = pipeline.evaluate_policy(cfg, Path(policy), test, Store(cfg.store.root), key)
    summary = {"greedy_accuracy": result.greedy_accuracy, "wellformed_rate": result.wellformed_rate,
               **eval_summary(cfg.store.root, run_id, iteration, step, cfg.eval.k_max)}
    mirror(cfg, cfg.store.runs_dir / run_id, name=f"{run_id}-eval-it{iteration:03d}", group=run_id, step=step,
           metrics={f"eval/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    return summary


@task(name="grpo", retries=1, **CACHED)
def grpo(cfg: ExperimentConfig, policy: str, run_id: str, iteration: int, reward_model: str | None = None,
         trial_id: str | None = None) -> str:
    """M GRPO steps (outcome, or process with the reward model at `reward_model`); returns the new policy."""
    scorer, version = None, None
    if reward_model is not None:
        from prm.score import load_step_scorer

        scorer, version = load_step_scorer(Path(reward_model), cfg.prm.step_tag)
    result = pipeline.grpo_iteration(cfg, Path(policy), run_id, iteration, trial_id=trial_id, step_scorer=scorer,
                                     reward_model=version)
    return str(result.policy_dir)


@task(name="label-steps", retries=1, **CACHED)
def label_steps(cfg: ExperimentConfig, policy: str, run_id: str, iteration: int) -> int:
    """Math-Shepherd labels of the policy's fresh samples -> store's prm_labels; returns the step count."""
    from prm.pipeline import label_policy_samples

    train, _ = pipeline.load_data(cfg)
    return len(label_policy_samples(cfg, Path(policy), train.problems, Store(cfg.store.root), run_id, iteration))


@task(name="train-reward-model", retries=1, **CACHED)
def train_reward_model(cfg: ExperimentConfig, init: str, run_id: str, iteration: int) -> str:
    """Continue PRM training on this iteration's labels plus a replay of earlier ones; returns its dir."""
    from prm.pipeline import train_reward_model as train_rm

    store = Store(cfg.store.root)
    new = store.read_prm_labels(run_id, iterations=[iteration])
    old = store.read_prm_labels(run_id, iterations=range(1, iteration))
    out = cfg.store.runs_dir / run_id / f"it{iteration:03d}" / "prm"
    path, metrics = train_rm(cfg, Path(init), new, old, out, version=f"process:{run_id}:it{iteration:03d}")
    for epoch, m in metrics.items():
        store.write_prm_metrics(m, run_id=run_id, iteration=iteration, epoch=epoch)
    return str(path)


def run_iteration(cfg: ExperimentConfig, policy: str, reward_model: str | None, run_id: str, iteration: int,
                  trial_id: str | None = None, *, direct: bool = False) -> tuple[str, str | None, dict[str, float]]:
    """One iteration of Algorithm 1 after reference <- policy: with process supervision, label fresh
    policy samples and continue the PRM (from prm.init_path or the policy the first time); M GRPO steps; evaluate.
    Returns (policy, reward model, evaluation). The stages run as tasks of the current flow, or with
    direct=True as plain calls (a sweep trial's process, which has no flow run)."""
    def stage(t: Task) -> Callable[..., Any]:
        return t.fn if direct else t

    if cfg.grpo.supervision == "process":
        from prm.pipeline import first_init_dir

        stage(label_steps)(cfg, policy, run_id, iteration)
        init = reward_model or str(first_init_dir(cfg, policy))
        reward_model = stage(train_reward_model)(cfg, init, run_id, iteration)
    policy = stage(grpo)(cfg, policy, run_id, iteration, reward_model, trial_id)
    evaluation = stage(evaluate)(cfg, policy, run_id, iteration, cfg.grpo.steps, trial_id)
    return policy, reward_model, evaluation


@task(name="write-report", retries=1)
def write_report(cfg: ExperimentConfig, run_ids: list[str], out_dir: str | None = None) -> dict[str, str]:
    """The RL-effects report of `run_ids` (analysis.report) from the store; returns its file paths.
    Not cached: a rerun reads the store as it is then. Default out_dir: <runs_dir>/<run_id>/report."""
    from analysis import report

    out = Path(out_dir) if out_dir else report.default_report_dir(cfg.store.runs_dir, run_ids)
    paths = report.write_report(cfg.store.root, run_ids, out)
    mirror(cfg, out, name=f"{'+'.join(run_ids)}-report", group=run_ids[0],
           figures={f"report/{p.stem}": p for p in paths.figures})
    return {"markdown": str(paths.markdown), "html": str(paths.html)}
