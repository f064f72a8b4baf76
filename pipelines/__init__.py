"""Stage entry points: each `python -m pipelines.<stage>` reads, calls library code, writes.

Importing this package switches off the usage tracking of every library we use (unless the
user set the variable already). It has to happen here, before those libraries are imported.
"""

import os

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",  # Evidently (any value) and MLflow ("true")
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)
