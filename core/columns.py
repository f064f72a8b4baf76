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
SCORE_MS = "score_ms"  # the answering model's call, milliseconds (one call may score many rows)
# during a rollout (core.records.rollout): the other model's score of the same row, null when
# there is no rollout, when it was not scored (queue full) or when it failed (shadow_error)
ROLLOUT_ID = "rollout_id"
SHADOW_VERSION = "shadow_version"
SHADOW_PROBABILITY = "shadow_probability"
SHADOW_PREDICTED = "shadow_predicted"
SHADOW_THRESHOLD = "shadow_threshold"
SHADOW_ERROR = "shadow_error"  # the exception's type and message, cut to 200 characters
SHADOW_SCORE_MS = "shadow_score_ms"
# the answering model's time on a call like the shadow's (the same rows, the same thread, just
# after): every `deploy.rollout.shadow.paired_every`-th shadow batch; null when not paired
PAIRED_SCORE_MS = "paired_score_ms"
ROLLOUT_COLUMNS = (
    ROLLOUT_ID,
    SHADOW_VERSION,
    SHADOW_PROBABILITY,
    SHADOW_PREDICTED,
    SHADOW_THRESHOLD,
    SHADOW_ERROR,
    SHADOW_SCORE_MS,
    PAIRED_SCORE_MS,
)

# a model's reference data
REFERENCE_LABEL = "label"
REFERENCE_PROBABILITY = "probability"
