"""The prediction log: every served prediction, durable and non-blocking, read back by window.

`writer` holds the service's `PredictionLogger` (JSON lines in hourly partitions, written
from one background thread); `reader` reads a window of rows back (the monitor stage). Part
of `serving`: it imports `serving.schema`, `features` and `core`, nothing above.
"""

from serving.prediction_log.reader import read_prediction_log
from serving.prediction_log.writer import PredictionLogger, prediction_rows

__all__ = ["PredictionLogger", "prediction_rows", "read_prediction_log"]
