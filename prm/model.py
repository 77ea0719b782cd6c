"""A reward model: a causal-LM backbone with a linear head read at chosen token positions.

    rm = RewardModel.from_pretrained(policy_dir, kind="process")   # backbone = the policy's base model
    logits = rm(input_ids, attention_mask, position_ids, gather_index, gather_mask)   # (N, S)
    rm.save(out_dir); rm = RewardModel.load(out_dir)

A process RM (PRM) reads one position per step (the step-tag token, see
prm.batch); an outcome RM (ORM) reads one position per solution (its last
token carrying text). The score of a position is sigmoid(logit).

The backbone is `AutoModel` of the given dir: for a causal-LM checkpoint that is
its base model (the decoder without lm_head); the head reads the final hidden
states (after the final norm). A saved RM dir holds:

    config.json, model.safetensors     the backbone (save_pretrained)
    tokenizer.json, ...                the tokenizer, when given to `save`
    head.safetensors                   the head's weight (1, H) and bias (1,)
    reward_model.json                  {"format": 1, "kind": ..., "version": ..., "hidden_size": ...}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

RM_FORMAT = 1
RM_INFO = "reward_model.json"
HEAD_FILE = "head.safetensors"
Kind = Literal["process", "outcome"]


class RewardModel(torch.nn.Module):
    """Backbone hidden states -> gather (N, S) positions -> linear head -> logits (N, S)."""

    def __init__(self, backbone: torch.nn.Module, kind: Kind = "process", version: str = "untrained"):
        super().__init__()
        if kind not in ("process", "outcome"):
            raise ValueError(f"kind must be 'process' or 'outcome', got {kind!r}")
        self.backbone = backbone
        self.kind: Kind = kind
        self.version = version
        hidden = backbone.config.hidden_size
        self.head = torch.nn.Linear(hidden, 1)
        torch.nn.init.normal_(self.head.weight, std=1.0 / hidden)
        torch.nn.init.zeros_(self.head.bias)

    @classmethod
    def from_pretrained(cls, path: str | Path, kind: Kind = "process", version: str = "untrained",
                        dtype: torch.dtype = torch.float32) -> RewardModel:
        """A fresh head on the base model of a local HF model dir (e.g. the policy)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a local HF model dir (no config.json)")
        config = json.loads((path / "config.json").read_text())
        if any(a.endswith("ForCausalLM") for a in config.get("architectures") or ()):
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            backbone = lm.base_model  # the decoder; lm_head is dropped with `lm`
        else:
            backbone = AutoModel.from_pretrained(path, dtype=dtype)
        return cls(backbone, kind=kind, version=version)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        gather_index: torch.Tensor,
        gather_mask: torch.Tensor,
    ) -> torch.Tensor:
        """input_ids, attention_mask, position_ids (N, L); gather_index (N, S) long in [0, L);
        gather_mask (N, S) bool -> logits (N, S), 0 where gather_mask is False."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (N, L, H)
        n, s = gather_index.shape
        index = gather_index.clamp(0, hidden.shape[1] - 1)  # (N, S) padding entries read column 0
        picked = hidden.gather(1, index.unsqueeze(-1).expand(n, s, hidden.shape[-1]))  # (N, S, H)
        logits = self.head(picked.to(self.head.weight.dtype)).squeeze(-1)  # (N, S)
        return logits.masked_fill(~gather_mask.bool(), 0.0)  # (N, S)

    def save(self, path: str | Path, tokenizer: Any | None = None) -> Path:
        """Write backbone, head, info json (and the tokenizer) into `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        bars_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # transformers' "Writing model shards" bar
        try:
            self.backbone.save_pretrained(path)
        finally:
            if bars_on:
                hf_logging.enable_progress_bar()
        head = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(head, str(path / HEAD_FILE))
        info = {"format": RM_FORMAT, "kind": self.kind, "version": self.version,
                "hidden_size": int(self.head.in_features)}
        (path / RM_INFO).write_text(json.dumps(info, indent=1) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        return path

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> RewardModel:
        """A reward model written by `save` (in eval mode)."""
        path = Path(path)
        info_path = path / RM_INFO
        if not info_path.is_file():
            raise FileNotFoundError(f"{path} is not a saved reward model (no {RM_INFO})")
        info = json.loads(info_path.read_text())
        if info.get("format") != RM_FORMAT:
            raise ValueError(f"{info_path}: format {info.get('format')!r}, this code reads format {RM_FORMAT}")
        model = cls(AutoModel.from_pretrained(path, dtype=dtype), kind=info["kind"], version=info["version"])
        model.head.load_state_dict(load_file(str(path / HEAD_FILE)))
        model.head.to(dtype)
        model.eval()
        return model


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer saved beside a reward model (or a policy): left padding, a pad token."""
    tok = AutoTokenizer.from_pretrained(Path(path))
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    tok.padding_side = "left"
    return tok
