"""The stages of an experiment and Algorithm 1's iterations over them (no Prefect)."""
