"""Flow `sweep` (deployment `sweep/optuna`): an Optuna study over GRPO knobs, trials in parallel processes.

    grpo sweep sweep.n_trials=8 grpo.steps=20 iterative.iterations=1     # from the CLI
    prefect deployment run sweep/optuna --params '{"cfg": {"sweep": {"n_trials": 8}}}'

The flow opens (or continues) the study, builds the starting policy once, then keeps `sweep.n_parallel`
trials running: it asks the sampler for a trial, writes the trial's config and runs it as a Prefect task
that starts `python -m flows.trial` (its own process: its own torch RNG and one torch thread when trials
share the cores, and a crash that takes nothing else down) and waits for it. The trial process reports each
iteration's objective to the study (pruning) and tells it the result; a trial whose process dies is marked
FAIL here, its exit code and the end of its log kept as the error on its row of the store's trials table,
and the sweep goes on. At the end it writes the report (runs/sweeps/NAME/report.{md,html}) and
attaches it to the flow run as a markdown artifact.

Why processes, not threads: trials in threads would share one torch RNG (seeded per trial, so their samples
would interleave unreproducibly) and the GIL, which the tiny policy's Python-bound generate loop holds most of
the time; two processes use both cores.
"""

from __future__ import annotations

import queue
import time

from flows.settings import apply_offline_defaults

apply_offline_defaults()

import optuna  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from analysis.sweep_report import write_sweep_report  # noqa: E402
from flows import processes, tasks  # noqa: E402
from flows.report import artifact_key, publish_markdown  # noqa: E402
from grpo_core.config import SweepExperimentConfig  # noqa: E402
from grpo_core.store import Store  # noqa: E402
from grpo_core.sweep import records  # noqa: E402
from grpo_core.sweep import study as sweeps  # noqa: E402
from grpo_core.sweep.objective import objective_of  # noqa: E402


@task(name="trial", task_run_name="trial-{number}", cache_policy=NO_CACHE)
def run_trial(number: int, config_path: str, threads: int, log_path: str) -> int:
    """Run one trial in its own process (flows/trial.py), its output in `log_path`; returns its exit code."""
    t0 = time.perf_counter()
    code = processes.run_module("flows.trial", ["--config", config_path, "--number", str(number),
                                                "--threads", str(threads)], threads, log_path)
    get_run_logger().info("trial %d exited with %d after %.0fs (log: %s)", number, code, time.perf_counter() - t0,
                          log_path)
    return code


@flow(name="sweep", flow_run_name="sweep-{cfg.sweep.name}", log_prints=True,
      task_runner=ThreadPoolTaskRunner(max_workers=64))  # trials are capped at sweep.n_parallel below
def sweep(cfg: SweepExperimentConfig = SweepExperimentConfig()) -> dict:
    """Run `sweep.n_trials` trials of the study `sweep.name`, `sweep.n_parallel` at a time, then report."""
    log = get_run_logger()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    s = cfg.sweep
    store = Store(cfg.store.root)
    out_dir = records.sweep_dir(cfg)
    study, retried = sweeps.open_study(cfg)
    for number in retried:
        records.record_trial(store, study, number, sweeps.INTERRUPTED)
        log.warning("trial %d was left RUNNING by an interrupted sweep: marked FAIL, retried", number)
    store.write_sweep(records.sweep_row(cfg, study, "running"))
    tasks.bootstrap_policy(cfg)  # once, before parallel trials would race to build it

    threads = 1 if s.n_parallel > 1 else 0
    done: queue.Queue[int] = queue.Queue()
    running: dict[int, object] = {}  # trial number -> its task's future
    asked = 0
    while asked < s.n_trials or running:
        while asked < s.n_trials and len(running) < s.n_parallel:
            spec = sweeps.ask(study, cfg)
            asked += 1
            records.record_trial(store, study, spec.number)
            if spec.cfg is None:  # the suggested values make an invalid config: nothing to run
                records.finish_trial(store, study, spec.number, spec.error)
                log.warning("trial %d failed before it ran: %s", spec.number, spec.error)
                continue
            trial_dir = out_dir / "trials" / f"t{spec.number:03d}"
            trial_dir.mkdir(parents=True, exist_ok=True)
            config_path = trial_dir / "config.json"
            config_path.write_text(spec.cfg.model_dump_json(indent=1))
            log.info("trial %d: %s", spec.number, spec.overrides)
            future = run_trial.submit(spec.number, str(config_path), threads, str(trial_dir / "trial.log"))
            future.add_done_callback(lambda _, n=spec.number: done.put(n))
            running[spec.number] = future
        if not running:
            continue
        number = done.get()
        future = running.pop(number)
        error = processes.failure(future, out_dir / "trials" / f"t{number:03d}" / "trial.log", "trial")
        frozen = records.finish_trial(store, study, number, error)
        log.info("trial %d: %s %s", number, frozen.state.name, "" if frozen.value is None else f"{frozen.value:.4f}")

    objective = objective_of(cfg).name
    paths = write_sweep_report(study, out_dir, objective=objective, store_root=cfg.store.root,
                               runs_dir=cfg.store.runs_dir, storage=sweeps.storage_url(cfg))
    row = records.sweep_row(cfg, study, "finished", paths.markdown)
    store.write_sweep(row)
    publish_markdown(paths.markdown, paths.html, key=artifact_key("sweep", s.name),
                     description=f"Optuna sweep {s.name}: {objective}")
    log.info("best trial %s (%s = %s); report %s", row["best_trial"], objective, row["best_value"], paths.html)
    return {"study": s.name, "storage": row["storage"], "n_trials": row["n_trials"], "best_trial": row["best_trial"],
            "best_value": row["best_value"], "report": str(paths.html), "retried": retried}


if __name__ == "__main__":
    sweep(SweepExperimentConfig())
