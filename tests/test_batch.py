"""token_logprobs: the shared-prompt, trimmed forward pass scores tokens as one padded pass does."""

import torch

from grpo_core.maths.batch import completion_logprobs, pack, token_logprobs
from grpo_core.policy.load import load_policy


def _padded_pass_logprobs(model, packed):
    """The reference: one forward pass over every row's left-padded prompt + right-padded completion."""
    out = model(input_ids=packed.input_ids, attention_mask=packed.attention_mask, position_ids=packed.position_ids,
                use_cache=False)
    return completion_logprobs(out.logits, packed.completion_ids, packed.prompt_len, 0.7)  # (N, T)


def test_shared_prompt_pass_matches_one_padded_pass_in_values_and_gradients(tiny_policy_dir):
    model, tok = load_policy(tiny_policy_dir)
    model.train()
    torch.manual_seed(0)
    prompts = [[5, 9, 12, 7], [5, 9, 12, 7], [3, 4], [8, 8, 8, 8, 8, 8], [3, 4]]  # shared, distinct, longest
    completions = [[int(t) for t in torch.randint(2, 200, (n,))] for n in (6, 1, 9, 3, 0)]  # one empty
    packed = pack(prompts, completions, tok.pad_token_id)
    weights = packed.completion_mask * torch.linspace(1, 2, packed.completion_mask.shape[1])  # (N, T)
    results = []
    for score in (lambda: token_logprobs(model, packed, 0.7), lambda: _padded_pass_logprobs(model, packed)):
        model.zero_grad()
        logp = score()
        (logp * weights).sum().backward()
        results.append((logp.detach(), [p.grad.clone() for p in model.parameters()]))
    (fast, fast_grads), (ref, ref_grads) = results
    mask = packed.completion_mask.bool()
    assert torch.allclose(fast[mask], ref[mask], atol=1e-5)
    for g_fast, g_ref in zip(fast_grads, ref_grads, strict=True):
        assert torch.allclose(g_fast, g_ref, atol=1e-5, rtol=1e-4)
