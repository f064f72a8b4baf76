"""Training and evaluation: pure functions over frames, the contract and typed config."""
