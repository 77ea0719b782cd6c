"""Rollouts on the training model itself (weights always in sync), drawing what HF `generate` draws.

`sample` is HF's sampling loop without the work a GRPO batch wastes in it:
every prompt comes G times, and finished rows keep being forwarded until the
longest completion ends. Same seed, same tokens (tests/test_rollout.py checks it
against `model.generate`).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from grpo_core.rollout.base import RolloutBatch, SamplingParams


class HFEngine:
    """Batched sampling (`sample`, HF `generate`'s draws), sharing the trainer's module.

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
            new, logp = sample(self.model, enc["input_ids"], enc["attention_mask"], params, tok.eos_token_id,
                               tok.pad_token_id)  # (b, T), (b, T)
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


def sample(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, params: SamplingParams,
           eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample up to `params.max_new_tokens` after each left-padded prompt row -> (tokens, log-probs), both (b, T).

    The draws of HF `generate` (transformers' `_sample`: the same warpers, one
    `torch.multinomial` over the whole (b, V) batch a step, from the global RNG;
    a finished row continues with padding, all stop once every row has sampled
    EOS), without its wasted work: each distinct prompt is prefilled once and its
    KV cache copied to its rows (the engine repeats every prompt n times), and a
    row that has finished leaves the forward passes (a finished row's
    distribution is never used, so it is drawn from a uniform placeholder).
    Log-probs are those of the sampled tokens under logits / temperature, before
    top-p; T is the longest completion; tokens after a row's EOS are padding.
    """
    b = input_ids.shape[0]
    warpers = LogitsProcessorList() if params.greedy else LogitsProcessorList(
        [TemperatureLogitsWarper(params.temperature)] * (params.temperature != 1.0)
        + [TopPLogitsWarper(params.top_p)] * (params.top_p < 1.0))
    _, inverse = torch.unique(torch.cat([input_ids, attention_mask], dim=1), dim=0, return_inverse=True)  # (b,)
    first = torch.full((int(inverse.max()) + 1,), b, device=inverse.device).scatter_reduce(
        0, inverse, torch.arange(b, device=inverse.device), "amin")  # (U,) one row per distinct prompt
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (b, P) as generate's: padding at 0
    out = model(input_ids=input_ids[first], attention_mask=attention_mask[first], position_ids=position_ids[first],
                use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_select_indices(inverse)  # (b, heads, P, d)
    logits = out.logits[:, -1].float()[inverse]  # (b, V)
    v = logits.shape[-1]
    tokens = torch.full((b, params.max_new_tokens), pad_id, dtype=torch.long, device=input_ids.device)
    logp = torch.zeros((b, params.max_new_tokens), device=input_ids.device)
    alive = torch.arange(b, device=input_ids.device)  # rows still sampling, in batch order
    mask, position = attention_mask, position_ids[:, -1]
    for t in range(params.max_new_tokens):
        if params.greedy:
            next_tokens = logits.argmax(-1)
        else:
            probs = torch.full((b, v), 1.0 / v, device=logits.device)  # finished rows: drawn, never used
            probs[alive] = torch.softmax(warpers(tokens[alive, :t], logits), dim=-1)
            next_tokens = torch.multinomial(probs, num_samples=1).squeeze(1)[alive]
        scaled = logits if params.greedy else logits / params.temperature
        logp[alive, t] = torch.log_softmax(scaled, dim=-1).gather(-1, next_tokens[:, None]).squeeze(1)
        tokens[alive, t] = next_tokens
        going = next_tokens != eos_id
        if not bool(going.any()) or t + 1 == params.max_new_tokens:
            return tokens[:, : t + 1], logp[:, : t + 1]
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            alive, next_tokens, mask, position = alive[keep], next_tokens[keep], mask[keep], position[keep]
            cache.batch_select_indices(keep)
        mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)
        position = position + 1
        out = model(input_ids=next_tokens[:, None], attention_mask=mask, position_ids=position[:, None],
                    past_key_values=cache, use_cache=True, logits_to_keep=1)
        logits = out.logits[:, -1].float()  # (alive, V)
    return tokens, logp
