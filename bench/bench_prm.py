"""Bench: Math-Shepherd labelling throughput and reward-model training/scoring speed.

    .venv/bin/python bench/bench_prm.py [--problems 32] [section.field=value ...]

On the default embedded policy (built once with grpo_core.policy.bootstrap.build_policy,
cached under model.cache_dir):
  - labelling: sample prm.samples_per_problem solutions of --problems train
    problems, label every step with prm.n_completions continuations (one
    batched generate call); reports labelled steps per second of labelling
    (sampling the solutions excluded) and continuations per second;
  - training: one epoch of PRM training on those labels: tokens per second
    (attended tokens of the packed minibatches, forward + backward + AdamW);
  - scoring: the trainer's StepScorer on a GRPO-sized rollout batch
    (grpo.questions_per_step x grpo.group_size): rollouts per second.
Threads: torch uses $BENCH_THREADS (default 2), with OMP_WAIT_POLICY=PASSIVE unless set:
on shared cores spinning OpenMP threads made labelling and training 10-40x slower.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read when torch loads: idle threads sleep (shared cores)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_core.config import load_config  # noqa: E402
from grpo_core.data.loaders import format_prompt  # noqa: E402
from grpo_core.data.synthetic import generate_splits  # noqa: E402
from grpo_core.policy.bootstrap import build_policy  # noqa: E402
from grpo_core.policy.load import load_policy, load_tokenizer  # noqa: E402
from grpo_core.rollout.base import SamplingParams  # noqa: E402
from grpo_core.rollout.hf import HFEngine  # noqa: E402
from prm.data import solutions_from_rows  # noqa: E402
from prm.label import label_agreement, label_solutions  # noqa: E402
from prm.model import RewardModel  # noqa: E402
from prm.score import make_step_scorer  # noqa: E402
from prm.train import train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    cfg = load_config(None, ["logging.progress=false", *args.overrides])
    t0 = time.perf_counter()
    policy_dir = build_policy(cfg.model, cfg.task, progress=False)
    print(f"policy: {policy_dir} ({time.perf_counter() - t0:.1f}s to build or find)")
    train_set, _ = generate_splits(cfg.task.synthetic, cfg.task.seed)
    model, tok = load_policy(policy_dir)
    engine = HFEngine(model, tok, batch_size=cfg.rollout.batch_size)
    p = cfg.prm
    problems = train_set[: args.problems]
    prompts = [format_prompt(q, cfg.task.prompt_template) for q in problems]

    # labelling
    t0 = time.perf_counter()
    samples = engine.generate(prompts, SamplingParams(n=p.samples_per_problem, temperature=cfg.rollout.temperature,
                                                      max_new_tokens=cfg.rollout.max_new_tokens, seed=1))
    t_sample = time.perf_counter() - t0
    expanded = [q for q in problems for _ in range(p.samples_per_problem)]
    t0 = time.perf_counter()
    rows = label_solutions(engine, expanded, samples, n_completions=p.n_completions,
                           prompt_template=cfg.task.prompt_template, delimiter=p.step_tag,
                           max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature, seed=2)
    t_label = time.perf_counter() - t0
    n_cont = sum(r["n_completions"] for r in rows)
    print(f"labelling: {len(samples)} solutions sampled in {t_sample:.1f}s; {len(rows)} steps labelled "
          f"({n_cont} continuations, N={p.n_completions}) in {t_label:.1f}s = {len(rows) / t_label:.1f} steps/s, "
          f"{n_cont / t_label:.1f} continuations/s")
    agree = label_agreement(rows)
    print("  agreement with exact labels: " + " ".join(f"{k}={v:.3f}" for k, v in agree.items()))

    # training: one epoch
    rm = RewardModel.from_pretrained(policy_dir, surprise=p.surprise_features)
    rtok = load_tokenizer(policy_dir)
    sols = solutions_from_rows(rows, p.step_tag)
    one = p.model_copy(update={"epochs": 1})
    m = train(rm, rtok, sols, [], one, delimiter=p.step_tag)[1]
    print(f"training: {len(sols)} solutions, {int(m['prm/train_steps'])} steps, one epoch in {m['prm/epoch_s']:.1f}s "
          f"= {m['prm/train_tokens_per_s']:.0f} tokens/s (batch {p.batch_size})")

    # scoring a GRPO batch
    g = cfg.grpo
    batch = engine.generate([format_prompt(q, cfg.task.prompt_template) for q in train_set[: g.questions_per_step]],
                            SamplingParams(n=g.group_size, max_new_tokens=cfg.rollout.max_new_tokens, seed=3))
    scorer = make_step_scorer(rm, rtok, p.step_tag)
    t0 = time.perf_counter()
    rewards, mask, _ = scorer(batch, [q for q in train_set[: g.questions_per_step] for _ in range(g.group_size)])
    t_score = time.perf_counter() - t0
    print(f"scoring: {len(batch)} rollouts ({int(mask.sum())} steps) in {t_score:.2f}s = "
          f"{len(batch) / t_score:.0f} rollouts/s")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        rm.save(Path(tmp) / "rm", tokenizer=rtok)
        RewardModel.load(Path(tmp) / "rm")
        print(f"save + load: {time.perf_counter() - t0:.2f}s")


if __name__ == "__main__":
    main()
