"""The stage layer: each `python -m pipelines.<stage>` reads its inputs, calls the library
(`features`, `models`, `monitoring`, `serving`), writes its outputs.

`pipelines.edges` beneath the stages holds what talks to the outside world (MLflow tracking
and registry, the ledger, the data sources, feedback batches, the stage runtime). A stage
may import the edges, the library and `core`; nothing imports a stage, and no stage imports
another (the import-linter contracts in `pyproject.toml`).
"""

import core  # noqa: F401  (first: switches off the libraries' usage tracking)
