"""Training, evaluation and the champion/challenger gate: pure functions over frames, the
contract and typed config.

A library layer that may import `features` and `core`; `serving`, `monitoring` and every
layer above build on it.
"""
