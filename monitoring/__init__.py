"""Monitoring library: the production window against the champion's reference, and a verdict.

- `monitoring.window`: the current window of the prediction log and the labels joined to it;
- `monitoring.verdict`: `decide_window`, the retrain verdict with its reasons, and the
  records the monitor stage writes (decision.json, metrics.json);
- `monitoring.drift`: feature and prediction drift with Evidently (imports Evidently);
- `monitoring.quality`: the champion's quality on the labelled rows against its floors.

Pure functions over frames and typed config; the `monitor` stage (`pipelines/monitor.py`) does
the file IO and the tracking. Nothing is re-exported here, so importing the package does not
import Evidently.
"""
