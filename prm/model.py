"""A reward model: a causal-LM backbone with a linear head read at chosen token positions.

    rm = RewardModel.from_pretrained(policy_dir, kind="process", surprise=True)
    logits = rm(input_ids, attention_mask, position_ids, gather_index, gather_mask, completion_start)  # (N, S)
    rm.save(out_dir); rm = RewardModel.load(out_dir)

A process RM (PRM) reads one position per step (the step-tag token, see
prm.batch); an outcome RM (ORM) reads one position per solution (its last
token carrying text). The score of a position is sigmoid(logit).

The backbone is `AutoModel` of the given dir: for a causal-LM checkpoint that is
its base model (the decoder without lm_head); the head reads the final hidden
states (after the final norm).

Surprise features (`surprise=True`, config prm.surprise_features). The head also
reads how unlikely each step's tokens are under a frozen reference: the causal
LM the RM was initialised from (by default the policy that wrote the
solutions). With lp_t = log pi_ref(o_t | q, o_<t) and step j the completion
tokens (e_{j-1}, e_j] (e_j its read position, e_{-1} = -1), the features are

    step_min_logprob     min_{t in step j} lp_t
    prefix_min_logprob   min_{k <= j} step_min_logprob_k   (once wrong, always wrong)
    step_mean_logprob    mean_{t in step j} lp_t

each clamped at MIN_LOGPROB, and the logit is w . [h ; features] + b, the
feature weights starting at (0, 1, 0): the prefix's least likely token, in nats,
shifts the log-odds (prm.train.fit_head then fits them and b to the labels). Why: a tiny backbone fine-tuned on a few thousand labels
does not learn to check an equation at the step tag (it would have to compare
each written digit with its own prediction inside one forward pass), while the
LM already holds that comparison as the probability of the written token
(bench/prm_quality.py measures the PRM with and without the features). The
reference stays frozen: fine-tuned through the features, it loses what it knew.

A saved RM dir holds:

    config.json, model.safetensors     the backbone (save_pretrained)
    reference/                         the frozen reference causal LM (with surprise features)
    tokenizer.json, ...                the tokenizer, when given to `save`
    head.safetensors                   the head's weight (1, H [+ 3]) and bias (1,)
    reward_model.json                  {"format": 2, "kind": ..., "version": ..., "hidden_size": ...,
                                        "features": [the surprise feature names] or []}
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoModelForCausalLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from grpo_core.maths.batch import completion_logprobs
from prm.batch import Kind

RM_FORMAT = 2
RM_INFO = "reward_model.json"
HEAD_FILE = "head.safetensors"
REFERENCE_DIR = "reference"
SURPRISE_FEATURES = ("step_min_logprob", "prefix_min_logprob", "step_mean_logprob")
SURPRISE_INIT = (0.0, 1.0, 0.0)  # initial head weights of SURPRISE_FEATURES
MIN_LOGPROB = -20.0  # nats; token log-probs are clamped here before pooling


def step_surprise(logprobs: torch.Tensor, ends: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SURPRISE_FEATURES of every step: logprobs (N, T) of completion tokens; ends (N, S)
    completion index of each step's read position (increasing), mask (N, S) -> (N, S, 3), 0 where masked."""
    lp = logprobs.clamp(min=MIN_LOGPROB)
    t = torch.arange(lp.shape[1], device=lp.device)
    first = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1] + 1], dim=1)  # (N, S)
    inside = (t >= first[..., None]) & (t <= ends[..., None]) & mask[..., None]  # (N, S, T)
    count = inside.sum(-1)  # (N, S)
    step_min = lp[:, None, :].masked_fill(~inside, 0.0).amin(-1)  # (N, S); lp <= 0, so 0 is neutral
    step_mean = (lp[:, None, :] * inside).sum(-1) / count.clamp(min=1)
    prefix_min = torch.cummin(step_min, dim=1).values  # masked steps trail the real ones
    return torch.stack([step_min, prefix_min, step_mean], dim=-1).masked_fill(~mask[..., None], 0.0)


def _causal_config(path: Path) -> bool:
    config = json.loads((path / "config.json").read_text())
    return any(a.endswith("ForCausalLM") for a in config.get("architectures") or ())


class RewardModel(torch.nn.Module):
    """Backbone hidden states (+ surprise features) -> gather (N, S) positions -> linear head -> logits (N, S)."""

    def __init__(self, backbone: torch.nn.Module, kind: Kind = "process", version: str = "untrained",
                 reference: PreTrainedModel | None = None):
        super().__init__()
        if kind not in ("process", "outcome"):
            raise ValueError(f"kind must be 'process' or 'outcome', got {kind!r}")
        self.backbone = backbone
        self.kind: Kind = kind
        self.version = version
        self.reference = reference  # frozen causal LM of the surprise features, or None
        if reference is not None:
            reference.requires_grad_(False).eval()
        hidden = backbone.config.hidden_size
        n_features = len(SURPRISE_FEATURES) if reference is not None else 0
        self.head = torch.nn.Linear(hidden + n_features, 1)
        torch.nn.init.normal_(self.head.weight, std=1.0 / hidden)
        torch.nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight[0, hidden:] = torch.tensor(SURPRISE_INIT[:n_features])

    @property
    def features(self) -> tuple[str, ...]:
        return SURPRISE_FEATURES if self.reference is not None else ()

    def train(self, mode: bool = True) -> RewardModel:
        super().train(mode)
        if self.reference is not None:
            self.reference.eval()  # frozen: never in training mode
        return self

    @classmethod
    def from_pretrained(cls, path: str | Path, kind: Kind = "process", version: str = "untrained", *,
                        surprise: bool, dtype: torch.dtype = torch.float32,
                        device: torch.device | str = "cpu") -> RewardModel:
        """A fresh head on the base model of a local HF model dir (e.g. the policy), on `device`; with
        `surprise`, a frozen copy of that causal LM is the surprise features' reference."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{path} is not a local HF model dir (no config.json)")
        reference = None
        if _causal_config(path):
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            backbone = lm.base_model  # the decoder; lm_head is dropped with `lm`
            if surprise:
                reference = copy.deepcopy(lm)  # the frozen copy, loaded once
        elif surprise:
            raise ValueError(
                f"prm.surprise_features needs a causal LM to read token log-probs, and {path}/config.json "
                "names no ...ForCausalLM architecture: set prm.surprise_features=false or use a causal-LM dir"
            )
        else:
            backbone = AutoModel.from_pretrained(path, dtype=dtype)
        return cls(backbone, kind=kind, version=version, reference=reference).to(device)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        gather_index: torch.Tensor,
        gather_mask: torch.Tensor,
        completion_start: int,
    ) -> torch.Tensor:
        """input_ids, attention_mask, position_ids (N, L); gather_index (N, S) long in [0, L);
        gather_mask (N, S) bool; completion_start P: the column of the first completion token
        (read positions lie at or after it) -> logits (N, S), 0 where gather_mask is False."""
        picked = self.head_inputs(input_ids, attention_mask, position_ids, gather_index, gather_mask, completion_start)
        logits = self.head(picked.to(self.head.weight.dtype)).squeeze(-1)  # (N, S)
        return logits.masked_fill(~gather_mask.bool(), 0.0)  # (N, S)

    def head_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        gather_index: torch.Tensor,
        gather_mask: torch.Tensor,
        completion_start: int,
    ) -> torch.Tensor:
        """What the head reads at each position, as forward's arguments -> (N, S, H [+ 3])."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state  # (N, L, H)
        n, s = gather_index.shape
        mask = gather_mask.bool()
        index = gather_index.clamp(0, hidden.shape[1] - 1)  # (N, S) padding entries read column 0
        picked = hidden.gather(1, index.unsqueeze(-1).expand(n, s, hidden.shape[-1]))  # (N, S, H)
        if self.reference is not None:
            with torch.no_grad():
                ref_logits = self.reference(input_ids=input_ids, attention_mask=attention_mask,
                                            position_ids=position_ids, use_cache=False).logits  # (N, L, V)
                lp = completion_logprobs(ref_logits, input_ids[:, completion_start:], completion_start)  # (N, T)
                ends = (gather_index - completion_start).clamp(min=0)  # (N, S) completion indices
                feats = step_surprise(lp, ends, mask)  # (N, S, 3)
            picked = torch.cat([picked, feats.to(picked.dtype)], dim=-1)  # (N, S, H + 3)
        return picked

    def save(self, path: str | Path, tokenizer: Any | None = None) -> Path:
        """Write backbone, head, info json (and the tokenizer) into `path`."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        bars_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # transformers' "Writing model shards" bar
        try:
            self.backbone.save_pretrained(path)
            if self.reference is not None:
                self.reference.save_pretrained(path / REFERENCE_DIR)
        finally:
            if bars_on:
                hf_logging.enable_progress_bar()
        head = {k: v.detach().contiguous().cpu() for k, v in self.head.state_dict().items()}
        save_file(head, str(path / HEAD_FILE))
        info = {"format": RM_FORMAT, "kind": self.kind, "version": self.version,
                "hidden_size": int(self.backbone.config.hidden_size), "features": list(self.features)}
        (path / RM_INFO).write_text(json.dumps(info, indent=1) + "\n")
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        return path

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
             ) -> RewardModel:
        """A reward model written by `save` (in eval mode, on `device` with its reference)."""
        path = Path(path)
        info_path = path / RM_INFO
        if not info_path.is_file():
            raise FileNotFoundError(f"{path} is not a saved reward model (no {RM_INFO})")
        info = json.loads(info_path.read_text())
        if info.get("format") != RM_FORMAT:
            raise ValueError(f"{info_path}: format {info.get('format')!r}, this code reads format {RM_FORMAT}")
        features = tuple(info.get("features", ()))
        if features not in ((), SURPRISE_FEATURES):
            raise ValueError(f"{info_path}: features {list(features)}, this code reads [] or {list(SURPRISE_FEATURES)}")
        reference = AutoModelForCausalLM.from_pretrained(path / REFERENCE_DIR, dtype=dtype) if features else None
        model = cls(AutoModel.from_pretrained(path, dtype=dtype), kind=info["kind"], version=info["version"],
                    reference=reference)
        model.head.load_state_dict(load_file(str(path / HEAD_FILE)))
        model.head.to(dtype)
        model.eval()
        return model.to(device)
