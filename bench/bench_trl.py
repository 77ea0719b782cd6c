"""Bench: this project's GRPO step against TRL's `GRPOTrainer` on the same work; s/step by phase, peak RSS.

    .venv/bin/python bench/bench_trl.py [--rounds 3] [--steps 20] [section.field=value ...]

"Why not just use TRL?": both sides train the embedded default policy (its saved
byte-level BPE tokenizer, loaded as `PreTrainedTokenizerFast`, since
`AutoTokenizer` may rebuild a model-type tokenizer that splits text differently)
on the same questions per step (the project's `sample_questions` draw for each
step, fed to TRL in that order), rewarded by the project's verifier, with the
batch shape and GRPO settings of the config: B questions x G samples,
`rollout.max_new_tokens` at `rollout.temperature`, beta, epsilon, mu, the whole
batch as one minibatch, fp32, HF generate, lr and clip norm. Overrides apply to
both sides.

Each side runs `--steps` steps in a fresh process of its own, alternating
TRL, project, TRL, ... for `--rounds` rounds, so that load from other work on
the machine falls on both. A side's figure is the median over rounds of the
round's median s/step (step 1 left out: it warms up), split into phases:
generate (sampling), logprob (TRL: the reference forward; the project: the
reference forward and, where the update is not exactly on-policy, the
old-policy forward), train (forward/backward and optimizer step) and other
(rewards, advantages, tokenising, the project's store writes). Peak RSS is each
process's max resident set.

TRL comes from requirements/trl.txt, installed with `--no-deps` into
runs/trl-site on first use and put on the TRL process's path only: its other
dependencies (transformers, datasets, torch) are this venv's pins, and the
project's process never sees TRL or accelerate.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grpo_core.config import ExperimentConfig, load_config  # noqa: E402
from grpo_core.data.loaders import format_prompt  # noqa: E402
from grpo_core.data.problem import Problem  # noqa: E402
from grpo_core.data.sampling import derive_seed, sample_questions  # noqa: E402
from grpo_core.pipeline.stages import load_data, policy_dir  # noqa: E402
from grpo_core.reward.functions import compute_rewards, verdicts_for  # noqa: E402

TRL_SITE = REPO / "runs" / "trl-site"
TRL_REQUIREMENTS = REPO / "requirements" / "trl.txt"
PHASES = ("generate", "logprob", "train", "other")


def bench_config(steps: int, overrides: list[str], store_root: str) -> ExperimentConfig:
    """The compared configuration: the defaults, the whole batch as one minibatch, no checkpoints."""
    base = load_config(None, overrides)
    batch = base.grpo.questions_per_step * base.grpo.group_size
    return load_config(None, [f"grpo.steps={steps}", f"grpo.minibatch_size={batch}", "grpo.checkpoint_every=0",
                              "logging.progress=false", f"store.root={store_root}", *overrides])


def step_questions(cfg: ExperimentConfig, train: list[Problem]) -> list[list[Problem]]:
    """The questions of each step 1..steps, as the project's trainer draws them (iteration 0)."""
    g = cfg.grpo
    return [sample_questions(train, g.questions_per_step, derive_seed(g.seed, 0, step)) for step in range(1, g.steps + 1)]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_project(cfg: ExperimentConfig, tmp: Path) -> dict:
    """`--steps` steps of the project's trainer; per-step phase seconds from its `time/*_s` metrics."""
    from grpo_core.store import Store
    from grpo_core.training.trainer import train_grpo

    policy = policy_dir(cfg)
    train, _ = load_data(cfg)
    result = train_grpo(cfg, policy, train.problems, Store(cfg.store.root), tmp / "run", run_id="bench")
    steps = []
    for h in result.history:
        step = {p: h.get(f"time/{p}_s", 0.0) for p in PHASES[:3]}
        step["step"] = h["time/step_s"]
        step["other"] = step["step"] - sum(step[p] for p in PHASES[:3])
        steps.append(step)
    return {"steps": steps, "reward_mean": [h["rollout/reward_mean"] for h in result.history]}


def run_trl(cfg: ExperimentConfig, tmp: Path) -> dict:
    """`--steps` steps of TRL's GRPOTrainer on the same policy, questions, reward and batch shape."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpo_core.policy.load import load_tokenizer

    g, r = cfg.grpo, cfg.rollout
    policy = policy_dir(cfg)
    train, _ = load_data(cfg)
    by_id = {p.problem_id: p for p in train.problems}
    questions = [p for step in step_questions(cfg, train.problems) for p in step]
    data = Dataset.from_dict({"prompt": [format_prompt(p, cfg.task.prompt_template) for p in questions],
                              "problem_id": [p.problem_id for p in questions]})

    def verifier(completions: list[str], problem_id: list[str], **_: object) -> list[float]:
        problems = [by_id[i] for i in problem_id]
        rewards, _ = compute_rewards(cfg.reward.functions, completions, problems, verdicts_for(completions, problems))
        return rewards.tolist()

    tok = PreTrainedTokenizerFast.from_pretrained(policy)
    tok.padding_side, tok.pad_token = "left", load_tokenizer(policy).pad_token  # the project's pad choice
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
    batch = g.questions_per_step * g.group_size
    args = GRPOConfig(
        output_dir=str(tmp / "trl"), report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
        use_cpu=True, bf16=False, gradient_checkpointing=False, seed=g.seed, max_steps=g.steps,
        per_device_train_batch_size=batch, gradient_accumulation_steps=1, steps_per_generation=1,
        num_generations=g.group_size, num_iterations=g.mu, shuffle_dataset=False,
        max_completion_length=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p, top_k=0,
        beta=g.beta, epsilon=g.epsilon, epsilon_high=g.epsilon_high or g.epsilon,
        loss_type="grpo", scale_rewards="group",  # the paper's 1/|o_i| mean and the group's std (as the project)
        learning_rate=g.lr, lr_scheduler_type="constant", warmup_steps=g.warmup_steps,
        weight_decay=g.weight_decay, max_grad_norm=g.max_grad_norm, optim="adamw_torch",
    )
    trainer = GRPOTrainer(model=model, reward_funcs=verifier, args=args, train_dataset=data, processing_class=tok)
    phases = PhaseClock()
    phases.wrap(trainer, "_generate_single_turn", "generate")
    phases.wrap(trainer, "_prepare_inputs", "prepare")
    phases.wrap(trainer, "_get_per_token_logps_and_entropies", "logprob", when=lambda model, *a, **k: model is trainer.ref_model)
    trainer.add_callback(phases.callback(TrainerCallback))
    trainer.train()
    steps = [{"generate": s["generate"], "logprob": s["logprob"], "step": s["step"],
              "train": s["step"] - s["prepare"], "other": s["prepare"] - s["generate"] - s["logprob"]}
             for s in phases.steps]
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    return {"steps": steps, "reward_mean": rewards}


class PhaseClock:
    """Wall seconds of wrapped trainer methods, summed per phase and cut into optimizer steps by a callback."""

    def __init__(self) -> None:
        self.current: dict[str, float] = {}
        self.steps: list[dict[str, float]] = []
        self.t_last = time.perf_counter()

    def wrap(self, obj: object, method: str, phase: str, when=None) -> None:
        inner = getattr(obj, method)

        def timed(*args, **kwargs):
            if when is not None and not when(*args, **kwargs):
                return inner(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.current[phase] = self.current.get(phase, 0.0) + time.perf_counter() - t0

        setattr(obj, method, timed)

    def callback(self, base: type):
        clock = self

        class StepEnd(base):
            def on_train_begin(self, *args, **kwargs):
                clock.t_last = time.perf_counter()

            def on_step_end(self, *args, **kwargs):
                now = time.perf_counter()
                step = {p: clock.current.get(p, 0.0) for p in ("generate", "prepare", "logprob")}
                clock.steps.append({**step, "step": now - clock.t_last})
                clock.current, clock.t_last = {}, now

        return StepEnd()


def ensure_trl() -> None:
    """Install the pinned TRL (requirements/trl.txt) into runs/trl-site, leaving this venv as it is."""
    pins = TRL_REQUIREMENTS.read_text()
    stamp = TRL_SITE / f".installed-{hashlib.sha1(pins.encode()).hexdigest()[:12]}"
    if stamp.exists():
        return
    print(f"installing {TRL_REQUIREMENTS.relative_to(REPO)} into {TRL_SITE.relative_to(REPO)} ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(TRL_SITE),
                    "-r", str(TRL_REQUIREMENTS)], check=True)
    stamp.touch()


def run_side(side: str, args: argparse.Namespace) -> dict:
    """One side in a fresh process (TRL's on runs/trl-site); returns what it measured."""
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if side == "trl":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TRL_SITE), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        subprocess.run([sys.executable, __file__, "--side", side, "--out", str(out), "--steps", str(args.steps),
                        *args.overrides], env=env, check=True)
        return json.loads(out.read_text())


def summary(rounds: list[dict]) -> dict[str, float]:
    """Median over rounds of each round's median (steps after the first) per phase; max peak RSS."""
    out = {}
    for key in ("step", *PHASES):
        out[key] = statistics.median(statistics.median(s[key] for s in r["steps"][1:]) for r in rounds)
    out["peak_rss_gib"] = max(r["peak_rss_gib"] for r in rounds)
    return out


def report(cfg: ExperimentConfig, results: dict[str, list[dict]]) -> None:
    g = cfg.grpo
    n = len(results["trl"])
    print(f"\nGRPO step, TRL GRPOTrainer vs this project: B={g.questions_per_step} x G={g.group_size}, "
          f"{cfg.rollout.max_new_tokens} new tokens, beta={g.beta}, epsilon={g.epsilon}, mu={g.mu}, one minibatch, "
          f"fp32, HF generate; {n} alternating rounds of {g.steps} steps, median of round medians")
    rows = {side: summary(rounds) for side, rounds in results.items()}
    print(f"{'':<10}{'s/step':>9}" + "".join(f"{p:>10}" for p in PHASES) + f"{'peak RSS':>12}")
    for side, s in rows.items():
        print(f"{side:<10}{s['step']:>9.3f}" + "".join(f"{s[p]:>10.3f}" for p in PHASES)
              + f"{s['peak_rss_gib']:>8.2f} GiB")
    trl, ours = rows["trl"], rows["project"]
    print(f"project / TRL: s/step {ours['step'] / trl['step']:.2f}x (target <= 0.5x), "
          f"peak RSS {ours['peak_rss_gib'] / trl['peak_rss_gib']:.2f}x (target <= 1x)")
    for side, rounds in results.items():
        means = [sum(r["reward_mean"]) / max(1, len(r["reward_mean"])) for r in rounds]
        print(f"  {side} mean reward per round: " + ", ".join(f"{m:.3f}" for m in means))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--side", choices=("trl", "project"), help=argparse.SUPPRESS)  # one side, in this process
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(args.steps, args.overrides, f"{tmp}/store")
        if args.side is not None:
            run = run_trl if args.side == "trl" else run_project
            result = run(cfg, Path(tmp))
            args.out.write_text(json.dumps({**result, "peak_rss_gib": peak_rss_gib()}))
            return
        policy_dir(cfg)  # build the embedded policy once, before any side is timed
    ensure_trl()
    results: dict[str, list[dict]] = {"trl": [], "project": []}
    for i in range(args.rounds):
        for side in results:
            results[side].append(run_side(side, args))
            steps = results[side][-1]["steps"][1:]
            print(f"round {i + 1} {side}: {statistics.median(s['step'] for s in steps):.3f} s/step, "
                  f"peak RSS {results[side][-1]['peak_rss_gib']:.2f} GiB", flush=True)
    report(cfg, results)


if __name__ == "__main__":
    main()
