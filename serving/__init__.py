"""Online serving: request and response models derived from the contract, the request gate
and batcher, the model store with its champion pointer and infra check, the prediction log,
and the BentoML service that loads the champion model.

A library layer that may import `models`, `features` and `core`, never `monitoring` or a
layer above.
"""

import core  # noqa: F401  (first: `bentoml serve` starts here; switches off usage tracking)
