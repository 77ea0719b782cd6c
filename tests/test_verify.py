"""Tests for grpo_core.reward.verify: extraction, exact numeric equivalence, the math-verify slow path,
and the safety contract (no code execution, bounded time, never raises).

    .venv/bin/pytest tests/test_verify.py -q

Time bounds below are correctness bounds (BOUND_S = 5x the timeout), not speed benchmarks; see
bench/bench_verify.py for throughput.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grpo_core.reward import verify as V
from grpo_core.reward.verify import (
    MAX_SCAN_CHARS,
    Verdict,
    extract_answer,
    is_equivalent,
    normalize_answer,
    slow_path_rejection,
    verify,
)

TIMEOUT_S = 1.0
BOUND_S = 5 * TIMEOUT_S


@pytest.fixture(scope="module", autouse=True)
def _worker() -> None:
    assert V.warm_up(), "slow-path worker failed to start"


def finishes(fn, *args, bound: float = BOUND_S):
    """fn(*args), run off the main thread under a watchdog: it must return within `bound` seconds
    (the verifier's guarantee on any input), so a hang fails here instead of blocking the suite."""
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["value"] = fn(*args)
        except BaseException as err:  # re-raised in the test's thread
            out["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {bound} s"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out["value"]


# ------------------------------------------------------------------ extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3 + 4 = 7\nThe answer is 7", "7"),
        ("The answer is 7.\n", "7"),
        ("The answer is -12", "-12"),
        ("The answer is 3\nwait, no\nThe answer is 5.", "5"),  # last line wins
        ("  The answer is 5  ", "5"),
        ("The answer is  5", "5"),  # as the synthetic task's step labels read it
        ("I think The answer is 5", None),  # must be its own line
        ("The answer is 5 apples", None),
        ("The answer is x", None),
        ("The answer is 1.5", None),  # integers only
        ("", None),
    ],
)
def test_extract_synthetic(text: str, expected: str | None) -> None:
    assert extract_answer(text, "synthetic") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so 5 * 3 = 15\n#### 15", "15"),
        ("#### 1,234", "1,234"),
        ("#### $1,234.50", "$1,234.50"),
        ("####-7", "-7"),
        ("#### 3\n#### 4", "4"),  # last wins
        ("#### 18 dollars", "18"),
        ("#### 12,", "12"),
        ("#### dollars", None),
        ("no marker 42", None),
    ],
)
def test_extract_gsm8k(text: str, expected: str | None) -> None:
    assert extract_answer(text, "gsm8k") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("so \\boxed{5}.", "5"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),  # nested braces
        ("\\boxed{ \\{1, 2\\} }", "\\{1, 2\\}"),
        ("first \\boxed{1} then \\boxed{2}", "2"),  # last wins
        ("\\fbox{3}", "3"),
        ("\\boxed{\\boxed{4}}", "4"),
        ("$\\boxed 5$ done", "5"),  # MATH's "\boxed 5" form
        ("\\boxed {5}", "5"),  # the same reading as the MATH loader's gold (grpo_core.reward.answer)
        ("\\boxed{a\\}b}", "a\\}b"),  # an escaped brace does not close the box
        ("\\boxed{1} and finally \\boxed{\\frac{2}{3}", None),  # truncated last box
        ("\\boxed{}", None),
        ("\\boxedx{3}", None),
        ("\\boxed", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_answer(text, "boxed") == expected


def test_extract_auto_prefers_boxed_then_gsm8k_then_synthetic() -> None:
    assert extract_answer("The answer is 1\n#### 2\n\\boxed{3}") == "3"
    assert extract_answer("\\boxed{3}\n#### 2\nThe answer is 1") == "3"
    assert extract_answer("The answer is 1\n#### 2") == "2"
    assert extract_answer("The answer is 1") == "1"
    assert extract_answer("nothing here") is None


def test_extract_reads_only_the_tail() -> None:
    assert extract_answer("The answer is 5\n" + "x" * MAX_SCAN_CHARS) is None
    assert extract_answer("x" * 10 * MAX_SCAN_CHARS + "\nThe answer is 5") == "5"


def test_extract_long_answer_is_none_and_bad_format_raises() -> None:
    assert extract_answer("\\boxed{" + "1" * 2000 + "}") is None
    with pytest.raises(ValueError):
        extract_answer("The answer is 1", "latex")  # type: ignore[arg-type]


# ------------------------------------------------------------------ normalisation / fast path


@pytest.mark.parametrize(
    "forms, canonical",
    [
        (["1234", "1,234", "1234.0", "+1234", "$1,234$", "1{,}234", "01234", "1\\,234", "1 234"], "1234"),
        (["0.5", ".5", "1/2", "2/4", "\\frac{1}{2}", "\\dfrac12", "\\tfrac{1}{2}", "0.50"], "1/2"),
        (["-3", "-3.00", "\\frac{-6}{2}", "-\\frac{6}{2}", "-3."], "-3"),
        (["0", "-0", "0.000", "000"], "0"),
        (["50 percent", "50%", "50\\%", "50\\text{ \\%}", "50 pct"], "50 percent"),
        (["50\\text{ cm}", "50 cm", "50cm", "50 \\mbox{centimeters}", "50\\mathrm{cm}"], "50 centimeter"),
        (["\\$50", "50 \\mbox{dollars}", "50 dollars", "50\\text{ Dollar}"], "50 dollar"),
        (["50^\\circ", "50^{\\circ}", "50°", "50 \\text{degrees}"], "50 degree"),
        (["-\\frac{-1}{4}", "0.25"], "1/4"),
        (["1" * 80], "1" * 80),  # integers of any length compare as digit strings
    ],
)
def test_normalize_equal_numbers_share_one_string(forms: list[str], canonical: str) -> None:
    assert {normalize_answer(f) for f in forms} == {canonical}


def test_normalize_symbolic_is_cosmetic_only() -> None:
    assert normalize_answer("\\left( 1, 2 \\right)") == "(1,2)"
    assert normalize_answer("\\dfrac{\\pi}{2}") == "\\frac{\\pi}{2}"
    assert normalize_answer("$x^2 + 1$") == "x^2+1"
    assert normalize_answer("2\\pi r") == "2\\pi r"  # not merged into "\pir"
    assert normalize_answer("\\leftarrow") == "\\leftarrow"
    assert normalize_answer("1,2") == "1,2"  # a list, not one thousand-something
    assert normalize_answer("3/0") == "3/0"  # not a number; left as text
    assert normalize_answer("  ") is None
    assert normalize_answer("1" * 2000) is None


def test_normalize_bounds_digits_for_fractions() -> None:
    long_decimal = "1" * 60 + ".5"
    assert normalize_answer(long_decimal) == long_decimal  # not turned into a Fraction


def test_majority_vote_groups_equal_numbers() -> None:
    answers = ["1/2", "0.5", "\\frac{1}{2}", "3", "3.0", "7"]
    votes = Counter(normalize_answer(a) for a in answers)
    assert votes.most_common(1) == [("1/2", 3)]
    assert votes["3"] == 2


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("1,234", "1234", True),
        ("0.5", "1/2", True),
        ("\\frac{1}{2}", "0.5", True),
        ("-3", "3", False),
        ("3", "-3", False),
        ("0.333", "1/3", False),  # exact, no rounding
        ("$18.00", "18", True),
        ("18 \\text{dollars}", "18", True),
        ("1/3", "2/6", True),
        ("12", "1,2", False),
        (None, "1", False),
    ],
)
def test_numeric_equivalence(pred: str | None, gold: str, expected: bool) -> None:
    assert is_equivalent(pred, gold, TIMEOUT_S) is expected


def test_fast_path_does_not_touch_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    restarts = V._WORKER.restarts

    def worker_check(*args: object) -> bool:
        raise AssertionError(f"the fast path called the slow-path worker with {args}")

    monkeypatch.setattr(V._WORKER, "check", worker_check)
    results = [is_equivalent(str(i), str(i), TIMEOUT_S) for i in range(2000)]
    assert all(results) and V._WORKER.restarts == restarts


# ------------------------------------------------------------------ slow path (math-verify)


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("\\sqrt{2}", "2^{1/2}", True),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", True),
        ("x^2 + 1", "1 + x^2", True),
        ("x^2 - 1", "x^2 + 1", False),
        ("[1, 3)", "[1,3)", True),
        ("(1, 3)", "[1,3)", False),
        ("2\\pi", "\\pi \\cdot 2", True),
        ("\\sqrt{4}", "2", True),
        ("\\text{(A)}", "A", True),
        ("\\{1, 2\\}", "\\{2, 1\\}", True),
    ],
)
def test_symbolic_equivalence(pred: str, gold: str, expected: bool) -> None:
    result = finishes(is_equivalent, pred, gold, TIMEOUT_S)
    assert result is expected


def test_verify_end_to_end() -> None:
    assert verify("so \\boxed{\\dfrac{1}{2}}.", "0.5") == Verdict("\\dfrac{1}{2}", "1/2", True)
    assert verify("#### 1,234", "1234", fmt="gsm8k") == Verdict("1,234", "1234", True)
    assert verify("3 * 4 = 12\nThe answer is 12", "12", fmt="synthetic").correct
    assert verify("The answer is 12", "12", fmt="boxed") == Verdict(None, None, False)
    assert verify("no answer", "12") == Verdict(None, None, False)


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("9^9^9^9", "exponent tower"),
        ("9^{9^{9^{9}}}", "exponent tower"),
        ("2^{3!}", "exponent tower"),
        ("10**10**10", "python power operator"),
        ("10^{123456}", "exponent too large"),
        ("(10^{100})!", "factorial of an expression"),
        ("100000!", "factorial too large"),
        ("{" * 40 + "1" + "}" * 40, "nesting too deep"),
        ("\\frac{1}{2", "unbalanced braces"),
        ("1}{2", "unbalanced braces"),
        ("x" * 600, "too long"),
        ("2^{10} + x^{-1} + 5! + e^{i\\pi}", None),
        ("[1, 3)", None),
    ],
)
def test_slow_path_rejection(answer: str, reason: str | None) -> None:
    assert slow_path_rejection(answer) == reason


# ------------------------------------------------------------------ adversarial input


def _payloads(marker: Path) -> list[str]:
    code = f"__import__('os').system('touch {marker}')"
    return [
        code,
        f"(lambda: {code})()",
        f"exec(\"{code}\")",
        f"eval('{code}')",
        f"Symbol('x').__class__.__init__.__globals__['os'].system('touch {marker}')",
        f"1+{code}",
        f"\\operatorname{{eval}}(\\text{{{code}}})",  # parses to a sympy Function call
        f"\\mathrm{{exec}}(x) + \\text{{{code}}}",
    ]


def _wrapped(payload: str) -> list[tuple[str, str]]:
    return [
        (f"The answer is {payload}", "synthetic"),
        (f"#### {payload}", "gsm8k"),
        (f"\\boxed{{{payload}}}", "boxed"),
        (f"\\fbox{{{payload}}}", "auto"),
        (f"Final answer: ${payload}$", "auto"),
        (f"answer: {payload}", "auto"),
    ]


def test_code_payloads_never_execute(tmp_path: Path) -> None:
    marker = tmp_path / "pwned_X"
    for payload in _payloads(marker):
        for text, fmt in _wrapped(payload):
            verdict = finishes(verify, text, "987654321", fmt, TIMEOUT_S)
            assert verdict.correct is False
            verdict = finishes(verify, "\\boxed{1}", payload, "auto", TIMEOUT_S)  # as gold
            assert verdict.correct is False
        assert is_equivalent(payload, payload + " ", TIMEOUT_S) is True  # equal text, no execution
        assert is_equivalent(payload, "x", TIMEOUT_S) is False
        normalize_answer(payload)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{9^{9^{9^{9}}}}",
        "\\boxed{9^9^9^9}",
        "\\boxed{10**10**10}",
        "#### 10**10**10",
        "The answer is 9^9^9^9",
        "\\boxed{(10^{100})!}",
        "\\boxed{10^{10^{10}}}",
        "\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
        "\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}",
        "\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}",
        "\\boxed{" * 10_000,
        "The answer is " + "(" * 10_000,
        "#### " * 200_000,
        "\n" * 1_000_000,
        "{" * 1_000_000,
        "\\boxed{" + "9" * 1_000_000 + "}",
        "The answer is " + "9" * 1_000_000,
        "x" * 1_000_000 + "The answer is 3",
    ],
    ids=lambda t: repr(t[:30]) + f"..len={len(t)}",
)
def test_adversarial_input_is_false_and_bounded(text: str) -> None:
    verdict = finishes(verify, text, "3", "auto", TIMEOUT_S)
    assert verdict.correct is False


@pytest.mark.parametrize("size", [10_000, 1_000_000])
def test_huge_answers_passed_directly(size: int) -> None:
    for pred in ["(" * size + "1" + ")" * size, "{" * size, "9" * size, "1/" + "7" * size]:
        result = finishes(is_equivalent, pred, "1", TIMEOUT_S)
        assert result is False
        result = finishes(is_equivalent, "1", pred, TIMEOUT_S)  # hostile gold too
        assert result is False


def test_lone_surrogates_and_control_chars() -> None:
    for text in ["\\boxed{\ud800}", "\\boxed{x\x00y}", "#### \udfff", "\\boxed{\u202e1}"]:
        verdict = finishes(verify, text, "1", "auto", TIMEOUT_S)
        assert verdict.correct is False


# ------------------------------------------------------------------ threads and timeouts


def test_verify_from_worker_thread() -> None:
    # finishes() calls from a thread of its own, not the main thread
    slow = finishes(verify, "\\boxed{\\frac{\\sqrt{8}}{2}}", "\\sqrt{2}", "auto", TIMEOUT_S)
    tower = finishes(verify, "\\boxed{9^{9^{9}}}", "3", "auto", TIMEOUT_S)
    assert slow.correct is True
    assert tower.correct is False


def test_worker_timeout_kills_and_recovers_in_thread() -> None:
    """Bypass the screening: math-verify on 9^(9^9) runs far past the timeout, from a thread."""
    restarts = V._WORKER.restarts
    start = time.monotonic()
    killed = finishes(V._WORKER.check, "9^{9^{9}}", "3", 0.5, bound=5 * 0.5)
    assert killed is False and time.monotonic() - start >= 0.5  # the timeout's contract: it waited its budget
    assert V._WORKER.restarts == restarts + 1
    after = finishes(is_equivalent, "\\sqrt{9}", "3", TIMEOUT_S)  # fresh worker works
    assert after is True


def test_concurrent_callers_share_the_worker() -> None:
    pairs = [(f"\\sqrt{{{k * k}}}", str(k)) for k in range(2, 10)]
    out: list[bool] = [False] * len(pairs)

    def run(i: int) -> None:
        out[i] = is_equivalent(pairs[i][0], pairs[i][1], TIMEOUT_S)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(pairs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=4 * BOUND_S)
    assert all(out)


# ------------------------------------------------------------------ properties

_TOKENS = st.sampled_from(
    [
        "\\boxed{", "\\fbox{", "{", "}", "(", ")", "[", "]", "####", "The answer is ", "\n", " ",
        "-", "1", "23", ",", ".", "/", "^", "!", "\\frac", "\\sqrt", "x", "\\pi", "$", "%", "\\",
        "\\text{", "**", "e", "=", "\\left(", "\\right)", "\\infty", "\\cup",
    ]
)
_TEXT = st.one_of(st.text(max_size=300), st.lists(_TOKENS | st.text(max_size=3), max_size=60).map("".join))
_PROPERTY = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY
@given(text=_TEXT, gold=st.sampled_from(["3", "\\frac{1}{2}", "x^2+1", "[1,3)"]))
def test_random_text_never_raises_and_is_bounded(text: str, gold: str) -> None:
    verdict = finishes(verify, text, gold, "auto", TIMEOUT_S)
    assert isinstance(verdict, Verdict) and isinstance(verdict.correct, bool)
    if verdict.answer is None:
        assert verdict.normalized is None and verdict.correct is False


@_PROPERTY
@given(a=_TEXT, b=_TEXT)
def test_random_pairs_never_raise(a: str, b: str) -> None:
    result = finishes(is_equivalent, a, b, TIMEOUT_S)
    assert isinstance(result, bool)
    for fmt in ("synthetic", "boxed", "gsm8k"):
        answer = extract_answer(a, fmt)  # type: ignore[arg-type]
        assert answer is None or isinstance(answer, str)
    normalized = normalize_answer(a)
    assert normalized is None or isinstance(normalized, str)


@settings(max_examples=200, derandomize=True)
@given(st.fractions(max_denominator=10**6).filter(lambda f: abs(f) < 10**12))
def test_fraction_forms_normalize_identically(value) -> None:
    forms = [f"{value.numerator}/{value.denominator}", f"\\frac{{{value.numerator}}}{{{value.denominator}}}"]
    if value.denominator == 1:
        forms.append(f"{value.numerator:,}")
    assert {normalize_answer(f) for f in forms} == {str(value)}


# ------------------------------------------------------------------ answer shapes (issue 18)


@pytest.mark.parametrize(
    "completion, gold, expected",
    [
        # LaTeX row breaks survive spacing: vectors, matrices, cases
        ("\\boxed{\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}}", "\\begin{pmatrix}2\\\\-1\\end{pmatrix}", True),
        ("\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
        ("\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 5 \\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", False),
        ("\\boxed{\\begin{cases} x & x > 0 \\\\ -x & x \\le 0 \\end{cases}}",
         "\\begin{cases}x&x>0\\\\-x&x\\le 0\\end{cases}", True),
        # percent and unit words: math-verify reads the answer as written, not a squeezed form
        ("\\boxed{28 percent}", "28\\%", True),
        ("\\boxed{28 pct}", "28\\%", True),
        ("\\boxed{0.28}", "28\\%", True),  # 28% is 0.28 ...
        ("\\boxed{28}", "28\\%", True),  # ... and, for a question asked in percent, 28
        ("\\boxed{2.8}", "28\\%", False),
        # thousands separators: 1,234 1{,}234 1\,234 1 234; a comma and a space make a list
        ("\\boxed{32,349}", "32349", True),
        ("\\boxed{32{,}349}", "32349", True),
        ("\\boxed{32\\,349}", "32349", True),
        ("\\boxed{32 349}", "32349", True),
        ("\\boxed{32, 349}", "32349", False),
        ("\\boxed{1, 000}", "1000", False),
        ("\\boxed{1.234.567}", "1234567", False),  # no European grouping
        # a leading zero group is not thousands; a plain leading zero is
        ("\\boxed{0,111}", "111", False),
        ("\\boxed{004,004}", "4004", False),
        ("\\boxed{007}", "7", True),
        # equality chains: every member is stated, so all must equal the gold
        ("\\boxed{6 = 7}", "7", False),
        ("\\boxed{" + "=".join(str(k) for k in range(1, 41)) + "}", "40", False),
        ("\\boxed{\\frac{10}{2} = 5}", "5", True),
        ("\\boxed{x = 5}", "5", True),
        ("\\boxed{x = 6 = 5}", "5", False),
        ("\\boxed{=5}", "5", False),
        # units are compared when both sides state one
        ("\\boxed{5\\text{ cm}}", "5\\text{ m}", False),
        ("\\boxed{5\\text{ cm}}", "5", True),
        ("\\boxed{5}", "5\\text{ cm}", True),
        ("\\boxed{5 centimeters}", "5\\text{ cm}", True),
        # several values for one gold
        ("\\boxed{3, 5}", "3", False),
        ("\\boxed{3 \\text{ or } 5}", "3", False),
        ("\\boxed{x = 1 \\text{ or } x = 2}", "\\{1, 2\\}", True),
        ("\\boxed{x = 1, x = 6 = 2}", "\\{1, 2\\}", False),
    ],
)
def test_answer_shapes(completion: str, gold: str, expected: bool) -> None:
    assert finishes(verify, completion, gold, "auto", 10.0).correct is expected


@pytest.mark.parametrize(
    "completion, gold, expected, math_verify_says",
    [
        ("\\boxed{0.3333333}", "\\frac{1}{3}", False, True),  # decimals are exact, not rounded
        ("\\boxed{3} then \\boxed{5}", "5", True, False),  # only the last box is the answer
        ("\\boxed{6 = 7}", "7", False, True),  # a false equation is not its right-hand side
        ("\\boxed{5\\text{ cm}}", "5\\text{ m}", False, True),  # units are compared, not dropped
    ],
)
def test_deliberate_departures_from_math_verify(
    completion: str, gold: str, expected: bool, math_verify_says: bool
) -> None:
    from math_verify import parse
    from math_verify import verify as math_verify_verify

    assert math_verify_verify(parse(f"${gold}$"), parse(completion)) is math_verify_says
    assert verify(completion, gold).correct is expected


def test_timeout_kill_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=V.__name__):
        assert V._WORKER.check("9^{9^{9}}", "3", 0.5) is False
    assert any("slow-path check killed" in r.getMessage() for r in caplog.records)
