"""Data: the contract, contract drafting, the synthetic generator, and validation (the Great
Expectations suite, its report, quarantine and data docs).

A library layer that stands on `core` only; `models` and every layer above build on it.
"""
