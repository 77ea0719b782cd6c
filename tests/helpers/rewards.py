"""Reward functions used by the trainer tests (importable as tests.helpers.rewards:NAME)."""

import math

CALLS = {"n": 0}


def ones(completions, problems):
    """Share of the characters that are the digit 1: a target a tiny policy learns in a few steps."""
    return [c.count("1") / max(1, len(c)) for c in completions]


def raises(completions, problems):
    raise KeyError("boom")


def nan(completions, problems):
    return [math.nan] * len(completions)


def short(completions, problems):
    return [1.0] * (len(completions) - 1)


def fail_on_third_call(completions, problems):
    """Behaves like `ones` twice, then raises: a crash in the middle of a run."""
    CALLS["n"] += 1
    if CALLS["n"] == 3:
        raise RuntimeError("crash at step 3")
    return ones(completions, problems)
