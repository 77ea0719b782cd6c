"""Flow `experiment` (deployment `experiment/replicates`): every arm times every seed, then the experiment report.

    grpo experiment --config configs/experiments/main.yaml experiment.seeds=3        # from the CLI
    prefect deployment run experiment/replicates --params '{"cfg": {"experiment": {"seeds": 3}}}'

The flow plans the runs (grpo_core.experiment.plan: replicate s of arm A is the base config with A's
overrides and grpo.seed = prm.seed = first_seed + s) and tags each in the store (table experiment_runs).
A run the store holds as finished is skipped, so a rerun does only what is left; an unfinished run
resumes (GRPO from its last checkpoint, stored evaluations read back). Then, before any run starts:
the starting policy is built once, and each before-RL evaluation is computed once per group of runs that
share it (grpo_core.experiment.start_evaluation_key), for the group's first run, and its rows are copied
to the others, whose evaluate stage reads them back (flows.stages.evaluate).
The runs go `experiment.n_parallel` at a time, either
  - launcher=process: each in its own process, `python -m flows.launch --config <run dir>/config.json`
    (flows.processes, as sweep trials; one torch thread each when several share the cores), or
  - launcher=deployment: each as a flow run of `experiment.deployment` (grpo/iterative) through Prefect's
    run_deployment, which the workers of that deployment's work pool pick up, on any machine that
    sees the same store.
A run that fails is recorded failed (its log's end in the flow's log) and the others go on. Each run
that ran gets its RL-effects report (<runs_dir>/<run_id>/report/), and the flow ends with the experiment report (runs/experiments/NAME/report.{md,html}, analysis.experiment_report),
attached to the flow run as a markdown artifact.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from flows.settings import apply_offline_defaults

apply_offline_defaults()

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from analysis.experiment_report import write_experiment_report  # noqa: E402
from flows import processes, tasks  # noqa: E402
from flows.report import artifact_key, publish_markdown, publish_report  # noqa: E402
from grpo_core import experiment as experiments  # noqa: E402
from grpo_core.config import ArmsExperimentConfig, ExperimentConfig  # noqa: E402
from grpo_core.experiment import ArmRun  # noqa: E402
from grpo_core.pipeline.stages import start_run  # noqa: E402
from grpo_core.provenance import code_fingerprint  # noqa: E402
from grpo_core.store import ROLLOUTS, Store  # noqa: E402


def experiment_dir(cfg: ExperimentConfig) -> Path:
    """runs/experiments/NAME: the report, and per run its config and log (runs/ARM-sSEED/)."""
    return cfg.store.runs_dir / "experiments" / cfg.experiment.name


@task(name="experiment-run", task_run_name="run-{arm}-s{seed}", cache_policy=NO_CACHE)
def run_process(arm: str, seed: int, config_path: str, threads: int, log_path: str) -> int:
    """One run in its own process (flows.launch: Algorithm 1 with plain-call stages); returns its exit code."""
    t0 = time.perf_counter()
    code = processes.run_module("flows.launch", ["--config", config_path], threads, log_path)
    get_run_logger().info("run %s seed %d exited with %d after %.0fs (log: %s)", arm, seed, code,
                          time.perf_counter() - t0, log_path)
    return code


@task(name="experiment-deployment-run", task_run_name="deployment-{arm}-s{seed}", cache_policy=NO_CACHE)
def run_as_deployment(arm: str, seed: int, deployment: str, cfg: dict[str, Any]) -> int:
    """One run as a flow run of `deployment` (Prefect's run_deployment, waiting for it to end); 0 once it
    completed, else an error naming the flow run and its state."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name=deployment, parameters={"cfg": cfg}, timeout=None)
    if flow_run.state is None or not flow_run.state.is_completed():
        state = flow_run.state.name if flow_run.state is not None else "no state"
        raise RuntimeError(f"flow run {flow_run.name} of {deployment} (arm {arm}, seed {seed}) ended {state}")
    return 0


def is_done(store: Store, run: ArmRun, allow_code_change: bool) -> bool:
    """The store holds the run as finished, by this code (or any code with store.allow_code_change)."""
    record = store.read_run(run.run_id)
    return record is not None and record["status"] == "finished" and (
        allow_code_change or record["code_fingerprint"] == code_fingerprint())


def has_start_evaluation(store: Store, run: ArmRun) -> bool:
    return ROLLOUTS.file(store.root, run_id=run.run_id, iteration=0, step=0, split="eval").exists()


def share_start_evaluations(runs: list[ArmRun], pending: list[ArmRun], store: Store,
                            policies: dict[str, str]) -> dict[str, str]:
    """Compute each group's before-RL evaluation once and copy its rows to the group's pending runs that
    lack them; returns {run_id: the run whose evaluation it holds} for the copies made."""
    log = get_run_logger()
    copied: dict[str, str] = {}
    for group in experiments.shared_start_evaluations(runs).values():
        todo = [r for r in group if r in pending and not has_start_evaluation(store, r)]
        if not todo:
            continue
        donor = next((r for r in group if has_start_evaluation(store, r)), None)
        if donor is None:
            donor = todo.pop(0)
            tasks.evaluate(donor.cfg, policies[donor.run_id], donor.run_id, 0, 0)
            log.info("before-RL evaluation computed once, for %s (arm %s, seed %d)", donor.run_id, donor.arm, donor.seed)
        for run in todo:
            store.copy_rollouts(donor.run_id, run_id=run.run_id, iteration=0, step=0, split="eval")
            copied[run.run_id] = donor.run_id
        if todo:
            log.info("before-RL evaluation of %s shared with %s", donor.run_id, ", ".join(r.run_id for r in todo))
    return copied


@flow(name="experiment", flow_run_name="experiment-{cfg.experiment.name}", log_prints=True,
      task_runner=ThreadPoolTaskRunner(max_workers=64))  # runs are capped at experiment.n_parallel below
def experiment(cfg: ArmsExperimentConfig = ArmsExperimentConfig()) -> dict:
    """Run every arm x seed of `cfg.experiment` not yet finished, `n_parallel` at a time, then report."""
    log = get_run_logger()
    spec = cfg.experiment
    store = Store(cfg.store.root)
    out_dir = experiment_dir(cfg)
    runs = experiments.plan(cfg)
    for run in runs:
        store.write_experiment_run(run.membership(spec.name))
    pending = [r for r in runs if not is_done(store, r, cfg.store.allow_code_change)]
    log.info("experiment %s: %d arms x %d seeds = %d runs, %d finished, %d to run", spec.name, len(spec.arms),
             spec.seeds, len(runs), len(runs) - len(pending), len(pending))
    for run in pending:
        start_run(run.cfg)  # recorded now: refused here, not in a run's process, if other code started it

    # Before any run starts: the starting policies (one per distinct model), then the shared evaluations.
    built: dict[str, str] = {}  # model and task sections (what the policy is built from) -> its dir
    policies: dict[str, str] = {}  # run id -> its starting policy's dir
    for run in pending:
        key = run.cfg.model.model_dump_json() + run.cfg.task.model_dump_json()
        if key not in built:
            built[key] = tasks.bootstrap_policy(run.cfg)
        policies[run.run_id] = built[key]
    share_start_evaluations(runs, pending, store, policies)

    failed = _launch(cfg, pending, out_dir)
    for run in failed:
        record = store.read_run(run.run_id)
        if record is not None and record["status"] == "running":
            start_run(run.cfg, status="failed")
    if spec.launcher == "process":  # each run's RL-effects report (a grpo/iterative deployment run writes its own)
        for run in pending:
            if run not in failed:
                publish_report(run.cfg, [run.run_id])

    paths, summary = write_experiment_report(cfg.store.root, spec.name, out_dir, cfg.report, arms=list(spec.arms))
    publish_markdown(paths.markdown, paths.html, key=artifact_key("experiment", spec.name),
                     description=f"experiment {spec.name}: {', '.join(spec.arms)} x {spec.seeds} seeds")
    log.info("experiment %s: %d runs, %d failed; report %s", spec.name, len(runs), len(failed), paths.html)
    statuses = {r.run_id: (store.read_run(r.run_id) or {}).get("status") for r in runs}
    return {"experiment": spec.name, "runs": [{"arm": r.arm, "seed": r.seed, "run_id": r.run_id,
                                               "status": statuses[r.run_id], "ran": r in pending} for r in runs],
            "failed": [r.run_id for r in failed], "report": str(paths.html), "markdown": str(paths.markdown),
            "summary": summary}


def _launch(cfg: ExperimentConfig, pending: list[ArmRun], out_dir: Path) -> list[ArmRun]:
    """Run `pending` n_parallel at a time with the configured launcher; returns the runs that failed."""
    log = get_run_logger()
    spec = cfg.experiment
    threads = 1 if spec.n_parallel > 1 else 0
    done: queue.Queue[str] = queue.Queue()
    running: dict[str, tuple[ArmRun, Any, Path]] = {}  # run id -> (run, its task's future, its log)
    failed: list[ArmRun] = []
    todo = list(pending)
    while todo or running:
        while todo and len(running) < spec.n_parallel:
            run = todo.pop(0)
            run_dir = out_dir / "runs" / f"{run.arm}-s{run.seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            log_path = run_dir / "run.log"
            if spec.launcher == "process":
                config_path = run_dir / "config.json"
                config_path.write_text(run.cfg.model_dump_json(indent=1))
                future = run_process.submit(run.arm, run.seed, str(config_path), threads, str(log_path))
            else:
                future = run_as_deployment.submit(run.arm, run.seed, spec.deployment, run.cfg.model_dump(mode="json"))
            log.info("run %s (arm %s, seed %d) started", run.run_id, run.arm, run.seed)
            future.add_done_callback(lambda _, rid=run.run_id: done.put(rid))
            running[run.run_id] = (run, future, log_path)
        run, future, log_path = running.pop(done.get())
        error = processes.failure(future, log_path, "run")
        if error is not None:
            failed.append(run)
            log.warning("run %s (arm %s, seed %d) failed: %s", run.run_id, run.arm, run.seed, error)
    return failed


if __name__ == "__main__":
    experiment(ArmsExperimentConfig())
