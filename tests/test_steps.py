"""Step splitting and step-end token indices, on byte-level, char-level and Metaspace tokenizers."""

from __future__ import annotations

import random
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from grpo_core.maths.steps import WINDOW, StepSpans, split_steps, step_token_ends

CORPUS = [
    "5 + 3 = 8\nThe answer is 8\n",
    "12 * 2 = 24\n24 - 4 = 20\nThe answer is 20",
    "Café crème: 3 € each\n3 * 2 = 6 €\n\nThe answer is 6",
    "日本語の問題\n2 + 2 = 4\nThe answer is 4\n\n",
]
CHARS = sorted(set("".join(CORPUS)))


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


@cache
def byte_bpe() -> PreTrainedTokenizerFast:
    """Byte-level BPE without the regex pre-split, so merges cross newlines and split characters."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return _wrap(tok)


@cache
def char_level() -> PreTrainedTokenizerFast:
    """One token per character, concatenated back by the Fuse decoder."""
    vocab = {"<eos>": 0, "<pad>": 1, "<unk>": 2} | {ch: i + 3 for i, ch in enumerate(CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return _wrap(tok)


@cache
def metaspace_bpe() -> PreTrainedTokenizerFast:
    """SentencePiece-style: spaces become '▁' and the decoder drops the first one."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<eos>", "<pad>", "<unk>"],
        initial_alphabet=CHARS + ["▁"],
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return _wrap(tok)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (openai/gpt-2 src/encoder.py), used by ByteLevel."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    for b in range(256):
        if b not in bs:  # unprintable bytes map to 256, 257, ... in order
            bs.append(b)
            cs.append(256 + len(bs) - 189)
    return dict(zip(bs, map(chr, cs), strict=True))


def hand_bytes(*pieces: bytes) -> tuple[PreTrainedTokenizerFast, list[int]]:
    """A byte-level tokenizer whose vocabulary holds the 256 bytes plus `pieces`, and the
    ids of `pieces` in order: token boundaries chosen by hand, decoded by the ByteLevel decoder."""
    to_char = bytes_to_unicode()  # byte -> printable char, as GPT-2 stores byte-level tokens
    tokens = ["".join(to_char[b] for b in piece) for piece in pieces]
    vocab = {"<eos>": 0, "<pad>": 1} | {ch: i + 2 for i, ch in enumerate(to_char.values())}
    for t in tokens:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.BPE(vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    wrapped = _wrap(tok)
    return wrapped, [vocab[t] for t in tokens]


# ---------------------------------------------------------------- split_steps


@pytest.mark.parametrize(
    "text, delimiter, steps",
    [
        ("a\nb\n", "\n", ["a", "b"]),
        ("a\n\n  \nb", "\n", ["a", "b"]),  # empty and whitespace-only pieces dropped
        ("  a \nb", "\n", ["  a ", "b"]),  # kept verbatim
        ("a\nb\n\nc", "\n\n", ["a\nb", "c"]),
        ("no delimiter", "\n", ["no delimiter"]),
        ("", "\n", []),
    ],
)
def test_split_steps(text: str, delimiter: str, steps: list[str]) -> None:
    assert split_steps(text, delimiter) == steps


def test_empty_delimiter_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        split_steps("a", "")


# ---------------------------------------------------------------- hand-checked ends


def test_delimiter_as_its_own_token_char_level() -> None:
    tok = char_level()
    ids = tok.convert_tokens_to_ids(list("5 + 3 = 8\nThe answer is 8")) + [tok.eos_token_id, tok.pad_token_id]
    spans = step_token_ends(ids, tok)
    assert spans.steps == ["5 + 3 = 8", "The answer is 8"]
    assert spans.ends == [9, 24]  # the "\n" token; the last "8" (EOS and pad ignored)


def test_delimiter_inside_a_token() -> None:
    #                     0       1              2              3        4
    tok, ids = hand_bytes(b"1 + ", b"4 = 5\nThe", b" answer is", b" 5\n", b"\n")
    ids.append(tok.eos_token_id)
    spans = step_token_ends(ids, tok)
    assert spans.steps == ["1 + 4 = 5", "The answer is 5"]
    assert spans.ends == [1, 3]  # token 1 ends step 0 and starts step 1; the empty piece after token 4 is no step


def test_two_steps_end_in_one_token() -> None:
    tok, ids = hand_bytes(b"a", b"\nb\nc", b"d")
    spans = step_token_ends(ids, tok)
    assert spans.steps == ["a", "b", "cd"]
    assert spans.ends == [1, 1, 2]


def test_multichar_delimiter_split_over_tokens() -> None:
    tok, ids = hand_bytes(b"x = 1", b"\n", b"\ny = 2\n", b"z", b"\n\n")
    spans = step_token_ends(ids, tok, delimiter="\n\n")
    assert spans.steps == ["x = 1", "y = 2\nz"]
    assert spans.ends == [2, 4]  # the second "\n" of each delimiter


def test_no_delimiter_and_empty_completion() -> None:
    tok, ids = hand_bytes(b"just ", b"one step", b"\n", b"  \n")
    spans = step_token_ends(ids[:2] + [tok.eos_token_id], tok)
    assert (spans.steps, spans.ends) == (["just one step"], [1])
    assert step_token_ends([], tok) == step_token_ends([tok.eos_token_id], tok) == StepSpans([], [])
    assert step_token_ends(ids[2:], tok) == StepSpans([], [])  # only delimiters and spaces


def test_partial_utf8_characters() -> None:
    # "é" = C3 A9 and "€" = E2 82 AC, each split over two tokens.
    tok, ids = hand_bytes(b"caf\xc3", b"\xa9\n", b"3 \xe2\x82", b"\xac", b"\n\xe2", b"\x82\xac")
    ids.append(tok.eos_token_id)
    spans = step_token_ends(ids, tok)
    assert spans.steps == ["café", "3 €", "€"]
    # Step 1 "3 €" ends with its delimiter in token 4, which also starts the last "€";
    # the last step ends at token 5, which completes "€".
    assert spans.ends == [1, 4, 5]
    # Token 2 alone does not finish "€": step 1's last character belongs to token 3.
    assert step_token_ends(ids[:4], tok).ends == [1, 3]


def test_text_before_a_partial_character_belongs_to_its_token() -> None:
    tok, ids = hand_bytes(b"ok\n\xc3", b"\xa9")  # the delimiter shares a token with half of "é"
    spans = step_token_ends(ids, tok)
    assert (spans.steps, spans.ends) == (["ok", "é"], [0, 1])


def test_special_token_in_the_middle_is_skipped() -> None:
    tok = char_level()
    ids = tok.convert_tokens_to_ids(list("ae")) + [tok.pad_token_id] + tok.convert_tokens_to_ids(list("\nc"))
    spans = step_token_ends(ids, tok)
    assert (spans.steps, spans.ends) == (["ae", "c"], [3, 4])  # the pad at 2 carries no text


def test_metaspace_leading_space() -> None:
    tok = metaspace_bpe()
    text = "The answer is 4\n2 + 2 = 4"
    ids = tok.encode(text, add_special_tokens=False)
    spans = step_token_ends(ids, tok)
    assert spans.steps == ["The answer is 4", "2 + 2 = 4"]
    assert spans.ends[1] == len(ids) - 1
    assert tok.decode(ids[: spans.ends[0] + 1]).startswith("The answer is 4\n")
    assert not tok.decode(ids[: spans.ends[0]]).startswith("The answer is 4\n")


# ---------------------------------------------------------------- cost


class CountingTokenizer:
    """A tokenizer proxy that counts the tokens passed to decode."""

    def __init__(self, inner: PreTrainedTokenizerFast) -> None:
        self.inner, self.decoded, self.all_special_ids = inner, 0, inner.all_special_ids

    def decode(self, ids: list[int], **kwargs: object) -> str:
        self.decoded += len(ids)
        return self.inner.decode(ids, **kwargs)


def test_cost_is_linear_in_length() -> None:
    tok = byte_bpe()
    rng = random.Random(0)
    lines = [f"{rng.randint(0, 999)} + {rng.randint(0, 999)} = {rng.randint(0, 999)} € café 日本" for _ in range(400)]
    ids = tok.encode("\n".join(lines), add_special_tokens=False)[:1024]
    counting = CountingTokenizer(tok)
    spans = step_token_ends(ids, counting)
    assert len(ids) == 1024 and len(spans.ends) == 46
    # Reference: the first prefix of tokens whose decoded text holds steps 0..j (binary search).
    decoded = tok.decode(ids)
    for j, end in enumerate(spans.ends):
        through_j = "\n".join(spans.steps[: j + 1]) + ("\n" if j < len(spans.ends) - 1 else "")
        lo, hi = 0, len(ids) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if tok.decode(ids[: mid + 1]).startswith(through_j) else (mid + 1, hi)
        assert end == lo
    assert "\n".join(spans.steps) == decoded
    # Each token is decoded within windows of at most ~2 * WINDOW tokens, never the whole prefix.
    assert counting.decoded <= 2 * WINDOW * len(ids)
    assert counting.decoded < len(ids) * (len(ids) + 1) // 2 / 20


# ---------------------------------------------------------------- property


STEP_ALPHABET = [c for c in CHARS if c != "\n"]
TOKENIZERS = {"byte_bpe": byte_bpe, "char_level": char_level, "metaspace_bpe": metaspace_bpe}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(TOKENIZERS)),
    steps=st.lists(st.text(STEP_ALPHABET, min_size=1, max_size=10).filter(str.strip), max_size=6),
    delimiter=st.sampled_from(["\n", "\n\n"]),
    trailing=st.booleans(),
)
def test_prefix_through_each_end_contains_the_steps(
    name: str, steps: list[str], delimiter: str, trailing: bool
) -> None:
    tok = TOKENIZERS[name]()
    text = delimiter.join(steps) + (delimiter if trailing and steps else "")
    ids = tok.encode(text, add_special_tokens=False) + [tok.eos_token_id]
    spans = step_token_ends(ids, tok, delimiter)
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert spans.steps == split_steps(decoded, delimiter)
    if name != "metaspace_bpe":  # Metaspace does not round-trip a leading space
        assert spans.steps == steps
    assert len(spans.ends) == len(spans.steps)
    assert all(a <= b for a, b in zip(spans.ends, spans.ends[1:]))
    assert all(e < len(ids) - 1 for e in spans.ends)  # never the EOS
    assert decoded == delimiter.join(spans.steps) + (delimiter if trailing and steps else "")
    for j, end in enumerate(spans.ends):
        closed = j < len(spans.steps) - 1 or trailing
        through_j = delimiter.join(spans.steps[: j + 1]) + (delimiter if closed else "")
        assert tok.decode(ids[: end + 1], skip_special_tokens=True).startswith(through_j)
        assert not tok.decode(ids[:end], skip_special_tokens=True).startswith(through_j)  # minimal


@pytest.mark.parametrize("name", sorted(TOKENIZERS))
def test_incremental_text_matches_full_decode_across_window_slides(name: str) -> None:
    tok = TOKENIZERS[name]()
    text = "\n".join(split_steps(" ".join(CORPUS * 3)))  # > WINDOW tokens, no blank lines
    ids = tok.encode(text, add_special_tokens=False)
    assert len(ids) > WINDOW
    spans = step_token_ends(ids, tok)
    assert tok.decode(ids) == text
    assert spans.steps == split_steps(text)
    assert spans.ends[-1] == len(ids) - 1
    for j, end in enumerate(spans.ends[:-1]):
        through_j = "\n".join(spans.steps[: j + 1]) + "\n"
        assert text.startswith(through_j)
        assert tok.decode(ids[: end + 1]).startswith(through_j)
        assert not tok.decode(ids[:end]).startswith(through_j)
