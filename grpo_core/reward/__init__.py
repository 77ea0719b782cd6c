"""The reward side: answer extraction, the rule verifier and outcome reward functions."""
