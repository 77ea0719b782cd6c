"""The one record every problem source produces."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """A question with its gold answer and gold step-by-step solution.

    `solution` is the supervised target: steps separated by newlines, the last
    line stating the final answer in the source's format (synthetic:
    "The answer is N", GSM8K: "#### N", MATH: a line with \\boxed{N}).
    `ops` is filled by the synthetic task only: (operator, operand) per step,
    from `start`, so every step can be checked exactly.
    """

    problem_id: str
    question: str
    answer: str
    solution: str
    source: str
    start: int | None = None
    ops: tuple[tuple[str, int], ...] = field(default_factory=tuple)
