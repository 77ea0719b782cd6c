"""Bench: throughput of the outcome reward `grpo_core.reward.verify.verify`.

    .venv/bin/python bench/bench_verify.py

Prints verifications/second for two workloads:
- fast path: 1,000 synthetic-task completions ("... The answer is N"), half of them wrong. No
  sympy and no child process.
- slow path: 100 distinct LaTeX answers that only math-verify can decide (\\sqrt, polynomials,
  intervals). These run in the child process. The child is started first (`warm_up`), so its
  start-up time is not counted.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpo_core.reward.verify import verify, warm_up  # noqa: E402


def synthetic_cases(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """(completion, gold) pairs in the synthetic format; every other completion is wrong."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        a, b, c = rng.randint(1, 99), rng.randint(1, 99), rng.randint(2, 3)
        gold = (a + b) * c
        said = gold if i % 2 == 0 else gold + rng.choice([-1, 1])
        completion = f"{a} + {b} = {a + b}\n{a + b} * {c} = {(a + b) * c}\nThe answer is {said}"
        cases.append((completion, str(gold)))
    return cases


def latex_cases(n: int) -> list[tuple[str, str]]:
    """(completion, gold) pairs that the fast path cannot decide; unique preds, so no cache hits."""
    cases = []
    for k in range(2, n + 2):
        kind = k % 3
        if kind == 0:
            cases.append((f"so \\boxed{{\\frac{{\\sqrt{{{2 * k * k}}}}}{{{k}}}}}", "\\sqrt{2}"))
        elif kind == 1:
            cases.append((f"\\boxed{{(x+{k})^2}}", f"x^2 + {2 * k}x + {k * k}"))
        else:
            cases.append((f"\\boxed{{[{k}, {2 * k})}}", f"[{k},{2 * k})"))
    return cases


def rate(cases: list[tuple[str, str]]) -> tuple[float, float]:
    """(verifications per second, fraction correct)."""
    start = time.perf_counter()
    correct = sum(verify(completion, gold).correct for completion, gold in cases)
    elapsed = time.perf_counter() - start
    return len(cases) / elapsed, correct / len(cases)


def main() -> None:
    fast, fast_acc = rate(synthetic_cases(1000))
    print(f"fast path (synthetic, 1000): {fast:,.0f} verifications/s  (correct {fast_acc:.0%})")
    start = time.perf_counter()
    warm_up()
    print(f"slow-path worker start-up:   {time.perf_counter() - start:.2f} s")
    slow, slow_acc = rate(latex_cases(100))
    print(f"slow path (LaTeX, 100):      {slow:,.1f} verifications/s  (correct {slow_acc:.0%})")


if __name__ == "__main__":
    main()
