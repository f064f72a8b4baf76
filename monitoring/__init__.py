"""Monitoring library: the production window against the champion's reference, and a verdict.

`window` (the current window of the prediction log, labels joined to it), `verdict` (the
retrain verdict with its reasons, and the records the monitor stage writes), `drift`
(feature and prediction drift with Evidently), `quality` (the champion's quality on the
labelled rows) and `policy` (the retrain policy of `lifecycle watch`): pure functions over
frames and typed config. It may import `models`, `features` and `core`, never `serving` or
a layer above. Nothing is re-exported here, so importing the package does not import
Evidently.
"""
