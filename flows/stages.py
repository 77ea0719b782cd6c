"""The stages of an experiment as plain calls, composed from grpo_core, prm and analysis (no Prefect).

    from flows.stages import PLAIN
    run_iterations(cfg, PLAIN, start_run(cfg))   # Algorithm 1 without a Prefect run

Each stage takes the config and plain values and returns a path (as str) or a
small dict, never a model, so the same functions serve as Prefect tasks
(flows.tasks wraps each one) and as the plain calls of a sweep trial's process
(flows.trial) or a multi-process launch (flows.launch). This module is where
the three packages meet: grpo_core's loop does not know the PRM package or the
analysis package, and they do not know each other.
"""

from __future__ import annotations

from pathlib import Path

from analysis.summary import eval_summary
from grpo_core.config import ExperimentConfig
from grpo_core.pipeline import stages as pipeline
from grpo_core.pipeline.iterate import Evaluation, Stages
from grpo_core.pipeline.stages import start_run
from grpo_core.store import Store
from grpo_core.store.records import RunKey
from grpo_core.training.loggers import mirror

__all__ = ["PLAIN", "start_run"]


def bootstrap_policy(cfg: ExperimentConfig) -> str:
    """The starting policy's dir: `model.path`, or the embedded policy (built once, then reused)."""
    return str(pipeline.policy_dir(cfg))


def evaluate(cfg: ExperimentConfig, policy: str, run_id: str, iteration: int, step: int,
             trial_id: str | None = None) -> Evaluation:
    """Greedy accuracy, Pass@K and Maj@K of `policy` on held-out problems; rollouts go to the store.

    An evaluation the store already holds for the run (an experiment's shared before-RL evaluation,
    copied in by flows.experiment, or one finished before a restart) is read back, not recomputed."""
    store = Store(cfg.store.root)
    stored = store.read_rollouts(run_id, iteration=iteration, step=step, split="eval")
    if stored is None:
        _, test = pipeline.load_data(cfg)
        pipeline.evaluate_policy(cfg, Path(policy), test, store, RunKey(run_id, trial_id, iteration, step))
    summary = eval_summary(cfg.store.root, run_id, iteration, step, cfg.eval.k_max)
    # beside the iteration's training run (<run_dir>/it00N/wandb), so one `wandb sync` takes both
    mirror(cfg, cfg.store.runs_dir / run_id / f"it{iteration:03d}", name=f"{run_id}-eval-it{iteration:03d}",
           group=run_id, step=step,
           metrics={f"eval/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    return summary


def grpo(cfg: ExperimentConfig, policy: str, run_id: str, iteration: int, reward_model: str | None = None,
         trial_id: str | None = None) -> str:
    """M GRPO steps (outcome, or process with the reward model at `reward_model`); returns the new policy."""
    scorer, version = None, None
    if reward_model is not None:
        from prm.score import load_step_scorer

        scorer, version = load_step_scorer(Path(reward_model), cfg.prm.step_tag, device=cfg.device,
                                           precision=cfg.precision)
    result = pipeline.grpo_iteration(cfg, Path(policy), run_id, iteration, trial_id=trial_id, step_scorer=scorer,
                                     reward_model=version)
    return str(result.policy_dir)


def label_steps(cfg: ExperimentConfig, policy: str, run_id: str, iteration: int) -> int:
    """Math-Shepherd labels of the policy's fresh samples -> store's prm_labels; returns the step count."""
    from prm.pipeline import label_policy_samples

    train, _ = pipeline.load_data(cfg)
    return len(label_policy_samples(cfg, Path(policy), train.problems, Store(cfg.store.root), run_id, iteration))


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


PLAIN = Stages(bootstrap_policy=bootstrap_policy, evaluate=evaluate, label_steps=label_steps,
               train_reward_model=train_reward_model, grpo=grpo)
