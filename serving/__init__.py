"""Online serving: request and response models derived from the contract, the prediction log,
and the BentoML service that loads the champion model."""

import core  # noqa: F401  (first: `bentoml serve` starts here; switches off usage tracking)
