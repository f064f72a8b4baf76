"""Column names of the tables one process writes and another reads, declared once.

The prediction log: `serving` writes it, the monitor and `lifecycle simulate` read it; each
row is the answer (these columns: the log's own names, not the served answer's, which the
contract's `answer:` block sets) followed by the served record's contract columns. A model's
reference data: train writes it beside the model (its training features, then the label and
the out-of-fold score); evaluate and the monitor read it.
"""

# the prediction log
TIME = "time"
REQUEST_ID = "request_id"
MODEL_VERSION = "model_version"
PROBABILITY = "probability"  # the answer's public names are the contract's (`answer:`)
PREDICTED = "predicted"
THRESHOLD = "threshold"
LOG_COLUMNS = (TIME, REQUEST_ID, MODEL_VERSION, PROBABILITY, PREDICTED, THRESHOLD)

# a model's reference data
REFERENCE_LABEL = "label"
REFERENCE_PROBABILITY = "probability"
