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

What an answer states (`_read`, `is_equivalent`); an answer that states several different
values is wrong:
- a value: "5", "\\frac{1}{2}", "\\{1, 2\\}", "[1, 3)", "(2, -1)", a matrix. A list "1, 2" is a set
  or tuple of values (math-verify compares it), never one of its items: "3, 5" is wrong for 3.
- an assignment: a name ("x", "a_1", "f(3)", "\\theta", "\\angle ABC") then `=` or `\\in`, then the
  value: "x = 5" states 5, and a gold "y = 2x+3" is the value 2x+3.
- a chain: every member is stated, so every member must equal the gold. "\\frac{10}{2} = 5" is right
  for 5; "6 = 7" and "1=2=...=40" are wrong for 7 and 40.
- an equation between expressions in the gold ("x^2+y^2=1"): the prediction must be an equation
  too; the two are compared whole.
- a list of assignments ("x = 1, y = 2", "x = 1 or x = 2"): read whole; an item that is a chain or
  an equation between values makes the answer ill-formed (wrong).
- units (`_split_unit`): a leading `\\$`, a trailing `%`/`\\%`/"percent"/"pct", a degree sign, a
  `\\text{...}` unit or a unit word after a number. When both sides state a unit, the units must be
  the same (after spelling out abbreviations and plurals: "cm" is "centimeters"), so "5 cm" is
  not "5 m"; a unit on one side only is accepted. Units are never converted. A percentage p%
  equals p and p/100 (28% matches 28 and 0.28).
Numbers (`normalize_answer`) are exact: integers of any length, decimals, a/b, \\frac{a}{b}, with
thousands written 1,234 / 1{,}234 / 1\\,234 / 1 234. The first group has no leading zero
(0,111 and 004,004 are lists), a comma followed by a space separates list items ("32, 349"),
and there is no decimal comma or European 1.234.567. Values that are not both numbers are
compared as cosmetically cleaned strings, then by math-verify (`parse` + `verify`) on the value
as written, unit removed (not on a normalised form, which would lose information). math-verify
is screened first (`slow_path_rejection`): length, brace balance, nesting depth, group count,
exponent towers, `**` and large factorials are refused, and the result is False at once.

Where the verdicts deliberately differ from math-verify called directly, and why:
- Decimals are exact: "0.3333333" is not 1/3 (math-verify rounds floats and says it is).
- Only the last `\\boxed{}` is the answer (math-verify joins every box of a completion into a set).
- A chain or false equation is not its right-hand side ("6 = 7" is not 7; math-verify takes 7).
- Units are compared when both sides state one ("5 cm" is not "5 m"; math-verify drops units).
- "1\\,234" and "1 234" are 1234 (math-verify adds the groups).

Departures from math-verify's own usage, and why:
- math-verify times out with `signal.alarm`, which works only in the main thread. The alarm takes
  whole seconds, and a Python signal handler cannot interrupt one long C-level operation, such as
  a big-integer power. Our trainer runs inside Prefect worker threads. So math-verify runs in one
  persistent child process (`python -P verify.py --slow-path-worker`, JSON lines over pipes), with
  its own timeouts turned off. Which answers it judges is decided by `slow_path_rejection`'s
  limits, which keep every check far inside the wall-clock guard, so a verdict does not depend on
  machine load. The parent still waits at most `timeout_s` (DEFAULT_TIMEOUT_S) as a last resort; if
  that fires it logs a warning, kills the child, starts a fresh one, and the answer is False. The
  child also has an address-space limit (WORKER_MEMORY_BYTES), so a huge number fails with
  MemoryError and does not swap.
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

Bounds: extraction and reading are linear in min(len(text), MAX_SCAN_CHARS). The slow path
takes at most `timeout_s` of computation. Two waits come on top. The first call, and the first call
after a timeout kill, waits for the child to start (at most WORKER_STARTUP_S). Callers in
other threads queue for the one worker (at most LOCK_WAIT_S). Call `warm_up()` to pay the start-up
cost ahead of time. POSIX only: the pipes are read with `select`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import re
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Literal

from grpo_core.reward.answer import last_answer_line, last_boxed, last_gsm8k

AnswerFormat = Literal["auto", "synthetic", "boxed", "gsm8k"]

MAX_SCAN_CHARS = 8192  # only the last 8 KB of a completion is searched for an answer
MAX_ANSWER_CHARS = 1024  # a longer extracted answer counts as unparseable (None)
MAX_NUMBER_DIGITS = 50  # fast path: longest digit run turned into a Fraction (decimals, a/b)
MAX_SLOW_CHARS = 512  # slow path: longer answers are refused (False)
MAX_NESTING = 6  # slow path: deepest {[( nesting accepted
MAX_GROUPS = 64  # slow path: most {[( groups in one answer
MAX_EXPONENT_DIGITS = 4  # slow path: longest digit run inside an exponent (10^{9999} is fine)
MAX_FACTORIAL_DIGITS = 3  # slow path: 999! is fine, 10000! is refused
DEFAULT_TIMEOUT_S = 10.0  # last-resort wall-clock guard per slow-path check (logged when it fires)
WORKER_STARTUP_S = 60.0  # longest wait for the child to import math-verify and report ready
LOCK_WAIT_S = 120.0  # longest wait for the single worker while another thread uses it
WORKER_MEMORY_BYTES = 4 << 30  # RLIMIT_AS of the child process

_FORMATS = ("auto", "synthetic", "boxed", "gsm8k")
_LOG = logging.getLogger(__name__)


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
# Reading an answer: cosmetic LaTeX, numbers, units, and which values it states
# --------------------------------------------------------------------------------------------

# `\\` (a row break) is matched first, so `\\ ` and `\\,` keep both of its backslashes.
_SPACING_RE = re.compile(r"\\\\|\\[,;:! ]|\\q?quad(?![A-Za-z])|~")
_DROP_RE = re.compile(r"\\displaystyle(?![A-Za-z])|\\left(?![A-Za-z])|\\right(?![A-Za-z])")
_FRAC_ALIAS_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")
# Thousands: 1,234,567 or 1 234 567 (`\,` has become a space). The first group has no leading
# zero, so 0,111 and 004,004 are lists. A plain run of digits may have leading zeros (007 is 7).
_GROUPED = r"[1-9][0-9]{0,2}(?:,[0-9]{3})+|[1-9][0-9]{0,2}(?: [0-9]{3})+|[0-9]+"
_DECIMAL_RE = re.compile(rf"([+-]?) ?({_GROUPED}|)(?:\.([0-9]+))?")
_SLASH_FRAC_RE = re.compile(r"([+-]?)([0-9]+)/([0-9]+)")
_TEX_FRAC_RE = re.compile(r"([+-]?)\\frac\{([+-]?)([0-9]+)\}\{([0-9]+)\}")
_TEX_FRAC_SHORT_RE = re.compile(r"([+-]?)\\frac([0-9])([0-9])")  # \frac12

_PERCENT = "percent"
_POWER = r"(?:\^\{?[23]\}?)?"
_PERCENT_RE = re.compile(r"(?:\\%|%)$")
_DEGREE_RE = re.compile(r"(?:\^\s*\{?\s*\\circ\s*\}?|\\circ|°)$")
_TEXT_UNIT_RE = re.compile(rf"\\(?:text|mbox|mathrm|textrm)\s*\{{([^{{}}]*)\}}\s*({_POWER})$")
_WORD_UNIT_RE = re.compile(
    rf"(?<![\\A-Za-z])([A-Za-z]{{2,}}(?:[ /][A-Za-z]{{2,}}){{0,2}}|[mgshL])({_POWER})$"
)
_UNIT_ALIASES = {
    "%": _PERCENT, "\\%": _PERCENT, "pct": _PERCENT, "percentage": _PERCENT, "°": "degree",
    "\\circ": "degree", "deg": "degree", "usd": "dollar", "cm": "centimeter", "centimetre": "centimeter",
    "m": "meter", "metre": "meter", "km": "kilometer", "kilometre": "kilometer", "mm": "millimeter",
    "millimetre": "millimeter", "in": "inch", "ft": "foot", "feet": "foot", "yd": "yard",
    "mi": "mile", "g": "gram", "kg": "kilogram", "lb": "pound", "lbs": "pound", "oz": "ounce",
    "s": "second", "sec": "second", "secs": "second", "min": "minute", "mins": "minute",
    "h": "hour", "hr": "hour", "hrs": "hour", "l": "liter", "litre": "liter", "ml": "milliliter",
    "millilitre": "milliliter", "sq": "square", "per": "/",
}
_UNIT_TOKEN_RE = re.compile(r"[a-z]+|\\%|\\circ|[^a-z\s]")
_KNOWN_UNITS = frozenset(w for w in _UNIT_ALIASES if w.isalpha() and len(w) > 1) | frozenset(
    v for v in _UNIT_ALIASES.values() if v.isalpha()
)

# What separates the members of an equation or chain, and the items of a list.
_EQUALS_RE = re.compile(r":=|(?<![<>!=:])==?|\\in(?![A-Za-z])")
_LIST_SEP_RE = re.compile(r",|;|\\(?:text|mbox)\s*\{\s*(?:or|and)\s*\}|\s(?:or|and)\s")
_PLAIN_INTEGER_RE = re.compile(r"[+-]?[0-9]{1,50}")
_COMMAND_RE = re.compile(r"\\(?:[A-Za-z]+|.)", re.DOTALL)
_GREEK = (
    "alpha|beta|gamma|delta|epsilon|varepsilon|zeta|eta|theta|vartheta|iota|kappa|lambda|mu|nu|"
    "xi|pi|rho|sigma|tau|upsilon|phi|varphi|chi|psi|omega|Gamma|Delta|Theta|Lambda|Xi|Pi|Sigma|"
    "Phi|Psi|Omega"
)
# A name that an answer may assign to: x, x_1, a_{n}, f(x), P(A), \theta, y', \angle ABC.
_NAME_RE = re.compile(
    rf"(?:[A-Za-z]|\\(?:{_GREEK}))(?:_(?:\{{[A-Za-z0-9,]*\}}|[A-Za-z0-9]))?'*(?:\([^()=]*\))?"
    r"|(?:m\s*)?\\angle\s*[A-Z]{1,3}"
)


@dataclass(frozen=True)
class _Value:
    """One value an answer states."""

    text: str  # as written, unit and `$` removed: what math-verify reads
    clean: str  # cosmetic, spaces squeezed: compared as a string
    number: str | None  # canonical "p" or "p/q" when a plain rational number
    unit: str | None  # canonical unit ("centimeter", "percent", "dollar"), None if none stated


@dataclass(frozen=True)
class _Statement:
    """What an answer states: one value, or several the answer claims are equal."""

    members: tuple[_Value, ...]  # more than one: a chain, or an equation between expressions
    raw: str


def _squeeze_spaces(s: str) -> str:
    """Drop whitespace, except one space between two letters or two digits (`\\pi r`, `2 3`)."""
    parts = s.split()
    out = parts[0] if parts else ""
    for part in parts[1:]:
        a, b = out[-1], part[0]
        if (a.isalpha() and b.isalpha()) or (a.isdigit() and b.isdigit()):
            out += " "
        out += part
    return out


def _cosmetic(answer: str) -> str:
    """Meaning-preserving LaTeX cleanup; whitespace runs become one space (numbers need them)."""
    s = _SPACING_RE.sub(lambda m: m.group() if m.group() == "\\\\" else " ", answer)
    s = _DROP_RE.sub(" ", s)
    s = _FRAC_ALIAS_RE.sub(r"\\frac", s)
    s = s.replace("\\$", "").replace("$", "").replace("{,}", ",")  # currency, delimiters, 1{,}234
    return " ".join(s.split()).rstrip(".").rstrip()  # a sentence-final period


def _fraction(sign_out: str, sign_in: str, num: str, den: str) -> Fraction | None:
    if len(num) > MAX_NUMBER_DIGITS or len(den) > MAX_NUMBER_DIGITS or int(den) == 0:
        return None
    negative = (sign_out == "-") != (sign_in == "-")
    return Fraction(-int(num) if negative else int(num), int(den))


def _numeric_canonical(s: str) -> str | None:
    """Canonical "p" or "p/q" if `s` (already cosmetic) is a plain rational number, else None."""
    if (m := _DECIMAL_RE.fullmatch(s)) and (m.group(2) or m.group(3)):
        whole = m.group(2).replace(",", "").replace(" ", "")
        if m.group(3) is None:  # an integer of any length: pure string work, no int()
            digits = whole.lstrip("0") or "0"
            return digits if m.group(1) != "-" or digits == "0" else "-" + digits
        frac = m.group(3)
        if len(whole) + len(frac) > MAX_NUMBER_DIGITS:
            return None
        value = Fraction(int(whole or "0") * 10 ** len(frac) + int(frac), 10 ** len(frac))
        return str(-value if m.group(1) == "-" else value)
    squeezed = s.replace(" ", "")
    value: Fraction | None = None
    if (m := _SLASH_FRAC_RE.fullmatch(squeezed)) or (m := _TEX_FRAC_SHORT_RE.fullmatch(squeezed)):
        value = _fraction(m.group(1), "", m.group(2), m.group(3))
    elif m := _TEX_FRAC_RE.fullmatch(squeezed):
        value = _fraction(m.group(1), m.group(2), m.group(3), m.group(4))
    return None if value is None else str(value)


def _unit_name(text: str) -> str | None:
    """Canonical unit: lower case, singular, abbreviations spelled out; None if `text` is blank."""
    words = []
    for word in _UNIT_TOKEN_RE.findall(text.lower()):
        if word.isalpha() and word not in _UNIT_ALIASES:
            if word.endswith(("ches", "shes", "xes")):
                word = word[:-2]
            elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
                word = word[:-1]
        words.append(_UNIT_ALIASES.get(word, word))
    if len(words) > 1 and words[0] in ("square", "cubic"):  # "square units" is "units^2"
        words = words[1:] + ["^", "2" if words[0] == "square" else "3"]
    name = " ".join(w for w in words if w not in "{}")
    return name.replace(" ^ ", "^").replace(" / ", "/") or None


def _split_unit(text: str) -> tuple[str, str | None]:
    """(value, canonical unit) of one value's text; the unit is None if none is stated.

    A unit is a leading `\\$`, or a trailing `%`, degree sign after a number, `\\text{...}`
    (optionally squared or cubed), or a plain unit word after a number: any word after a space
    ("28 percent", "5 apples"), or a known abbreviation right after the digits ("5cm"). Only text
    before the unit counts as the value, and a value is never empty (`\\text{(B)}` is an answer, not a unit).
    """
    s = text.strip()
    unit: str | None = None
    if s.startswith("\\$"):
        s, unit = s[2:].lstrip(), "dollar"
    for pattern in (_PERCENT_RE, _DEGREE_RE, _TEXT_UNIT_RE, _WORD_UNIT_RE):
        m = pattern.search(s)
        value = s[: m.start()].rstrip() if m else ""
        if not value:
            continue
        if pattern is _PERCENT_RE:
            return value, _PERCENT
        if pattern is _DEGREE_RE:
            if _numeric_canonical(_cosmetic(value)) is None:
                continue  # \sin 30^\circ: the degree sign belongs to the argument
            return value, "degree"
        name = _unit_name(m.group(1) + m.group(2))
        if pattern is _WORD_UNIT_RE:
            spaced = value != s[: m.start()]
            first = m.group(1).split()[0].split("/")[0].lower()
            if _numeric_canonical(_cosmetic(value)) is None or not (spaced or first in _KNOWN_UNITS):
                continue
        return value, name or unit
    return s, unit


def _top_level_split(s: str, sep: re.Pattern[str]) -> list[str]:
    """`s` split at matches of `sep` outside brackets, braces and environments. Linear in len(s)."""
    parts: list[str] = []
    depth = start = i = 0
    while i < len(s):
        if depth == 0 and (m := sep.match(s, i)) and m.end() > i:
            parts.append(s[start:i])
            start = i = m.end()
            continue
        c = s[i]
        if c == "\\":
            command = _COMMAND_RE.match(s, i)
            name = command.group() if command else c
            if name in ("\\begin", "\\{"):
                depth += 1
            elif name in ("\\end", "\\}"):
                depth = max(depth - 1, 0)
            i += len(name)
            continue
        if c in "{[(":
            depth += 1
        elif c in "}])":
            depth = max(depth - 1, 0)
        i += 1
    parts.append(s[start:])
    return parts


def _value(text: str) -> _Value:
    value, unit = _split_unit(text)
    value = value.replace("\\$", "").replace("$", "").strip()
    clean = _cosmetic(value)
    return _Value(value, _squeeze_spaces(clean), _numeric_canonical(clean), unit)


@lru_cache(maxsize=4096)  # gold answers repeat across a group's completions
def _read(answer: str) -> _Statement | None:
    """The values `answer` states, or None if it states no well-formed answer.

    - "x = 5", "f(2) = 5", "x \\in [1, 2]": a name then one value; the value is the answer.
    - "\\frac{10}{2} = 5", "6 = 7": a chain; every member is a value the answer states.
    - "x = 1, y = 2", "x = 1 or x = 2": a list of assignments, read whole (math-verify compares
      it); an item that is itself a chain or an equation between values makes it ill-formed.
    - "=5", "x =": ill-formed.
    """
    raw = answer.strip()
    if _PLAIN_INTEGER_RE.fullmatch(raw):  # the common case, read without scanning
        clean = raw.lstrip("+")
        return _Statement((_Value(raw, clean, _numeric_canonical(clean), None),), raw)
    items = _top_level_split(raw, _LIST_SEP_RE)
    if len(items) > 1:
        split_items = [_top_level_split(item, _EQUALS_RE) for item in items]
        if any(len(parts) > 1 for parts in split_items):
            for parts in split_items:
                if len(parts) > 2 or (len(parts) == 2 and not _NAME_RE.fullmatch(parts[0].strip())):
                    return None
            return _Statement((_value(raw),), raw)
    members = [m.strip() for m in _top_level_split(raw, _EQUALS_RE)]
    if not all(members):
        return None
    if len(members) > 1 and _NAME_RE.fullmatch(members[0]):
        members = members[1:]
    return _Statement(tuple(_value(m) for m in members), raw)


def normalize_answer(answer: str) -> str | None:
    """Canonical form of an answer, the Maj@K vote key: equal keys mean the same answer.

    A number maps to "p" or "p/q" in lowest terms: "1,234", "1 234", "1\\,234" and "1234.0" ->
    "1234"; "0.5", "1/2" and "\\frac{1}{2}" -> "1/2". A stated unit follows after a space, in
    canonical form: "50\\%" -> "50 percent", "5\\text{ cm}" -> "5 centimeter", "\\$5" -> "5 dollar".
    An assignment keeps its value ("x = 5" -> "5"). Any other answer gets a cosmetic LaTeX cleanup
    (spacing, \\left/\\right, \\dfrac -> \\frac, `$`). Different keys may still be equivalent
    ("50\\%" and "50"); `is_equivalent` decides that. None for an empty or ill-formed answer or
    one longer than MAX_ANSWER_CHARS.
    """
    try:
        if not isinstance(answer, str) or len(answer) > MAX_ANSWER_CHARS:
            return None
        statement = _read(answer)
        if statement is None:
            return None
        if len(statement.members) > 1:
            return _squeeze_spaces(_cosmetic(statement.raw)) or None
        value = statement.members[0]
        key = value.number or value.clean
        if not key:
            return None
        return f"{key} {value.unit}" if value.unit else key
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
    """Why `answer` must not reach math-verify, or None if it may. Linear in len(answer).

    These limits, not the wall clock, decide which answers math-verify judges: any answer within
    them is parsed and compared well inside DEFAULT_TIMEOUT_S even on a loaded machine, so the
    same input gets the same verdict however busy the machine is. Bracket nesting is the limit
    that matters most: latex2sympy's parse time grows steeply with the depth of bare groups.
    """
    if len(answer) > MAX_SLOW_CHARS:
        return "too long"
    if "**" in answer:
        return "python power operator"
    braces = depth = groups = 0
    for c in answer:
        if c == "{":
            braces += 1
        elif c == "}":
            braces -= 1
            if braces < 0:
                return "unbalanced braces"
        if c in "{[(":
            depth += 1
            groups += 1
            if depth > MAX_NESTING:
                return "nesting too deep"
            if groups > MAX_GROUPS:
                return "too many groups"
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
                _LOG.warning(
                    "slow-path check killed after %.1f s (%s); scored False: pred=%r gold=%r",
                    timeout_s, "timeout" if line is None else "bad reply", pred[:200], gold[:200],
                )
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
    import resource
    import signal

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


def _same_value(pred: _Value, gold: _Value, timeout_s: float) -> bool:
    """Whether two stated values are equal: units first, then exact numbers, then math-verify."""
    if pred.unit and gold.unit and pred.unit != gold.unit:
        return False  # "5 cm" is not "5 m"; "28 cm" is not "28%"
    scales = [(1, 1)]  # (a, b): a * pred == b * gold
    if (pred.unit == _PERCENT) != (gold.unit == _PERCENT):  # 28% is 28 and also 0.28
        scales.append((1, 100) if pred.unit == _PERCENT else (100, 1))
    if pred.number is not None and gold.number is not None:
        p, g = Fraction(pred.number), Fraction(gold.number)
        return any(a * p == b * g for a, b in scales)
    if not pred.clean or not gold.clean:
        return False
    if pred.clean == gold.clean:
        return True
    if slow_path_rejection(pred.text) is not None or slow_path_rejection(gold.text) is not None:
        return False
    return _WORKER.check(pred.text, gold.text, timeout_s)


def is_equivalent(pred: str | None, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Whether `pred` states the same answer as `gold`. Never raises.

    Both are read into the values they state (`_read`). If gold states one value, every value
    pred states must equal it: "x = 5" and "\\frac{10}{2} = 5" state 5, "6 = 7" states 6 and 7
    and is wrong for gold 7. If gold is an equation between expressions ("x + y = 5"), pred must be
    an equation too and the two are compared whole. Values are compared by unit, then exactly
    when both are plain numbers (`normalize_answer`), then as strings, then by math-verify in the
    child process on the text as written (screened by `slow_path_rejection`).
    """
    try:
        if not isinstance(pred, str) or not isinstance(gold, str):
            return False
        if len(pred) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
            return False
        p, g = _read(pred), _read(gold)
        if p is None or g is None:
            return False
        if len(g.members) > 1:
            return len(p.members) > 1 and _same_value(_value(p.raw), _value(g.raw), timeout_s)
        return all(_same_value(member, g.members[0], timeout_s) for member in p.members)
    except Exception:  # never raise on model text
        return False


def verify(
    completion: str, gold: str, fmt: AnswerFormat = "auto", timeout_s: float = DEFAULT_TIMEOUT_S
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
