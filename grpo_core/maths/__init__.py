"""The pure maths of GRPO: advantages, the loss, packed batches and solution steps (torch only)."""
