"""grpo_core.reward.answer: the one reading of "where is the final answer" for data, labels and reward."""

from __future__ import annotations

import pytest

from grpo_core.reward.answer import (
    ANSWER_PREFIX,
    answer_line,
    last_answer_line,
    last_boxed,
    last_gsm8k,
)


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("$\\boxed{2}$", "2"),
        ("\\boxed {5}", "5"),  # a space before the brace is still the box's argument
        ("\\boxed\t{ 5 }", "5"),
        ("\\boxed{a\\}b}", "a\\}b"),  # an escaped brace does not close the box
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not nest
        ("\\boxed{\\left\\{ x \\right.}", "\\left\\{ x \\right."),  # an unmatched escaped brace
        # a row break \\ then a real brace
        ("\\boxed{\\begin{pmatrix}1\\\\{2}\\end{pmatrix}}", "\\begin{pmatrix}1\\\\{2}\\end{pmatrix}"),
        ("\\boxed{1} then \\boxed{\\frac{a}{b}}", "\\frac{a}{b}"),  # the last box wins
        ("\\boxed{\\boxed{4}}", "4"),
        ("\\fbox{7}", "7"),
        ("$\\boxed 5$ done", "5"),  # MATH's brace-less form
        ("\\boxed{}", ""),  # present but empty
        ("\\boxed{1} and \\boxed{\\frac{1}{2}", None),  # the last box is unclosed: no fallback
        ("\\boxed{a\\}", None),  # the escaped brace leaves the box unclosed
        ("\\boxedx{3}", None),
        ("\\boxed", None),
        ("no box", None),
    ],
)
def test_last_boxed(text: str, boxed: str | None) -> None:
    assert last_boxed(text) == boxed


@pytest.mark.parametrize(
    "line, answer",
    [
        ("The answer is 5", "5"),
        ("The answer is  5", "5"),  # two spaces: still states 5 (label and reward agree)
        ("The answer is\t-12.", "-12"),
        ("  The answer is 5 .  ", "5"),
        ("The answer is 5\r", "5"),
        ("\nThe answer is 5\n", "5"),  # a step split on another delimiter may keep line breaks
        ("The answer is5", None),
        ("The answer is 5 apples", None),
        ("The answer is 1.5", None),
        ("The answer is \u0665", None),  # ASCII digits only: int() would read this as 5
        ("I think The answer is 5", None),
        ("the answer is 5", None),
    ],
)
def test_answer_line(line: str, answer: str | None) -> None:
    assert answer_line(line) == answer
    assert last_answer_line("3 + 2 = 5\n" + line.strip("\n")) == answer


def test_last_answer_line_takes_the_last_and_the_prefix_renders_it() -> None:
    assert last_answer_line("The answer is 3\nwait\nThe answer is  4.\nok") == "4"
    assert answer_line(f"{ANSWER_PREFIX}17") == "17"


@pytest.mark.parametrize(
    "text, answer",
    [
        ("#### 1,234", "1,234"),
        ("#### $1,234.50", "$1,234.50"),
        ("####-7", "-7"),
        ("#### 3\n#### 4", "4"),
        ("#### 12,", "12"),
        ("#### \u0665", None),
        ("#### dollars", None),
    ],
)
def test_last_gsm8k(text: str, answer: str | None) -> None:
    assert last_gsm8k(text) == answer
