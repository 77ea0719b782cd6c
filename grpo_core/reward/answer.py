"""Where a text states its final answer: the one set of extraction rules for data, labels and reward.

The MATH loader (gold answers), the synthetic task (exact step labels) and the verifier (the reward)
all read answers through these functions, so a string that one of them reads as "answer 5" is read
as "answer 5" by all of them. Only `re` is imported: `grpo_core.data` depends on this module, and
this module depends on nothing in the package.

Rules:
- `last_boxed`: the content of the last `\\boxed` or `\\fbox` command (not `\\boxedx`). Spaces may
  come between the command and its `{` (`\\boxed {5}` gives "5"). Braces are counted up to the one
  that closes the box; a backslash escapes the next character, so `\\{` and `\\}` are literal braces
  that neither open nor close (`\\boxed{a\\}b}` gives "a\\}b") and `\\\\` is a LaTeX row break.
  Without a brace, `\\boxed 5` takes the text up to the next `$` or end of line, as Hendrycks et
  al.'s `last_boxed_only_string` (MATH) does. If the last box is never closed (a truncated
  completion), the result is None: an earlier box is not used. The content is stripped; an empty
  box gives "" (callers tell "no box" from "empty box").
- `answer_line` / `last_answer_line`: the synthetic task's final line "The answer is N". N is an
  integer in ASCII digits with an optional minus; any run of spaces or tabs may come before "The"
  and before N ("The answer is  5" states 5), and a period and spaces or tabs may follow. The line
  must hold nothing else.
- `last_gsm8k`: the number after the last `####`, GSM8K's answer marker (the official grader reads
  `#### (\\-?[0-9\\.\\,]+)`); a `$` may come before the number, and a trailing comma is dropped.
Digits are ASCII only everywhere (`[0-9]`, not `\\d`): `int()` accepts other scripts' digits, and
a reading that differed between the step labels and the reward would make them disagree.
"""

from __future__ import annotations

import re

ANSWER_PREFIX = "The answer is "  # how the synthetic task's gold solutions state the answer

_ANSWER_LINE = r"[ \t]*" + re.escape(ANSWER_PREFIX.rstrip()) + r"[ \t]+(-?[0-9]+)[ \t]*\.?[ \t]*\r?"
_ANSWER_LINE_RE = re.compile(_ANSWER_LINE)
# `[ \t]*` rather than `\s*`: with MULTILINE, `^\s*` would rescan runs of newlines (quadratic).
_LAST_ANSWER_LINE_RE = re.compile(f"^{_ANSWER_LINE}$", re.MULTILINE)
_GSM8K_RE = re.compile(r"####[ \t]*(-?[ \t]*(?:\\?\$)?[ \t]*-?(?:[0-9][0-9,]*(?:\.[0-9]+)?|\.[0-9]+))")
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    match = None
    for match in pattern.finditer(text):
        pass
    return match


def answer_line(line: str) -> str | None:
    """N if `line` is "The answer is N", else None. Line breaks around it are ignored (a step
    split on a delimiter other than a newline may keep some)."""
    match = _ANSWER_LINE_RE.fullmatch(line.strip("\r\n"))
    return match.group(1) if match else None


def last_answer_line(text: str) -> str | None:
    """N of the last line of `text` that is "The answer is N", else None. Linear in len(text)."""
    match = _last_match(_LAST_ANSWER_LINE_RE, text)
    return match.group(1) if match else None


def last_gsm8k(text: str) -> str | None:
    """The number after the last `####` in `text` (as written, commas kept), else None."""
    match = _last_match(_GSM8K_RE, text)
    return match.group(1).rstrip(",") if match else None


def last_boxed(text: str) -> str | None:
    """Stripped content of the last `\\boxed{...}` / `\\fbox{...}`; None if absent or unclosed.

    Linear in len(text): one regex scan for the last command, one scan for its closing brace.
    """
    match = _last_match(_BOXED_RE, text)
    if match is None:
        return None
    i, n = match.end(), len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] != "{":  # "\boxed 5$" form
        end = i
        while end < n and text[end] not in "$\n":
            end += 1
        return text[i:end].strip()
    depth, j = 0, i
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2  # an escaped character: \{ \} \\ never count
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip()
        j += 1
    return None
