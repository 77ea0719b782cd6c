"""The grpo_core stages of an experiment as plain functions: run identity, data, policy, evaluation, GRPO.

flows.stages composes them with the PRM stages into Algorithm 1's stages
(grpo_core.pipeline.iterate); flows.tasks wraps those as Prefect tasks.
Nothing here imports Prefect.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from grpo_core.config import ExperimentConfig
from grpo_core.data.loaders import LoadedSplit, load_task
from grpo_core.device import autocast, device_kind, resolve_device
from grpo_core.pipeline.evaluate import EvalResult, evaluate
from grpo_core.policy.bootstrap import build_policy
from grpo_core.policy.load import load_policy
from grpo_core.provenance import check_same_code, code_fingerprint
from grpo_core.reward.process import StepScorer
from grpo_core.rollout import close_engine, make_engine
from grpo_core.store import Store
from grpo_core.store.records import RunKey
from grpo_core.training.trainer import TrainResult, train_grpo

log = logging.getLogger("grpo")


def run_id_for(cfg: ExperimentConfig) -> str:
    """`{run_name}-{hash}`: the same config resumes the same run, a changed one starts anew.

    The hash covers ExperimentConfig.result_sections, `device` as the kind it resolves to
    (auto and cpu on a CPU machine are one run), fields at their IDENTITY_BASELINE left out."""
    payload = cfg.model_dump(mode="json", include=set(ExperimentConfig.result_sections()))
    payload["device"] = device_kind(cfg.device)
    for name, value in ExperimentConfig.IDENTITY_BASELINE.items():
        if payload.get(name) == value:
            del payload[name]
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.run_name}-{digest}"


def load_data(cfg: ExperimentConfig) -> tuple[LoadedSplit, LoadedSplit]:
    """Train and held-out problems; skipped bad rows are reported in the log."""
    train, test = load_task(cfg.task)
    for name, split in (("train", train), ("test", test)):
        if split.skipped:
            log.warning("skipped %d malformed %s rows (first: %s)", len(split.skipped), name, split.skipped[0])
    return train, test


def policy_dir(cfg: ExperimentConfig) -> Path:
    """The starting policy: `model.path`, or the embedded tiny model (built once, then reused)."""
    if cfg.model.path is not None:
        if not (cfg.model.path / "config.json").exists():
            raise FileNotFoundError(
                f"model.path={cfg.model.path} holds no HF model (config.json missing); "
                "point it at a save_pretrained directory or unset it to build the embedded policy"
            )
        return cfg.model.path
    return build_policy(cfg.model, cfg.task, progress=cfg.logging.progress)


def evaluate_policy(
    cfg: ExperimentConfig, path: Path, test: LoadedSplit, store: Store, key: RunKey, *, with_samples: bool = True
) -> EvalResult:
    """Evaluate the policy at `path` on held-out problems and store every eval rollout."""
    device = resolve_device(cfg.device)
    model, tok = load_policy(path, device=device)
    engine = make_engine(cfg.rollout, model, tok, seed=cfg.grpo.seed)
    try:
        with autocast(device, cfg.precision):
            result = evaluate(engine, test.problems, cfg.task.prompt_template, cfg.eval, cfg.rollout, key,
                              with_samples=with_samples)
    finally:
        close_engine(engine)  # a vLLM engine holds its KV cache and process group until closed
    store.write_rollouts(result.rows, run_id=key.run_id, iteration=key.iteration, step=key.step, split="eval")
    return result


def start_run(cfg: ExperimentConfig, *, trial_id: str | None = None, status: str = "running") -> str:
    """Record the run (config, code fingerprint, git sha, versions, status) in the store; return its id.

    Starting (status "running") a run that the store already holds from other code is refused
    (grpo_core.provenance.check_same_code) unless `store.allow_code_change` is set: its cached
    stages, checkpoints and store files would otherwise mix two versions of the code. Only an
    accepted start records this code's fingerprint; an end state keeps the recorded one."""
    run_id = run_id_for(cfg)
    store = Store(cfg.store.root)
    previous = store.read_run(run_id)
    fingerprint = code_fingerprint()
    if status == "running" and previous is not None:
        check_same_code(previous.get("code_fingerprint"), f"run {run_id}", allow=cfg.store.allow_code_change)
    elif previous is not None:  # an end state (also one recorded after a refusal) keeps the code it is of
        fingerprint = previous.get("code_fingerprint")
    store.write_run(run_id, trial_id=trial_id, name=cfg.run_name, config=cfg.model_dump(mode="json"), status=status,
                    code_fingerprint=fingerprint)
    return run_id


def grpo_iteration(
    cfg: ExperimentConfig,
    start: Path,
    run_id: str,
    iteration: int,
    *,
    trial_id: str | None = None,
    step_scorer: StepScorer | None = None,
    reward_model: str | None = None,
) -> TrainResult:
    """M GRPO steps of one iteration from `start` (also the reference); resumes inside the iteration."""
    train, _ = load_data(cfg)
    run_dir = cfg.store.runs_dir / run_id / f"it{iteration:03d}"
    return train_grpo(cfg, start, train.problems, Store(cfg.store.root), run_dir, run_id=run_id, trial_id=trial_id,
                      iteration=iteration, step_scorer=step_scorer, reward_model=reward_model)
