"""Load a policy (model + tokenizer) from a local HF model dir, ready for rollouts.

    model, tok = load_policy(path, device=resolve_device(cfg.device))   # eval mode, left padding, a pad token
    tok = load_tokenizer(path)       # the tokenizer alone, set up the same way

Left padding keeps every prompt's last token at the right edge of a batch, so
batched `generate` continues each prompt directly. The pad token is kept
distinct from EOS where the tokenizer has one, so masks built from EOS never
catch padding.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

# Written by grpo_core.policy.bootstrap into every finished embedded policy dir.
BOOTSTRAP_MARKER = "BOOTSTRAP_COMPLETE"
_PROBE_TEXT = "Question: Ann has 12 apples.\nAnswer:\n12 + 3 = 15\n15 * 2 = 30\nThe answer is 30"


def load_policy(path: Path, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load `path` (a local HF model dir) as (model in eval mode on `device`, left-padding tokenizer with a pad token)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a local HF model dir (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    model.eval()
    tok = load_tokenizer(path)
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model dir (a policy's or a reward model's): left padding, a pad token."""
    path = Path(path)
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        # Prefer a token that is not EOS, so an EOS mask never includes padding.
        if tok.unk_token is not None and tok.unk_token != tok.eos_token:
            tok.pad_token = tok.unk_token
        elif tok.eos_token is not None:
            log.warning("%s: tokenizer has no pad token; padding with EOS (%r)", path, tok.eos_token)
            tok.pad_token = tok.eos_token
        else:
            raise ValueError(f"{path}: tokenizer has neither a pad nor an EOS token")
    if (path / BOOTSTRAP_MARKER).exists():
        _check_embedded_tokenizer(path, tok)
    return tok


def _check_embedded_tokenizer(path: Path, tok: PreTrainedTokenizerBase) -> None:
    """Guard against AutoTokenizer rebuilding the embedded tokenizer differently (DEPENDENCIES.md)."""
    from tokenizers import Tokenizer

    saved = Tokenizer.from_file(str(path / "tokenizer.json"))
    want = saved.encode(_PROBE_TEXT, add_special_tokens=False).ids
    got = tok(_PROBE_TEXT, add_special_tokens=False)["input_ids"]
    if want != got:
        raise RuntimeError(
            f"{path}: AutoTokenizer ({type(tok).__name__}) encodes differently from the saved "
            "tokenizer.json; this transformers version rebuilds the tokenizer with other rules"
        )
