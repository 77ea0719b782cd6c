"""One sweep trial in its own process (started by flows/sweep.py; run by hand to debug a trial):

    python -m flows.trial --config runs/sweeps/NAME/trials/t003/config.json --number 3 [--threads 1]

It runs Algorithm 1's loop (grpo_core.pipeline.iterate.run_iterations) for the trial's config with the
plain-call stages (flows.stages.PLAIN: no Prefect run here), without the evaluation before RL: per
iteration, PRM labels and training (process supervision), M GRPO steps and an evaluation. After each
evaluation it reads the objective from the store, reports it to the study and stops early when the pruner
says so. It tells the study COMPLETE or PRUNED itself; if it dies first, the sweep marks the trial FAIL.
A complete or pruned trial then writes its run's RL-effects report (<runs_dir>/<run_id>/report/), which
the sweep report links each trial to.
A trial's own process means its own torch RNG and thread settings and a crash (even a segfault) that takes
nothing else down.
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

from analysis.report import default_report_dir, write_report  # noqa: E402
from analysis.sweep_report import eval_objective  # noqa: E402
from flows.stages import PLAIN, start_run  # noqa: E402
from grpo_core.config import ExperimentConfig  # noqa: E402
from grpo_core.pipeline.iterate import Evaluation, run_iterations  # noqa: E402
from grpo_core.sweep.objective import objective_of  # noqa: E402
from grpo_core.sweep.study import load_trial  # noqa: E402
from grpo_core.sweep.suggest import trial_id_for  # noqa: E402

log = logging.getLogger("grpo")


def run_trial(cfg: ExperimentConfig, trial: optuna.trial.Trial, trial_id: str) -> TrialState:
    """The trial's run, tagged `trial_id` in the store; returns the state it told the study."""
    objective = objective_of(cfg)
    run_id = start_run(cfg, trial_id=trial_id)
    values: dict[int, float] = {}

    def report(iteration: int, _: Evaluation) -> bool:
        """Report the iteration's objective (read back from the store) to the study; True = prune."""
        values[iteration] = eval_objective(cfg.store.root, run_id, iteration, cfg.grpo.steps, objective)
        trial.report(values[iteration], iteration)
        log.info("trial %s iteration %d: %s = %.4f", trial_id, iteration, objective.name, values[iteration])
        return trial.should_prune()

    try:
        result = run_iterations(cfg, PLAIN, run_id, trial_id=trial_id, evaluate_start=False, on_evaluation=report)
        state = TrialState.PRUNED if result.stopped_early else TrialState.COMPLETE
        if state == TrialState.PRUNED:
            trial.study.tell(trial, state=state)
        else:
            trial.study.tell(trial, values[cfg.iterative.iterations])
    except BaseException:
        start_run(cfg, trial_id=trial_id, status="failed")
        raise
    start_run(cfg, trial_id=trial_id, status="pruned" if state == TrialState.PRUNED else "finished")
    write_report(cfg.store.root, [run_id], default_report_dir(cfg.store.runs_dir, [run_id]))
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.trial", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the trial's ExperimentConfig as JSON")
    parser.add_argument("--number", type=int, required=True, help="the trial's number in the study sweep.name")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    cfg = ExperimentConfig.model_validate_json(args.config.read_text())
    trial = load_trial(cfg, args.number)
    trial_id = trial.user_attrs.get("trial_id", trial_id_for(cfg.sweep.name, trial.number))
    log.info("trial %s (pid %d): %s", trial_id, os.getpid(), trial.user_attrs.get("overrides"))
    state = run_trial(cfg, trial, trial_id)
    log.info("trial %s: %s", trial_id, state.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
