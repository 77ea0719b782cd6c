"""Every knob of the system, in one place: pydantic models, one per concern.

Each field carries its default, its valid range and a one-line doc naming the
paper's symbol where there is one (DeepSeekMath, arXiv 2402.03300, Sec. 4.2
settings are the defaults unless the embedded CPU default needs smaller ones;
those departures are listed in `ExperimentConfig`'s docstring).

Load with `load_config(path, overrides)`: a YAML file under `configs/` plus
dotted `section.field=value` overrides from the command line. Unknown keys and
out-of-range values fail at load time with the field's path and allowed range.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticTaskConfig(_Section):
    """The built-in multi-step arithmetic word problems (exact step labels exist)."""

    min_steps: int = Field(2, ge=1, le=8, description="fewest arithmetic steps in a problem")
    max_steps: int = Field(3, ge=1, le=8, description="most arithmetic steps in a problem")
    max_number: int = Field(9, ge=2, le=1000, description="largest operand the generator draws")
    n_train: int = Field(4000, ge=1, description="problems in the train split")
    n_test: int = Field(200, ge=1, description="problems in the held-out test split (disjoint from train)")

    @model_validator(mode="after")
    def _steps_ordered(self) -> SyntheticTaskConfig:
        if self.min_steps > self.max_steps:
            raise ValueError(
                f"min_steps ({self.min_steps}) must be <= max_steps ({self.max_steps})"
            )
        return self


class TaskConfig(_Section):
    """Which problems: the synthetic task or a local GSM8K/MATH-layout data set."""

    source: Literal["synthetic", "gsm8k", "math"] = Field(
        "synthetic", description="problem source; gsm8k/math read local files in that layout"
    )
    train_path: Path | None = Field(
        None, description="local JSONL, Parquet or saved HF dataset dir (gsm8k/math only)"
    )
    test_path: Path | None = Field(
        None, description="held-out split, same formats (gsm8k/math only)"
    )
    prompt_template: str = Field(
        "Question: {question}\nAnswer:\n",
        description="prompt text; must contain {question}",
    )
    skip_bad_rows: bool = Field(
        False, description="skip (count and report) malformed rows instead of failing"
    )
    synthetic: SyntheticTaskConfig = Field(default_factory=SyntheticTaskConfig)
    seed: int = Field(0, ge=0, description="seed of the synthetic generator")

    @model_validator(mode="after")
    def _paths_for_files(self) -> TaskConfig:
        if "{question}" not in self.prompt_template:
            raise ValueError("prompt_template must contain the placeholder {question}")
        if self.source != "synthetic" and self.train_path is None:
            raise ValueError(
                f"task.source={self.source!r} reads local files: set task.train_path "
                "(and task.test_path) to a JSONL/Parquet file or a saved HF dataset dir"
            )
        return self


class ModelConfig(_Section):
    """The policy: a local HF model dir, or the embedded tiny model built on the spot."""

    path: Path | None = Field(
        None, description="local HF model dir; None builds the embedded tiny policy"
    )
    cache_dir: Path = Field(
        Path("runs/models"), description="where built embedded policies are kept and reused"
    )
    vocab_size: int = Field(384, ge=260, le=65536, description="BPE vocabulary size (embedded)")
    hidden_size: int = Field(128, ge=16, le=4096, description="width of the embedded Qwen2")
    num_layers: int = Field(4, ge=1, le=64, description="decoder layers of the embedded Qwen2")
    num_heads: int = Field(4, ge=1, le=64, description="attention heads of the embedded Qwen2")
    max_positions: int = Field(256, ge=32, le=32768, description="context length of the embedded Qwen2")
    sft_steps: int = Field(300, ge=0, description="SFT optimizer steps on gold solutions")
    sft_batch_size: int = Field(64, ge=1, description="SFT sequences per optimizer step")
    sft_lr: float = Field(2e-3, gt=0, description="SFT peak learning rate (cosine decay)")
    seed: int = Field(0, ge=0, description="seed of tokenizer/model init and SFT")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


class RolloutConfig(_Section):
    """Sampling from the policy (the exploration stage)."""

    engine: Literal["hf"] = Field("hf", description="rollout engine (HF generate on the training model)")
    temperature: float = Field(1.0, gt=0, le=5.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int = Field(64, ge=1, le=32768, description="completion length cap (paper: 1024)")
    batch_size: int = Field(256, ge=1, description="sequences generated per forward batch")


class RewardConfig(_Section):
    """Outcome reward: a weighted sum of built-in and user reward functions."""

    functions: dict[str, float] = Field(
        default_factory=lambda: {"correct": 1.0},
        description="name -> weight; built-ins 'correct', 'format', or 'package.module:function'",
    )

    @model_validator(mode="after")
    def _finite_weights(self) -> RewardConfig:
        if not self.functions:
            raise ValueError("functions must name at least one reward function, e.g. {correct: 1.0}")
        for name, weight in self.functions.items():
            if not math.isfinite(weight):
                raise ValueError(f"weight of {name!r} is {weight}; weights must be finite numbers")
        return self


class GRPOConfig(_Section):
    """GRPO (Eq. 3): group size G, KL coefficient beta, clip epsilon, mu updates."""

    supervision: Literal["outcome", "process"] = Field(
        "outcome", description="outcome (Sec. 4.1.2) or process (Sec. 4.1.3) supervision"
    )
    group_size: int = Field(8, ge=2, description="G: samples per question (paper: 64)")
    questions_per_step: int = Field(16, ge=1, description="B: questions per rollout batch (paper: 16)")
    steps: int = Field(60, ge=0, description="M: GRPO steps (rollout batches) per iteration")
    lr: float = Field(2e-5, gt=0, le=1.0, description="policy learning rate (paper: 1e-6)")
    lr_schedule: Literal["constant", "cosine", "linear"] = Field(
        "constant", description="learning-rate schedule after warmup"
    )
    warmup_steps: int = Field(0, ge=0, description="linear warmup optimizer steps")
    beta: float = Field(0.04, ge=0, description="beta: KL coefficient (paper: 0.04); 0 loads no reference")
    epsilon: float = Field(0.2, gt=0, le=1.0, description="epsilon: lower clip range of the ratio")
    epsilon_high: float | None = Field(
        None, gt=0, le=10.0, description="upper clip range (DAPO clip-higher); None = epsilon"
    )
    mu: int = Field(1, ge=1, le=64, description="mu: policy updates per rollout batch (paper: 1)")
    minibatch_size: int = Field(64, ge=1, description="sequences per optimizer step within a batch")
    loss_agg: Literal["seq_mean_token_mean", "token_mean", "dr_grpo"] = Field(
        "seq_mean_token_mean",
        description="normalisation: paper's 1/|o_i| per sequence, DAPO token-mean, or Dr. GRPO constant",
    )
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clip norm; 0 disables")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    checkpoint_every: int = Field(20, ge=0, description="checkpoint every N steps; 0 disables")
    seed: int = Field(0, ge=0, description="seed of sampling and training")

    @model_validator(mode="after")
    def _batch_holds_groups(self) -> GRPOConfig:
        batch = self.group_size * self.questions_per_step
        if self.minibatch_size > batch:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must be <= group_size * "
                f"questions_per_step ({batch}): a minibatch cannot exceed the rollout batch"
            )
        return self


class EvalConfig(_Section):
    """Held-out evaluation: greedy accuracy, Pass@K and Maj@K (Sec. 5.2)."""

    n_problems: int = Field(200, ge=1, description="held-out problems evaluated")
    n_samples: int = Field(16, ge=1, le=1024, description="n: samples per problem at temperature")
    k_max: int = Field(16, ge=1, le=1024, description="largest K of Pass@K / Maj@K (K = 1, 2, 4, ...)")
    temperature: float = Field(0.7, gt=0, le=5.0, description="sampling temperature (paper: 0.7)")

    @model_validator(mode="after")
    def _k_within_n(self) -> EvalConfig:
        if self.k_max > self.n_samples:
            raise ValueError(
                f"k_max ({self.k_max}) must be <= n_samples ({self.n_samples}): "
                "Pass@K/Maj@K need at least K samples per problem"
            )
        return self


class PRMConfig(_Section):
    """Process reward model: Math-Shepherd labels, training with replay.

    Departure from Sec. 4.2: lr 3e-4 (paper 2e-5). The paper's rate is for a 7B
    model; on the embedded ~1M-parameter backbone, 5 epochs over 1024 labelled
    solutions reach a held-out step AUC of 0.75 at 2e-5 and 0.80 at 3e-4, where
    1e-3 is unstable (bench/prm_quality.py).
    """

    label: Literal["hard", "soft"] = Field("hard", description="Math-Shepherd label type to train on")
    n_completions: int = Field(
        8, ge=1, le=256, description="N: completions per step prefix when labelling (8: see bench/prm_quality.py)"
    )
    samples_per_problem: int = Field(2, ge=1, le=1024, description="policy solutions sampled per labelled problem")
    lr: float = Field(
        3e-4, gt=0, le=1.0,
        description="reward model learning rate (paper: 2e-5, for 7B; the ~1M-param embedded RM needs ~3e-4)",
    )
    epochs: int = Field(4, ge=1, description="passes over the labelled data per training")
    batch_size: int = Field(8, ge=1, description="labelled solutions per optimizer step")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clip norm; 0 disables")
    replay_fraction: float = Field(0.1, ge=0, le=1.0, description="share of earlier labels replayed (paper: 10%)")
    eval_fraction: float = Field(
        0.2, ge=0, lt=1.0, description="share of newly labelled problems held out for PRM metrics (not trained on)"
    )
    step_tag: str = Field("\n", min_length=1, description="text whose token the PRM head reads after each step")
    seed: int = Field(0, ge=0, description="seed of label sampling, hold-out split, replay draw and training")


class IterativeConfig(_Section):
    """Iterative RL (Algorithm 1): reference and reward model refreshed each iteration."""

    iterations: int = Field(2, ge=1, le=100, description="I: iterations (paper: 2)")
    label_problems: int = Field(64, ge=1, description="problems sampled for PRM labels per iteration")


class SweepConfig(_Section):
    """Optuna sweep over G, beta and epsilon."""

    name: str = Field("grpo-sweep", min_length=1, description="study name; rerun to continue")
    n_trials: int = Field(8, ge=1, description="trials to run")
    n_parallel: int = Field(2, ge=1, le=64, description="trials running at once")
    storage: str | None = Field(None, description="Optuna storage URL; None = journal file in the store")
    sampler: Literal["tpe", "grid", "random"] = Field("tpe", description="Optuna sampler")
    direction: Literal["maximize", "minimize"] = Field("maximize", description="objective direction")
    objective: str = Field("eval/maj_at_k", description="store metric the objective reads")


class StoreConfig(_Section):
    """Where rollouts, metrics and the DuckDB catalog live."""

    root: Path = Field(Path("runs/store"), description="store directory (Parquet files + catalog.duckdb)")
    runs_dir: Path = Field(Path("runs"), description="run directories (checkpoints, reports) live here")


class LoggingConfig(_Section):
    """Progress display (experiment trackers such as W&B arrive with the scale-out work)."""

    progress: bool = Field(True, description="show progress bars")


class ExperimentConfig(_Section):
    """One experiment. Departures from the paper's settings (Sec. 4.2), all for a
    CPU-sized default that finishes in minutes: G = 8 (paper 64), lr 2e-5 (1e-6:
    the tiny policy needs larger steps), max_new_tokens 64 (1024), 60 steps,
    reward-model lr 3e-4 (2e-5, see PRMConfig).
    """

    run_name: str = Field("default", min_length=1, description="name of the run in the store")
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    prm: PRMConfig = Field(default_factory=PRMConfig)
    iterative: IterativeConfig = Field(default_factory=IterativeConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)


class ConfigError(ValueError):
    """A configuration could not be loaded; the message names each bad field."""


def _format_errors(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see configs/default.yaml for every key)"
        lines.append(f"  {loc}: {msg} (got {e.get('input')!r})")
    return "invalid configuration:\n" + "\n".join(lines)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse `grpo.beta=0.1` into (["grpo", "beta"], 0.1); the value is YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.field=value")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r} has an empty key")
    return path, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted override in a nested dict (creating sections as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load a YAML config (None = all defaults) and apply dotted overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        loaded = yaml.safe_load(text) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        data = loaded
    data = apply_overrides(data, overrides or [])
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        where = f" ({path})" if path else ""
        raise ConfigError(_format_errors(err).replace("configuration:", f"configuration{where}:", 1)) from None


def _range(field: Any) -> str:
    """The allowed range of a field as text, from its constraints or Literal choices."""
    bounds = []
    for meta in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{sym} {getattr(meta, attr)}")
    choices = getattr(field.annotation, "__args__", None)
    if getattr(field.annotation, "__origin__", None) is Literal and choices:
        bounds.append(" | ".join(map(str, choices)))
    return f" [{', '.join(bounds)}]" if bounds else ""


def commented_yaml(cfg: BaseModel, indent: int = 0) -> str:
    """The config as YAML with each field's doc and range as a trailing comment."""
    lines = []
    pad = "  " * indent
    for name, field in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            lines.append(f"{pad}{name}:  # {doc}")
            lines.append(commented_yaml(value, indent + 1))
            continue
        value_json = json.dumps(cfg.model_dump(mode="json", include={name})[name])  # JSON is valid YAML
        lines.append(f"{pad}{name}: {value_json}  # {field.description}{_range(field)}")
    return "\n".join(lines)
