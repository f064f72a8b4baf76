"""Online serving: request and response models derived from the contract, the prediction log,
and the BentoML service that loads the champion model."""
