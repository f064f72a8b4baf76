"""The operator's command, `lifecycle`: serve, watch, simulate, status, champion, rollback,
draft-contract.

The top layer, and nothing imports it. It may import every layer beneath; it uses
`pipelines.edges`, the library and `core`, and runs the stages only through `dvc repro`
(which `watch` calls).
"""

import core  # noqa: F401  (first: switches off the libraries' usage tracking)
