"""Data: the contract, contract drafting, the synthetic generator, and validation (the Great
Expectations suite, its report, quarantine and data docs)."""
