"""Prefect tasks: the stages of flows.stages, each wrapped as a task.

Finished stages are cached on their inputs and on the code fingerprint
(grpo_core.provenance: every source file of the four packages), with results
persisted under PREFECT_LOCAL_STORAGE_PATH. A rerun of a crashed or cancelled
flow takes finished stages from the cache; the GRPO stage resumes inside an
unfinished iteration from its last checkpoint; after any edit to the code no
cached result is served. Retries are only on stages that are idempotent (they
rewrite the same store files).

Also here, for the flows: flow-run names that carry the run id (`iterative-default-4f0cf1e8`) and the
hooks that record a run's end state when Prefect reports the flow run cancelled, crashed or failed
(otherwise the store would show it `running` forever).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prefect import runtime, task
from prefect.cache_policies import INPUTS, CacheKeyFnPolicy

from flows import stages
from grpo_core.config import ExperimentConfig
from grpo_core.pipeline.iterate import Stages
from grpo_core.pipeline.stages import run_id_for
from grpo_core.pipeline.stages import start_run as record_run
from grpo_core.provenance import code_fingerprint
from grpo_core.store import Store
from grpo_core.training.loggers import mirror

# The code's fingerprint in every cache key: a result computed by other code is never served.
CODE = CacheKeyFnPolicy(cache_key_fn=lambda _ctx, _inputs: code_fingerprint())
CACHED = {"cache_policy": INPUTS + CODE, "persist_result": True}


@task(name="start-run", task_run_name="start-run")
def start_run(cfg: ExperimentConfig, trial_id: str | None = None) -> str:
    """Record the run as running (refused if the run was recorded by other code); returns its id."""
    return record_run(cfg, trial_id=trial_id)


@task(name="finish-run", task_run_name="finish-run-{status}")
def finish_run(cfg: ExperimentConfig, trial_id: str | None = None, status: str = "finished") -> str:
    """Record the run's end state."""
    return record_run(cfg, trial_id=trial_id, status=status)


bootstrap_policy = task(name="bootstrap-policy", task_run_name="bootstrap-policy", retries=1, **CACHED)(stages.bootstrap_policy)
evaluate = task(name="evaluate", task_run_name="evaluate-it{iteration}-step{step}", retries=1,
                **CACHED)(stages.evaluate)
label_steps = task(name="label-steps", task_run_name="label-steps-it{iteration}", retries=1,
                   **CACHED)(stages.label_steps)
train_reward_model = task(name="train-reward-model", task_run_name="train-reward-model-it{iteration}", retries=1,
                          **CACHED)(stages.train_reward_model)
grpo = task(name="grpo", task_run_name="grpo-it{iteration}", retries=1, **CACHED)(stages.grpo)
TASKS = Stages(bootstrap_policy=bootstrap_policy, evaluate=evaluate, label_steps=label_steps,
               train_reward_model=train_reward_model, grpo=grpo)


@task(name="write-report", task_run_name="write-report", retries=1)
def write_report(cfg: ExperimentConfig, run_ids: list[str], out_dir: str | None = None) -> dict[str, str]:
    """The RL-effects report of `run_ids` (analysis.report) from the store; returns its file paths.
    Not cached: a rerun reads the store as it is then. Default out_dir: <runs_dir>/<run_id>/report."""
    from analysis import report

    out = Path(out_dir) if out_dir else report.default_report_dir(cfg.store.runs_dir, run_ids)
    paths = report.write_report(cfg.store.root, run_ids, out, cfg.report)
    mirror(cfg, out, name=f"{'+'.join(run_ids)}-report", group=run_ids[0],
           figures={f"report/{p.stem}": p for p in paths.figures})
    return {"markdown": str(paths.markdown), "html": str(paths.html)}


RunConfig = Callable[[ExperimentConfig], ExperimentConfig]  # a flow's cfg parameter -> the config of its run


def config_of(parameters: Mapping[str, Any]) -> ExperimentConfig:
    """The flow run's `cfg` parameter as an ExperimentConfig: a deployment run's parameters are the
    partial JSON object it was given (keys left out take their defaults, as in the flow)."""
    cfg = parameters.get("cfg")
    return cfg if isinstance(cfg, ExperimentConfig) else ExperimentConfig.model_validate(cfg or {})


def named_by_run(kind: str, run_config: RunConfig = lambda cfg: cfg) -> Callable[[], str]:
    """A `flow_run_name` for a flow that records one run: '{kind}-{run id}', so the UI's flow-run list
    says which run each flow run is (and two runs of one deployment differ by name)."""
    return lambda: f"{kind}-{run_id_for(run_config(config_of(runtime.flow_run.parameters)))}"


def end_state_hooks(run_config: RunConfig = lambda cfg: cfg) -> dict[str, list[Callable[..., None]]]:
    """`@flow` keyword arguments: on cancellation, crash or failure, a run the store still shows as
    running is recorded 'cancelled' (cancelled in Prefect) or 'failed' (crashed or failed). A cancelled
    process's hook runs in the worker, which reads the config from the flow run's parameters."""

    def record_end_state(flow: object, flow_run: Any, state: Any) -> None:  # Prefect passes them by name
        cfg = run_config(config_of(flow_run.parameters))
        record = Store(cfg.store.root).read_run(run_id_for(cfg))
        if record is not None and record["status"] == "running":
            status = "cancelled" if state.is_cancelled() or state.is_cancelling() else "failed"
            record_run(cfg, trial_id=record["trial_id"], status=status)

    return {"on_cancellation": [record_end_state], "on_crashed": [record_end_state],
            "on_failure": [record_end_state]}
