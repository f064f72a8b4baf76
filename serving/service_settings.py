"""What the service reads from `params.yaml`: once, when BentoML imports `serving.service`.

The request schema is derived from the data contract, and BentoML needs it as a class at
import, so the settings are read then; this read is the service's only import-time effect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from core.config import ServingConfig, load_params
from core.config.rollout import ShadowConfig
from features.contract import DataContract, load_contract
from serving.champion_source import Champion, packed_champion

PARAMS_ENV = "LIFECYCLE_PARAMS"


@dataclass(frozen=True)
class ServiceSettings:
    """What the service needs from `params.yaml`, with paths made absolute."""

    serving: ServingConfig
    contract: DataContract
    store: Path
    prediction_log: Path
    packed: Champion | None  # the model packed in the Bento this runs from, if it does
    shadow: ShadowConfig = field(default_factory=ShadowConfig)  # deploy.rollout.shadow


def load_settings(params_path: Path | str | None = None) -> ServiceSettings:
    """Read `params.yaml`; relative paths in it are relative to its folder.

    The file is `params_path`, else `$LIFECYCLE_PARAMS`, else `params.yaml` in the working
    directory.
    """
    path = Path(params_path or os.environ.get(PARAMS_ENV) or "params.yaml").resolve()
    params = load_params(path)
    root = path.parent
    serving = params.serving
    return ServiceSettings(
        serving=serving,
        contract=load_contract(root / params.data.contract),
        store=(root / serving.store).resolve(),
        prediction_log=(root / serving.prediction_log.directory).resolve(),
        packed=packed_champion(root),
        shadow=params.deploy.rollout.shadow,
    )
