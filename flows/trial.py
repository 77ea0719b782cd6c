"""One sweep trial in its own process (started by flows/sweep.py; run by hand to debug a trial):

    python -m flows.trial --config runs/sweeps/NAME/trials/t003/config.json --optuna-id 17 [--threads 1]

It runs the iterative pipeline's stages (flows.tasks.run_iteration, as grpo/iterative does, but as plain
calls: no Prefect run) for the trial's config: per iteration, PRM labels and training (process supervision), M GRPO steps and
an evaluation; reads the objective of that evaluation from the store, reports it to the study and stops
early when the pruner says so. It tells the study COMPLETE or PRUNED itself; if it dies first, the sweep
marks the trial FAIL. A trial's own process means its own torch RNG and thread settings and a crash
(even a segfault) that takes nothing else down.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from flows.settings import apply_offline_defaults

apply_offline_defaults()  # before torch or Prefect is imported

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from analysis.sweep_report import eval_objective  # noqa: E402
from flows import tasks  # noqa: E402
from grpo_core.sweep import study as sweep  # noqa: E402
from grpo_core.config import ExperimentConfig  # noqa: E402

log = logging.getLogger("grpo")


def run_trial(cfg: ExperimentConfig, trial: optuna.Trial, trial_id: str) -> TrialState:
    """The trial's run, tagged `trial_id` in the store; returns the state it told the study."""
    objective = sweep.objective_name(cfg)
    run_id = tasks.start_run.fn(cfg, trial_id)
    try:
        policy = tasks.bootstrap_policy.fn(cfg)
        reward_model = None
        value = float("nan")
        for it in range(1, cfg.iterative.iterations + 1):
            policy, reward_model, _ = tasks.run_iteration(cfg, policy, reward_model, run_id, it, trial_id,
                                                          direct=True)
            value = eval_objective(cfg.store.root, run_id, it, cfg.grpo.steps, objective)
            trial.report(value, it)
            log.info("trial %s iteration %d: %s = %.4f", trial_id, it, objective, value)
            if it < cfg.iterative.iterations and trial.should_prune():
                tasks.start_run.fn(cfg, trial_id, "pruned")
                trial.study.tell(trial, state=TrialState.PRUNED)
                return TrialState.PRUNED
        trial.study.tell(trial, value)
    except BaseException:
        tasks.start_run.fn(cfg, trial_id, "failed")
        raise
    tasks.start_run.fn(cfg, trial_id, "finished")
    return TrialState.COMPLETE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.trial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the trial's ExperimentConfig as JSON")
    parser.add_argument("--optuna-id", type=int, required=True, help="Optuna's storage-wide id of the trial")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = ExperimentConfig.model_validate_json(args.config.read_text())
    study = sweep.load_study(cfg)
    trial = optuna.trial.Trial(study, args.optuna_id)
    trial_id = trial.user_attrs.get("trial_id", sweep.trial_id_for(cfg.sweep.name, trial.number))
    log.info("trial %s (pid %d): %s", trial_id, os.getpid(), trial.user_attrs.get("overrides"))
    state = run_trial(cfg, trial, trial_id)
    log.info("trial %s: %s", trial_id, state.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
