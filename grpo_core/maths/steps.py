"""Reasoning steps of a completion and the token that ends each one.

Process supervision (DeepSeekMath Sec. 4.1.3) scores each step and gives every
token the sum of the normalised scores of the steps ending at or after it, so
it needs, for each step j, index(j): the position in the completion's token ids
of the step's last token. `step_token_ends` computes that index:

  - a step closed by a delimiter ends at the token holding the delimiter's last
    character (that token may also hold text of both steps, e.g. "5\\nThe");
  - the last step without a trailing delimiter ends at the last token carrying
    any of its characters;
  - a token holding only part of a multi-byte character (byte-level BPE) does
    not finish it: the character belongs to the token holding its last byte;
  - special tokens (EOS, pad, ...) carry no text and never end a step.

Character offsets come from incremental decoding over a short sliding window
of tokens (as vLLM's incremental detokenizer does), so any tokenizer with
`decode` works and the cost is O(T * window), not O(T^2).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

WINDOW = 16  # tokens decoded together at most (plus pending partial characters) before sliding
_PARTIAL = "\ufffd"  # what decoders emit for an incomplete UTF-8 sequence at the end


def split_steps(text: str, delimiter: str = "\n") -> list[str]:
    """The pieces of `text` between delimiters, in order, whitespace-only pieces dropped.

    Pieces are kept verbatim (not stripped), so each is a substring of `text`.
    """
    return [piece for _, piece in _step_spans(text, delimiter)]


@dataclass(frozen=True)
class StepSpans:
    """Steps of a decoded completion and, per step, the index of its last token."""

    steps: list[str]
    ends: list[int]  # ends[j]: index into token_ids of the token that ends step j; non-decreasing


def _step_spans(text: str, delimiter: str) -> list[tuple[int, str]]:
    """(index of the step's last character, incl. its closing delimiter; step text) per step."""
    if not delimiter:
        raise ValueError("the step delimiter must be non-empty")
    pieces = text.split(delimiter)
    spans: list[tuple[int, str]] = []
    start = 0
    for k, piece in enumerate(pieces):
        stop = start + len(piece)
        if piece.strip():
            closed = k < len(pieces) - 1
            spans.append((stop + len(delimiter) - 1 if closed else stop - 1, piece))
        start = stop + len(delimiter)
    return spans


def _decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """Plain decoding: no special-token skipping, no clean-up of spaces."""

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    return decode


def token_char_ends(token_ids: Sequence[int], decode: Callable[[list[int]], str]) -> tuple[str, list[int]]:
    """Decode incrementally: return (text, cum) with cum[i] = len(text decoded through token i).

    Each window decode starts at an already-emitted token, and new text is the
    difference between two decodes sharing that start, so start-of-text effects
    (SentencePiece dropping the first space, WordPiece "##") cancel. Trailing
    U+FFFD marks a partial character: it is emitted by the token that completes
    it (or, if it never completes, by the last token).
    """
    parts: list[str] = []
    cum: list[int] = []
    n_chars = 0
    ctx = 0  # first token of the decode window
    emitted = 0  # characters of decode(ids[ctx:i]) already emitted
    last_clean = 0  # last boundary where the decoded text ended on a whole character
    window = ""
    ids = list(token_ids)
    for i in range(len(ids)):
        window = decode(ids[ctx : i + 1])
        complete = len(window.rstrip(_PARTIAL))
        if complete > emitted:
            parts.append(window[emitted:complete])
            n_chars += complete - emitted
            emitted = complete
        cum.append(n_chars)
        if complete == len(window):
            if i + 1 - ctx >= WINDOW:  # slide, keeping the last whole-character chunk as context
                ctx = last_clean
                window = decode(ids[ctx : i + 1])
                emitted = len(window)
            last_clean = i + 1
    if len(window) > emitted:  # invalid bytes at the very end: give them to the last token
        parts.append(window[emitted:])
        cum[-1] += len(window) - emitted
    return "".join(parts), cum


def step_token_ends(token_ids: Sequence[int], tokenizer: Any, delimiter: str = "\n") -> StepSpans:
    """Split the decoded completion into steps and find each step's last token.

    `token_ids`: the completion only (no prompt), possibly ending in EOS/pad.
    `tokenizer`: anything with `decode(ids, skip_special_tokens=..., clean_up_tokenization_spaces=...)`
    and `all_special_ids` (a transformers tokenizer). Steps are
    `split_steps(text, delimiter)` of the decoded text without special tokens.
    """
    special = set(getattr(tokenizer, "all_special_ids", ()))
    keep = [i for i, t in enumerate(token_ids) if int(t) not in special]  # positions carrying text
    text, cum = token_char_ends([int(token_ids[i]) for i in keep], _decoder(tokenizer))
    spans = _step_spans(text, delimiter)
    # The token ending a step is the first whose cumulative text passes the step's last character.
    ends = [keep[bisect_right(cum, last_char)] for last_char, _ in spans]
    return StepSpans(steps=[step for _, step in spans], ends=ends)
