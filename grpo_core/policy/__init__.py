"""The policy: building the embedded default (bootstrap) and loading a local HF model dir (load)."""
