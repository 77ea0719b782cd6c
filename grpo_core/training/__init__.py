"""The training machinery: the GRPO loop, its backends, checkpoints, lr schedule and trackers."""
