"""Optional experiment trackers that mirror what the store records: step metrics and eval figures.

    tracker = make_tracker(cfg, run_dir, name="default-ab12cd-it000", group="default-ab12cd")
    tracker.log({"rollout/reward_mean": 0.4, ...}, step=3)
    tracker.log_figures({"eval/pass_at_k": Path("report/pass_at_k.png")})
    tracker.close()

The store stays the record; a tracker is a view for people who live in W&B.
`logging.wandb=false` (the default) gives a `NullTracker` and never imports
wandb. With it on, W&B runs offline unless `logging.wandb_mode` or
`$WANDB_MODE` says otherwise, and keeps every file under `{run_dir}/wandb`: each
W&B run is a folder `{run_dir}/wandb/offline-run-*` directly in it, so
`wandb sync {run_dir}/wandb` uploads them later (wandb.init(dir=D) writes into
`D/wandb`, so it is given the run dir itself). One W&B run per GRPO iteration
(`runs/<run_id>/it00N/wandb`), grouped by the experiment's run id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from grpo_core.config import ExperimentConfig


class Tracker(Protocol):
    """Where step metrics and figures are mirrored."""

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def log_figures(self, figures: dict[str, Path], step: int | None = None) -> None: ...

    def close(self) -> None: ...


class NullTracker:
    """Tracks nothing (logging.wandb=false)."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Drop the metrics."""

    def log_figures(self, figures: dict[str, Path], step: int | None = None) -> None:
        """Drop the figures."""

    def close(self) -> None:
        """Nothing to close."""


class WandbTracker:
    """A W&B run whose files live in `{run_dir}/wandb`; offline unless told otherwise."""

    def __init__(self, cfg: ExperimentConfig, run_dir: Path, *, name: str, group: str | None = None):
        import wandb

        log_cfg = cfg.logging
        mode = log_cfg.wandb_mode or os.environ.get("WANDB_MODE") or "offline"
        run_dir = Path(run_dir).resolve()
        self.dir = run_dir / "wandb"  # where wandb.init(dir=run_dir) puts the run's folder
        self.dir.mkdir(parents=True, exist_ok=True)
        for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
            os.environ.setdefault(var, str(self.dir))  # nothing lands in ~/.cache or the working directory
        self.run = wandb.init(project=log_cfg.wandb_project, entity=log_cfg.wandb_entity, name=name, group=group,
                              config=cfg.model_dump(mode="json"), mode=mode, dir=str(run_dir),
                              settings=wandb.Settings(silent=True, console="off"), reinit="create_new")
        self.run.define_metric("grpo/step")
        self.run.define_metric("*", step_metric="grpo/step")  # plot against the GRPO step, not W&B's counter
        self._wandb = wandb

    def log(self, metrics: dict[str, float], step: int) -> None:
        """One GRPO step's metrics (the same names as the store's step_metrics)."""
        self.run.log({**metrics, "grpo/step": step})

    def log_figures(self, figures: dict[str, Path], step: int | None = None) -> None:
        """PNG figures (eval curves, report plots) as W&B images under their names."""
        images: dict[str, Any] = {name: self._wandb.Image(str(path)) for name, path in figures.items()}
        if step is not None:
            images["grpo/step"] = step
        self.run.log(images)

    def close(self) -> None:
        """Finish the run and stop wandb's helper process (`wandb.teardown`)."""
        self.run.finish()
        self._wandb.teardown()


def make_tracker(cfg: ExperimentConfig, run_dir: Path, *, name: str, group: str | None = None) -> Tracker:
    """`WandbTracker` when `logging.wandb` is on, else a `NullTracker` (wandb is not imported)."""
    if cfg.logging.wandb:
        return WandbTracker(cfg, run_dir, name=name, group=group)
    return NullTracker()


def mirror(cfg: ExperimentConfig, run_dir: Path, *, name: str, group: str, metrics: dict[str, float] | None = None,
           figures: dict[str, Path] | None = None, step: int = 0) -> None:
    """One-off mirror of results outside a GRPO loop (eval figures, report plots); nothing when W&B is off."""
    if not cfg.logging.wandb:
        return
    tracker = make_tracker(cfg, run_dir, name=name, group=group)
    try:
        if metrics:
            tracker.log(metrics, step)
        if figures:
            tracker.log_figures(figures, step)
    finally:
        tracker.close()
