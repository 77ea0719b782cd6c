"""Rollouts with HF `generate` on the training model itself (weights always in sync)."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from grpo_core.rollout.base import RolloutBatch, SamplingParams


class HFEngine:
    """Batched sampling through `model.generate`, sharing the trainer's module.

    Because it holds the very module the optimizer updates, `sync_weights` has
    nothing to copy; it only checks that it is given that module.
    """

    name = "hf"

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 256):
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer has no pad token: load the policy with grpo_core.policy.load.load_policy")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size

    def sync_weights(self, model: torch.nn.Module) -> None:
        if model is not self.model:
            raise ValueError("HFEngine generates with the training module itself; pass that module")

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams) -> RolloutBatch:
        tok = self.tokenizer
        expanded = [p for p in prompts for _ in range(params.n)]
        out = RolloutBatch([], [], [], [], [], engine=self.name)
        was_training = self.model.training
        self.model.eval()
        torch.manual_seed(params.seed)
        device = next(self.model.parameters()).device
        for lo in range(0, len(expanded), self.batch_size):
            chunk = expanded[lo : lo + self.batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            gen = self.model.generate(
                **enc,
                do_sample=not params.greedy,
                temperature=None if params.greedy else params.temperature,
                top_p=None if params.greedy else params.top_p,
                top_k=None,
                max_new_tokens=params.max_new_tokens,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                output_logits=True,
                return_dict_in_generate=True,
            )
            prompt_len = enc["input_ids"].shape[1]
            new = gen.sequences[:, prompt_len:]  # (b, T)
            logits = torch.stack(gen.logits, dim=1).float()  # (b, T, V)
            if not params.greedy:
                logits = logits / params.temperature
            logp = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)  # (b, T)
            for i in range(new.shape[0]):
                ids = new[i].tolist()
                eos_at = ids.index(tok.eos_token_id) if tok.eos_token_id in ids else -1
                length = eos_at + 1 if eos_at >= 0 else len(ids)
                ids = ids[:length]
                mask = enc["attention_mask"][i].bool()
                out.prompt_ids.append(enc["input_ids"][i][mask].tolist())
                out.completion_ids.append(ids)
                out.completions.append(tok.decode(ids, skip_special_tokens=True))
                out.logprobs.append(logp[i, :length].tolist())
                out.finished.append(eos_at >= 0)
        self.model.train(was_training)
        return out
