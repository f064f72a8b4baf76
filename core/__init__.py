"""The ground: typed config (`core.config`), the file layout, IO, hashes, column names, one
clock, model files and typed records between processes (`core.records`).

It imports nothing of ours, and every other package stands on it, so importing it is where
the usage tracking of every library we use is switched off (unless the user set the
variable already): it has to happen before those libraries are imported.
"""

import os

# The project's own top-level packages, top layer first (pyproject.toml lists the same).
OUR_PACKAGES = ("lifecycle", "pipelines", "serving", "monitoring", "models", "features", "core")

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",  # Evidently (any value) and MLflow ("true")
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)
