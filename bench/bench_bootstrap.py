"""Bench: build the default embedded policy from scratch and measure it.

    .venv/bin/python bench/bench_bootstrap.py [--threads N] [section.field=value ...]

Builds into a temp cache dir (never reuses a cached policy), prints the wall
time of the build, then evaluates on the held-out split: greedy accuracy and
well-formed rate (a parseable "The answer is N"), and sampled accuracy at
temperature 1.0 (the rollout setting RL starts from).

Targets (2-core CPU): build <= 180 s; greedy accuracy 15-70% (ideally
35-50%); well-formed >= 90%; sampled accuracy >= ~20%.

Timing needs an otherwise idle machine: the load average is printed before and
after. With other CPU-bound processes on the 2 cores, torch's two OpenMP
threads spin-wait and the build can take 3-6x longer; `OMP_WAIT_POLICY=PASSIVE`
in the environment (set before Python starts) or `--threads 1` avoids most of it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_core.policy.bootstrap import build_policy, read_info  # noqa: E402
from grpo_core.config import load_config  # noqa: E402
from grpo_core.data.loaders import format_prompt  # noqa: E402
from grpo_core.data.problem import Problem  # noqa: E402
from grpo_core.data.synthetic import generate_splits  # noqa: E402
from grpo_core.policy.load import load_policy  # noqa: E402
from grpo_core.reward.functions import verdicts_for  # noqa: E402
from grpo_core.rollout.base import SamplingParams  # noqa: E402
from grpo_core.rollout.hf import HFEngine  # noqa: E402

GEN_BATCH = 100  # prompts per generate call
N_SAMPLES = 4  # samples per problem at temperature 1.0


def _judge(completions: list[str], problems: list[Problem]) -> tuple[list[bool], list[bool]]:
    """(correct, well-formed) per completion, by the verifier the reward uses."""
    verdicts = verdicts_for(completions, problems)
    return [v.correct for v in verdicts], [v.answer is not None for v in verdicts]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("overrides", nargs="*", help="config overrides, section.field=value")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = args.overrides
    print(f"torch threads: {torch.get_num_threads()}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [f"model.cache_dir={tmp}", *overrides])
        t0 = time.perf_counter()
        path = build_policy(cfg.model, cfg.task, progress=cfg.logging.progress)
        build_s = time.perf_counter() - t0
        info = read_info(path)
        model, tok = load_policy(path)
        _, test = generate_splits(cfg.task.synthetic, cfg.task.seed)
        prompts = [format_prompt(p, cfg.task.prompt_template) for p in test]
        max_new = cfg.rollout.max_new_tokens

        t1 = time.perf_counter()
        engine = HFEngine(model, tok, batch_size=GEN_BATCH)
        greedy = engine.generate(prompts, SamplingParams(greedy=True, max_new_tokens=max_new)).completions
        greedy_s = time.perf_counter() - t1
        correct, wellformed = _judge(greedy, test)

        t2 = time.perf_counter()
        params = SamplingParams(n=N_SAMPLES, temperature=1.0, max_new_tokens=max_new, seed=0)
        sampled = engine.generate(prompts, params).completions
        sample_s = time.perf_counter() - t2
        s_correct, s_wellformed = _judge(sampled, [p for p in test for _ in range(N_SAMPLES)])

        losses = info["sft_losses"]
        print(f"model: hidden {cfg.model.hidden_size}, layers {cfg.model.num_layers}, heads {cfg.model.num_heads}, "
              f"vocab {info['vocab_size']}, params {info['n_params']:,}")
        print(f"SFT: {cfg.model.sft_steps} steps x {cfg.model.sft_batch_size}, lr {cfg.model.sft_lr}, "
              f"train {info['n_train_examples']} problems, longest example {info['longest_example_tokens']} tokens")
        print(f"SFT loss: first {losses[0]:.3f}  last-10 mean {sum(losses[-10:]) / len(losses[-10:]):.4f}"
              if losses else "SFT loss: (no steps)")
        print(f"bootstrap wall time: {build_s:.1f} s (setup {info['setup_seconds']:.1f} s, "
              f"SFT {info['sft_seconds']:.1f} s)")
        n = len(test)
        print(f"held-out greedy ({n} problems, {greedy_s:.1f} s): accuracy {sum(correct) / n:.1%}, "
              f"well-formed {sum(wellformed) / n:.1%}")
        m = len(sampled)
        print(f"held-out sampled T=1.0 ({N_SAMPLES}/problem, {sample_s:.1f} s): accuracy {sum(s_correct) / m:.1%}, "
              f"well-formed {sum(s_wellformed) / m:.1%}")
        print(f"load average at the end: {os.getloadavg()[0]:.2f}")
        for p, c in list(zip(test, greedy))[:3]:
            print("---", p.question, "| gold", p.answer)
            print(c)


if __name__ == "__main__":
    main(sys.argv[1:])
