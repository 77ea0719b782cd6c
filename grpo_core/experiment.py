"""An experiment's runs: each arm (dotted overrides of the base config) times each seed, as run configs.

    runs = plan(cfg)                  # cfg.experiment: the arms, seeds and how they run
    for r in runs: store.write_experiment_run(r.membership(cfg.experiment.name))

A run is its config: replicate s of arm A is the base config with A's overrides and every
ExperimentSpec.SEED_KNOBS field set to first_seed + s; its run id (grpo_core.pipeline.stages.run_id_for)
hashes the result sections only, so the experiment, arm and seed that name it are bookkeeping. Two
experiments that hold the same arm config and seed therefore share one run, and its membership in each
is a row of the store's experiment_runs table, not a column of the run. That is right because a run is
fully determined by its config and code (seeded): computing it again would give the same rows, and a
rerun of either experiment resumes or skips it like any other run. (The same run counted in two
experiments is one sample, not two: compare arms within an experiment.)

The before-RL evaluation (iteration 0) depends on the starting policy, the problems, the evaluation's
and the sampling's settings and, with vLLM, the engine's seed (grpo.seed); the HF engine seeds each
evaluation by its iteration and step alone. `start_evaluation_key` hashes exactly those, so runs with one
key share one before-RL evaluation: the experiment computes it for one run and copies its rows to the
others (grpo_core.store.Store.copy_rollouts).
Nothing here imports Prefect.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from grpo_core.config import ConfigError, ExperimentConfig, ExperimentSpec, set_dotted
from grpo_core.pipeline.stages import run_id_for

# The config sections the before-RL evaluation reads (see the module docstring).
START_EVALUATION_SECTIONS = ("model", "task", "eval", "rollout")


@dataclass(frozen=True)
class ArmRun:
    """One run of an experiment: replicate `seed` of `arm`."""

    arm: str
    seed: int
    overrides: dict[str, Any]  # the arm's overrides plus the seed knobs, as set on the base config
    cfg: ExperimentConfig
    run_id: str

    def membership(self, experiment: str) -> dict[str, Any]:
        """The run's row of the store's experiment_runs table."""
        return {"experiment": experiment, "arm": self.arm, "seed": self.seed, "run_id": self.run_id,
                "overrides_json": json.dumps(self.overrides, sort_keys=True)}


def arm_config(cfg: ExperimentConfig, arm: str, seed: int) -> tuple[ExperimentConfig, dict[str, Any]]:
    """The config of replicate `seed` of `arm` (the experiment section left at its default: a run's
    config does not say which experiments hold it) and the overrides that made it."""
    spec = cfg.experiment
    if arm not in spec.arms:
        raise ConfigError(f"no arm {arm!r} in experiment {spec.name!r}; its arms: {', '.join(spec.arms)}")
    overrides = {**spec.arms[arm], **{knob: seed for knob in ExperimentSpec.SEED_KNOBS}}
    data = cfg.model_dump(exclude={"experiment"})
    for key, value in overrides.items():
        set_dotted(data, key.split("."), value, f"experiment arm {arm!r}, key {key!r}")
    return ExperimentConfig.model_validate(data), overrides


def plan(cfg: ExperimentConfig) -> list[ArmRun]:
    """Every run of the experiment, arm by arm, seed by seed. Two arms that make the same run (their
    overrides change nothing that counts towards the run id) are refused: they would be one run."""
    spec = cfg.experiment
    runs, seen = [], {}
    for arm in spec.arms:
        for seed in range(spec.first_seed, spec.first_seed + spec.seeds):
            run_cfg, overrides = arm_config(cfg, arm, seed)
            run_id = run_id_for(run_cfg)
            if run_id in seen:
                raise ConfigError(f"experiment {spec.name!r}: arms {seen[run_id]!r} and {arm!r} make the same run "
                                  f"{run_id} (seed {seed}); give the arms overrides that differ in a result section")
            seen[run_id] = arm
            runs.append(ArmRun(arm, seed, overrides, run_cfg, run_id))
    return runs


def start_evaluation_key(cfg: ExperimentConfig) -> str:
    """A hash of everything the before-RL evaluation reads: runs with equal keys get equal iteration-0 rows."""
    payload: dict[str, Any] = cfg.model_dump(mode="json", include=set(START_EVALUATION_SECTIONS))
    if cfg.rollout.engine == "vllm":  # vLLM's engine takes the run's seed; the HF engine seeds per call
        payload["grpo.seed"] = cfg.grpo.seed
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def shared_start_evaluations(runs: list[ArmRun]) -> dict[str, list[ArmRun]]:
    """The runs grouped by start_evaluation_key, in plan order: each group's before-RL evaluation is one."""
    groups: dict[str, list[ArmRun]] = {}
    for run in runs:
        groups.setdefault(start_evaluation_key(run.cfg), []).append(run)
    return groups
