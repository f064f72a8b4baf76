"""The operator's command, `lifecycle`: serve, watch, simulate, status, champion, rollback,
draft-contract.

The top layer: it may import the stages' edges (`pipelines.edges`), the library and
`core`; nothing imports it. The lifecycle itself runs as `dvc repro`, which `watch` calls.
"""

import core  # noqa: F401  (first: switches off the libraries' usage tracking)
