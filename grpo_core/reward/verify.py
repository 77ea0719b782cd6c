"""Rule-based outcome reward: pull the final answer out of a completion and compare it with gold.

This is the reward of outcome-supervised GRPO (DeepSeekMath, arXiv 2402.03300, Sec. 4.1.2). It runs
on every sampled completion, so it has to be fast, and it reads untrusted model text, so:

- Model text is never run as code. Answers are extracted with regexes and linear scans. Numbers are
  compared exactly with `fractions.Fraction`, built from digit strings a regex has already checked.
- Every call finishes in bounded time and never raises, whatever the string.

    verify("...\\nThe answer is 42", "42").correct                           # True
    verify("... so \\boxed{\\dfrac{1}{2}}.", "0.5").correct                   # True
    verify("#### 1,234", "1234", fmt="gsm8k").normalized                     # "1234"

Formats (`extract_answer`; "auto" tries them in this order), read by `grpo_core.reward.answer`, the
rules the data loaders and the synthetic task's step labels use too:
- boxed: the content of the last `\\boxed{...}` / `\\fbox{...}` (`answer.last_boxed`). If the last
  box is unclosed (a truncated completion) or empty, there is no answer; no earlier box is used.
- gsm8k: the number after the last `####` (`answer.last_gsm8k`).
- synthetic: the last line "The answer is N" (`answer.last_answer_line`).
Only the last MAX_SCAN_CHARS characters of a completion are read. Every format looks for the *last*
occurrence, and a longer tail would only cost time.

Equivalence (`is_equivalent`), cheapest first:
1. Fast path, no sympy. `normalize_answer` puts numbers in canonical form: integers, decimals,
   thousands separators, a/b, \\frac{a}{b}; `$`, `%`, degrees and a trailing `\\text{unit}` are
   stripped, following Hendrycks' `strip_string`. Canonical forms are "-3" and "1/2". Two numbers
   are equal exactly when their canonical strings are equal. If both sides are numbers, the
   answer is final. Other answers get a light cosmetic LaTeX normalisation and are compared as
   strings.
2. Slow path: math-verify (`parse` + `verify`), for symbolic and LaTeX answers (\\sqrt{2}, x^2+1,
   intervals, sets). Input is screened first: length, brace balance, nesting depth, exponent
   towers, `**` and large factorials are refused, and the result is False at once.

Departures from math-verify's own usage, and why:
- math-verify times out with `signal.alarm`, which works only in the main thread. The alarm takes
  whole seconds, and a Python signal handler cannot interrupt one long C-level operation, such as
  a big-integer power. Our trainer runs inside Prefect worker threads. So math-verify runs in one
  persistent child process (`python -P verify.py --slow-path-worker`, JSON lines over pipes), with
  its own timeouts turned off. The parent waits `timeout_s` of wall-clock time. On timeout it kills
  the child and starts a fresh one, and the answer is False. The child also has an address-space
  limit (WORKER_MEMORY_BYTES), so a huge number fails with MemoryError and does not swap.
- We use only `LatexExtractionConfig`, never `ExprExtractionConfig`. Every answer is wrapped as
  `\\boxed{answer}`. ExprExtractionConfig hands matched text to sympy's string parser (parse_expr,
  which calls Python's eval). Its regex only admits digits and operators, but we do not rely on
  that. On the LaTeX path, eval is reached in exactly one place. latex2sympy's `parse_number` and
  `convert_number` call `sympy.Number(text)`, and sympy's Number turns a string into a number with
  its string parser. That text is one lexer token. The grammar (PS.g4) defines NUMBER as
  `DIGIT+ | DIGIT* '.' DIGIT+` and E_NOTATION as `NUMBER E [+-]? DIGIT+`, so nothing but digits,
  '.', 'e'/'E', a sign and commas ever reaches it. Its other string parses, `parse_expr` of
  `variable_values`, are never given model text. The tests feed `__import__('os').system(...)`
  payloads through every format, as completion and as gold, and check that nothing ran.

Bounds: extraction and the fast path are linear in min(len(text), MAX_SCAN_CHARS). The slow path
takes at most `timeout_s` of computation. Two waits come on top. The first call, and the first call
after a timeout kill, waits for the child to start (0.3-0.7 s here; at most WORKER_STARTUP_S). Callers in
other threads queue for the one worker (at most LOCK_WAIT_S). Call `warm_up()` to pay the start-up
cost ahead of time. POSIX only: the pipes are read with `select`.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from grpo_core.reward.answer import last_answer_line, last_boxed, last_gsm8k

AnswerFormat = Literal["auto", "synthetic", "boxed", "gsm8k"]

MAX_SCAN_CHARS = 8192  # only the last 8 KB of a completion is searched for an answer
MAX_ANSWER_CHARS = 1024  # a longer extracted answer counts as unparseable (None)
MAX_NUMBER_DIGITS = 50  # fast path: longest digit run turned into a Fraction (decimals, a/b)
MAX_SLOW_CHARS = 512  # slow path: longer answers are refused (False)
MAX_NESTING = 32  # slow path: deepest {[( nesting accepted
MAX_EXPONENT_DIGITS = 4  # slow path: longest digit run inside an exponent (10^{9999} is fine)
MAX_FACTORIAL_DIGITS = 3  # slow path: 999! is fine, 10000! is refused
WORKER_STARTUP_S = 60.0  # longest wait for the child to import math-verify and report ready
LOCK_WAIT_S = 120.0  # longest wait for the single worker while another thread uses it
WORKER_MEMORY_BYTES = 4 << 30  # RLIMIT_AS of the child process

_FORMATS = ("auto", "synthetic", "boxed", "gsm8k")


@dataclass(frozen=True)
class Verdict:
    """The reward decision for one completion."""

    answer: str | None  # extracted raw answer text, None if no parseable final answer
    normalized: str | None  # canonical form used for equality and for majority voting (Maj@K)
    correct: bool


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------

_EXTRACTORS = {"boxed": last_boxed, "gsm8k": last_gsm8k, "synthetic": last_answer_line}


def extract_answer(text: str, fmt: AnswerFormat = "auto") -> str | None:
    """Return the final answer's raw text, or None if there is none (or it exceeds MAX_ANSWER_CHARS).

    "auto" tries boxed, then "####", then "The answer is". Only the last MAX_SCAN_CHARS characters
    of `text` are searched. Raises ValueError only for an unknown `fmt`.
    """
    if fmt not in _FORMATS:
        raise ValueError(f"unknown answer format {fmt!r}; expected one of {_FORMATS}")
    try:
        if not isinstance(text, str):
            return None
        tail = text[-MAX_SCAN_CHARS:]
        names = ("boxed", "gsm8k", "synthetic") if fmt == "auto" else (fmt,)
        for name in names:
            answer = _EXTRACTORS[name](tail) or None  # an empty box states nothing
            if answer is not None:
                return answer if len(answer) <= MAX_ANSWER_CHARS else None
        return None
    except Exception:  # never raise on model text
        return None


# --------------------------------------------------------------------------------------------
# Normalisation (fast path)
# --------------------------------------------------------------------------------------------

# Cosmetic LaTeX: spacing commands, \left/\right, \displaystyle (Hendrycks' strip_string).
_COSMETIC_RE = re.compile(
    r"\\[,;:! ]|\\q?quad(?![A-Za-z])|\\displaystyle(?![A-Za-z])|\\left(?![A-Za-z])|\\right(?![A-Za-z])"
)
_FRAC_ALIAS_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
# A trailing unit written as text: "5\text{ cm}", "5 \mbox{dollars}", "3\mathrm{m}".
_TEXT_UNIT_RE = re.compile(r"\\(?:text|mbox|mathrm|textrm)\{[A-Za-z][A-Za-z .]{0,40}\}$")
_SPACE_RE = re.compile(r"\s+")
_INT_RE = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)")
_DEC_RE = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d*)\.(\d+)")
_SLASH_FRAC_RE = re.compile(r"([+-]?)(\d+)/(\d+)")
_TEX_FRAC_RE = re.compile(r"([+-]?)\\frac\{([+-]?)(\d+)\}\{(\d+)\}")
_TEX_FRAC_SHORT_RE = re.compile(r"([+-]?)\\frac(\d)(\d)")  # \frac12


def _squeeze_spaces(s: str) -> str:
    """Drop whitespace, except one space between two letters (keeps `\\pi r` apart from `\\pir`)."""
    parts = _SPACE_RE.split(s)
    out = parts[0]
    for part in parts[1:]:
        if out and part and out[-1].isalpha() and part[0].isalpha():
            out += " "
        out += part
    return out


def _cosmetic(answer: str) -> str:
    """Meaning-preserving LaTeX cleanup shared by numbers and symbolic answers."""
    s = answer.strip()
    s = _COSMETIC_RE.sub(" ", s)
    s = _FRAC_ALIAS_RE.sub(r"\\frac", s)
    s = s.replace("\\$", "").replace("$", "")  # currency and math delimiters
    s = s.replace("\\%", "").replace("%", "")  # percentages compare as the bare number
    s = _DEGREE_RE.sub("", s)
    s = s.replace("{,}", ",")  # LaTeX thousands separator 1{,}234
    s = _squeeze_spaces(s)
    return s.rstrip(".")  # sentence-final period


def _numeric_canonical(s: str) -> str | None:
    """Canonical "p" or "p/q" if `s` (already cosmetic) is a plain rational number, else None."""
    unit = _TEXT_UNIT_RE.search(s)
    if unit is not None and unit.start() > 0:
        s = s[: unit.start()]
    if m := _INT_RE.fullmatch(s):  # any length: pure string work, no int conversion
        digits = m.group(2).replace(",", "").lstrip("0") or "0"
        return digits if m.group(1) != "-" or digits == "0" else "-" + digits
    value: Fraction | None = None
    if m := _DEC_RE.fullmatch(s):
        whole, frac = m.group(2).replace(",", ""), m.group(3)
        if len(whole) + len(frac) > MAX_NUMBER_DIGITS:
            return None
        value = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac), 10 ** len(frac))
        value = -value if m.group(1) == "-" else value
    elif (m := _SLASH_FRAC_RE.fullmatch(s)) or (m := _TEX_FRAC_SHORT_RE.fullmatch(s)):
        value = _fraction(m.group(1), "", m.group(2), m.group(3))
    elif m := _TEX_FRAC_RE.fullmatch(s):
        value = _fraction(m.group(1), m.group(2), m.group(3), m.group(4))
    return None if value is None else str(value)


def _fraction(sign_out: str, sign_in: str, num: str, den: str) -> Fraction | None:
    if len(num) > MAX_NUMBER_DIGITS or len(den) > MAX_NUMBER_DIGITS or int(den) == 0:
        return None
    negative = (sign_out == "-") != (sign_in == "-")
    return Fraction(-int(num) if negative else int(num), int(den))


def normalize_answer(answer: str) -> str | None:
    """Canonical form of an answer, used for equality and as the Maj@K vote key.

    Numbers map to "p" or "p/q" in lowest terms: "1,234" and "1234.0" -> "1234"; "0.5", "1/2" and
    "\\frac{1}{2}" -> "1/2"; "$5" -> "5"; "50%" -> "50" (the percent sign is stripped, as in
    Hendrycks' strip_string, so it never equals "0.5"). Any other answer gets a cosmetic LaTeX
    cleanup (spacing, \\left/\\right, \\dfrac -> \\frac, `$`, `%`, degrees). Equal canonical
    strings mean the same answer. Different strings may still be equal symbolically;
    `is_equivalent` checks that. None for empty answers or answers longer
    than MAX_ANSWER_CHARS.
    """
    try:
        if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
            return None
        s = _cosmetic(answer)
        if not s:
            return None
        return _numeric_canonical(s) or s
    except Exception:  # never raise on model text
        return None


# --------------------------------------------------------------------------------------------
# Slow path: input screening
# --------------------------------------------------------------------------------------------


def _operand_end(s: str, i: int) -> int:
    """End index of the exponent/argument starting at s[i]: a {group}, a \\command or an alnum run."""
    n = len(s)
    if i >= n:
        return i
    if s[i] == "{":
        depth = 0
        for j in range(i, n):
            depth += {"{": 1, "}": -1}.get(s[j], 0)
            if depth == 0:
                return j + 1
        return n
    if s[i] == "\\":
        j = i + 1
        while j < n and s[j].isalpha():
            j += 1
        return max(j, i + 2)
    j = i
    while j < n and (s[j].isalnum() or s[j] == "."):
        j += 1
    return max(j, i + 1)


def _longest_digit_run(s: str) -> int:
    best = run = 0
    for c in s:
        run = run + 1 if c.isdigit() else 0
        best = max(best, run)
    return best


def slow_path_rejection(answer: str) -> str | None:
    """Why `answer` must not reach math-verify, or None if it may. Linear in len(answer)."""
    if len(answer) > MAX_SLOW_CHARS:
        return "too long"
    if "**" in answer:
        return "python power operator"
    braces = depth = 0
    for c in answer:
        if c == "{":
            braces += 1
        elif c == "}":
            braces -= 1
            if braces < 0:
                return "unbalanced braces"
        if c in "{[(":
            depth += 1
            if depth > MAX_NESTING:
                return "nesting too deep"
        elif c in "}])":
            depth = max(depth - 1, 0)
    if braces != 0:
        return "unbalanced braces"
    for i, c in enumerate(answer):
        if c == "^":
            start = i + 1
            while start < len(answer) and answer[start] in " \t":
                start += 1
            end = _operand_end(answer, start)
            exponent = answer[start:end]
            if "^" in exponent or "!" in exponent:
                return "exponent tower"
            if _longest_digit_run(exponent) > MAX_EXPONENT_DIGITS:
                return "exponent too large"
            rest = answer[end:].lstrip(" \t")
            if rest.startswith("^"):
                return "exponent tower"
        elif c == "!" and i > 0 and not answer[i + 1 : i + 2] == "=":
            before = answer[:i].rstrip(" \t")
            if before.endswith((")", "}", "]")):
                return "factorial of an expression"
            j = len(before)
            while j > 0 and before[j - 1].isdigit():
                j -= 1
            if len(before) - j > MAX_FACTORIAL_DIGITS:
                return "factorial too large"
    return None


# --------------------------------------------------------------------------------------------
# Slow path: the child process
# --------------------------------------------------------------------------------------------


class _SlowPathWorker:
    """One persistent child process running math-verify. It is killed and restarted on timeout.

    Protocol (one line each way): the parent sends {"gold": str, "pred": str} as JSON and the
    child answers "1" or "0". The child writes "ready" once, after its imports.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False
        self._buffer = b""
        self.restarts = 0  # kills after a timeout or a broken pipe (for tests and logging)

    def _spawn(self) -> None:
        # The child imports grpo_core (for the answer rules), so it gets our package root on its path.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        self._proc = subprocess.Popen(
            [sys.executable, "-P", os.path.abspath(__file__), "--slow-path-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(paths)},
        )
        self._ready = False
        self._buffer = b""

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.kill()
            proc.wait(timeout=5.0)
        except Exception:
            pass
        for pipe in (proc.stdin, proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except Exception:
                pass

    def _restart(self) -> None:
        self._kill()
        self.restarts += 1
        self._spawn()  # eagerly: the child imports math-verify while the caller moves on

    def _read_line(self, deadline: float) -> bytes | None:
        """One line from the child, or None at the deadline or on EOF."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 4096)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _ensure_ready(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            self._kill()
            self._spawn()
        if not self._ready:
            line = self._read_line(time.monotonic() + WORKER_STARTUP_S)
            if line != b"ready":
                self._restart()
                return False
            self._ready = True
        return True

    def warm_up(self) -> bool:
        """Start the child and wait until it has imported math-verify."""
        if not self._lock.acquire(timeout=LOCK_WAIT_S):
            return False
        try:
            return self._ensure_ready()
        except Exception:
            self._restart()
            return False
        finally:
            self._lock.release()

    def check(self, pred: str, gold: str, timeout_s: float) -> bool:
        """math-verify's verdict, or False if it takes longer than `timeout_s` (child restarted)."""
        if timeout_s <= 0 or not self._lock.acquire(timeout=LOCK_WAIT_S):
            return False
        try:
            if not self._ensure_ready():
                return False
            assert self._proc is not None and self._proc.stdin is not None
            request = json.dumps({"gold": gold, "pred": pred}).encode() + b"\n"
            self._proc.stdin.write(request)
            self._proc.stdin.flush()
            line = self._read_line(time.monotonic() + timeout_s)
            if line not in (b"0", b"1"):
                self._restart()
                return False
            return line == b"1"
        except Exception:  # broken pipe, child crash: start over, count as wrong
            self._restart()
            return False
        finally:
            self._lock.release()

    def close(self) -> None:
        """Kill the child (at interpreter exit). Does not wait long for a thread mid-check."""
        locked = self._lock.acquire(timeout=1.0)
        try:
            self._kill()
        finally:
            if locked:
                self._lock.release()

    def forget_after_fork(self) -> None:
        """In a forked child: the pipes belong to the parent's worker, so start afresh."""
        self._lock = threading.Lock()
        self._proc = None
        self._ready = False
        self._buffer = b""


_WORKER = _SlowPathWorker()
atexit.register(_WORKER.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WORKER.forget_after_fork)


def warm_up() -> bool:
    """Optional: start the slow-path child now rather than on the first symbolic answer."""
    return _WORKER.warm_up()


def _slow_path_worker_main() -> None:
    """Child process loop: read JSON requests on stdin, answer "1"/"0" on stdout."""
    import logging
    import resource
    import signal
    from functools import lru_cache

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop (EOF or kill)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ValueError, OSError):
        pass
    # The protocol gets a private copy of fd 1; fd 1 itself (Python prints and C-level writes from
    # libraries alike) now goes to stderr, so nothing else can corrupt the protocol.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    from math_verify import LatexExtractionConfig, parse
    from math_verify import verify as math_verify_verify

    config = [LatexExtractionConfig()]

    @lru_cache(maxsize=1024)
    def parse_boxed(answer: str) -> list:
        # Timeouts off: the parent's wall clock bounds us (signal timeouts are no-ops here anyway).
        return parse("\\boxed{" + answer + "}", extraction_config=config, parsing_timeout=None)

    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            gold, pred = parse_boxed(request["gold"]), parse_boxed(request["pred"])
            ok = bool(gold) and bool(pred) and math_verify_verify(gold, pred, timeout_seconds=None)
        except Exception:
            ok = False
        out.write(b"1\n" if ok else b"0\n")
        out.flush()


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def is_equivalent(pred: str | None, gold: str, timeout_s: float = 2.0) -> bool:
    """Whether `pred` denotes the same answer as `gold`. Never raises.

    Fast path (exact, no sympy): canonical strings from `normalize_answer`. If both sides are
    plain numbers, that decides. Otherwise both answers are screened (`slow_path_rejection`) and
    math-verify decides in the child process within `timeout_s` seconds (False on timeout).
    """
    try:
        if not isinstance(pred, str) or not isinstance(gold, str):
            return False
        p, g = normalize_answer(pred), normalize_answer(gold)
        if p is None or g is None:
            return False
        if p == g:
            return True
        if _numeric_canonical(p) == p and _numeric_canonical(g) == g:
            return False  # two different exact rationals
        if slow_path_rejection(p) is not None or slow_path_rejection(g) is not None:
            return False
        return _WORKER.check(p, g, timeout_s)
    except Exception:  # never raise on model text
        return False


def verify(
    completion: str, gold: str, fmt: AnswerFormat = "auto", timeout_s: float = 2.0
) -> Verdict:
    """Extract the final answer from `completion` and compare it with `gold` (the reward).

    Raises ValueError only for an unknown `fmt`. Any string gives a Verdict.
    """
    answer = extract_answer(completion, fmt)
    try:
        normalized = normalize_answer(answer) if answer is not None else None
        return Verdict(answer, normalized, is_equivalent(answer, gold, timeout_s))
    except Exception:  # never raise on model text
        return Verdict(answer, None, False)


if __name__ == "__main__" and sys.argv[1:] == ["--slow-path-worker"]:
    _slow_path_worker_main()
