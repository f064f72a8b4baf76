"""Config of the prediction service: server, batching and the prediction log."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from core.config.base import Frozen


class PredictionLogConfig(Frozen):
    """Every served request is appended here; the monitor stage reads it as its window."""

    directory: Path = Path("data/predictions")
    queue_size: int = Field(100_000, ge=100)  # bounded memory: beyond it, records are counted lost
    flush_interval_s: float = Field(1.0, gt=0, le=60)
    # with a shared store configured (serving.shared_store_env): write each flush as one
    # object under <shared>/predictions/ instead of `directory`, so the monitor reads every
    # replica's traffic (`lifecycle watch` syncs it into `directory` before each run)
    to_shared_store: bool = False


class BatchingConfig(Frozen):
    """Adaptive batching of single-row requests into one model call."""

    enabled: bool = True
    max_batch_size: int = Field(64, ge=1, le=10_000)
    max_latency_ms: int = Field(20, ge=1, le=60_000)


class ServingConfig(Frozen):
    """The BentoML service (`lifecycle serve`)."""

    host: str = "127.0.0.1"  # loopback unless you mean it
    port: int = Field(3000, ge=1, le=65535)
    workers: int = Field(2, ge=1, le=64)  # processes; each loads the model (~270 MiB here)
    threads: int = Field(4, ge=1, le=256)  # per worker, for the synchronous APIs
    numeric_threads: int = Field(1, ge=1, le=64)  # OpenMP/BLAS threads per worker
    # with several workers, every Nth answer of a worker closes its connection (the client
    # reconnects and may land on another worker); 0: never
    recycle_connection_every: int = Field(200, ge=0)
    api_key_env: str = "LIFECYCLE_API_KEY"  # set this variable to require an X-API-Key header
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_batch_rows: int = Field(1000, ge=1)
    reload_poll_s: float = Field(2.0, gt=0, le=3600)  # how often the service checks the champion
    store: Path = Path(".bentoml")  # the project's own BentoML home: models load only from here
    # the environment variable holding the shared serving store's URL (s3://bucket/serving, a
    # folder or file://...); unset or empty: no shared store. Credentials come from the
    # environment too (AWS_*), never from params.yaml
    shared_store_env: str = Field("LIFECYCLE_SHARED_STORE", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    replica_id_env: str = Field("LIFECYCLE_REPLICA_ID", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    batching: BatchingConfig = BatchingConfig()
    prediction_log: PredictionLogConfig = PredictionLogConfig()
