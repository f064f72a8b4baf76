"""Data: the contract, the synthetic generator, validation and preprocessing."""
