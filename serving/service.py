"""The champion model over HTTP: a BentoML 1.4 service. Start it with `lifecycle serve`.

Endpoints: `POST /predict` (one record), `POST /predict_batch` (`{"records": [...]}`),
`POST /admin/reload`, and BentoML's `/livez`, `/readyz`, `/metrics`, `/docs.json`.

The request schema is derived from the data contract, and BentoML needs it as a class when
this module is imported, so the module reads `params.yaml` once, at import (`load_settings`).
That read is the only import-time effect: no model, store, thread or environment change
happens before BentoML builds the service. Every prediction is queued to the prediction log,
which never blocks or fails a request and is flushed when the service shuts down.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import bentoml
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from core import OUR_PACKAGES
from core.config import ServingConfig, load_params
from features.contract import DataContract, load_contract
from models.evaluation import predict_probability
from serving.batching import RowBatcher
from serving.bentoml_patches import bentoml_openapi_document, cancel_request_timeout_timers
from serving.champion_source import Champion, ChampionSource, NoChampion, packed_champion
from serving.gate import API_KEY_HEADER, REQUEST_ID_HEADER, RequestGate, request_id_from
from serving.model_store import ModelStoreError, ServedModel, load_served_model
from serving.openapi import Answer, OpenAPIDocument, Operation, ServiceDocument, correct_document
from serving.prediction_log import PredictionLogger, prediction_rows
from serving.prediction_log.shared import shared_log_sink
from serving.readiness import Readiness, ReadinessRoute
from serving.schema import (
    ErrorAnswer,
    InvalidRequest,
    build_answer_models,
    build_batch_model,
    build_record_model,
    example_record,
    records_to_frame,
)
from serving.shared_store import shared_store_url

logger = logging.getLogger(__name__)

PARAMS_ENV = "LIFECYCLE_PARAMS"
REQUEST_TIMEOUT_S = 60.0  # BentoML answers 504 after this; overridable with its config
LOG_CLOSE_TIMEOUT_S = 10.0


# --- configuration, read once when BentoML imports this module --------------------------


@dataclass(frozen=True)
class ServiceSettings:
    """What the service needs from `params.yaml`, with paths made absolute."""

    serving: ServingConfig
    contract: DataContract
    store: Path
    prediction_log: Path
    packed: Champion | None  # the model packed in the Bento this runs from, if it does


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
    )


def _openapi_30(model: type[BaseModel], example: Any = None) -> type[BaseModel]:
    """The model with one OpenAPI 3.0 `example` instead of JSON Schema's `examples` list.

    BentoML 1.4.40 renders OpenAPI 3.0.2 and turns each model's top-level JSON schema into
    its `Schema` class, which refuses unknown keys: a model-level `examples` makes
    `/docs.json` answer 500. Validation is unchanged (a subclass with another config).
    """
    extra = dict(model.model_config.get("json_schema_extra") or {})
    examples = extra.pop("examples", None)
    extra["example"] = examples[0] if examples else example
    if extra["example"] is None:
        return model
    namespace = {
        "__module__": __name__,
        "__doc__": model.__doc__,
        "model_config": ConfigDict(json_schema_extra=extra),
    }
    return type(model.__name__, (model,), namespace)


_SETTINGS = load_settings()
_READINESS = Readiness()  # this worker's /readyz answer
ProcessRecord = _openapi_30(build_record_model(_SETTINGS.contract))
ProcessBatch = _openapi_30(
    build_batch_model(ProcessRecord, _SETTINGS.serving.max_batch_rows),
    {"records": [example_record(_SETTINGS.contract)]},
)
_ANSWERS = build_answer_models(_SETTINGS.contract)  # field names from the contract's `answer:`
Prediction = _ANSWERS.single
BatchPrediction = _ANSWERS.batch


class ReloadRequest(BaseModel):
    """`/admin/reload` takes no parameters: no body, or an empty JSON object."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ReloadResult(BaseModel):
    """What `/admin/reload` did."""

    changed: bool = Field(description="True when a different model is now served.")
    tag: str | None = Field(description="The model served after the call, e.g. name:v3.")
    model_version: str | None = Field(description="Its registered version label, e.g. v3.")
    previous_tag: str | None = Field(description="The model served before the call.")
    error: str | None = Field(
        None, description="Why the champion could not be loaded (500); null when it was."
    )


def service_document(settings: ServiceSettings) -> ServiceDocument:
    """What the OpenAPI document says of each route: the contract's words, every answer."""
    contract = settings.contract
    keyed = bool(os.environ.get(settings.serving.api_key_env))  # as the gate reads it
    refused = {
        400: Answer(
            InvalidRequest, "The body does not fit the schema; `detail` names each problem."
        ),
        413: Answer(ErrorAnswer, "The body is over serving.max_body_bytes."),
        415: Answer(ErrorAnswer, "The body is not JSON (Content-Type: application/json)."),
        504: Answer(ErrorAnswer, "Not answered within the request timeout."),
    }
    if keyed:
        refused[401] = Answer(ErrorAnswer, f"Missing or wrong {API_KEY_HEADER} header.")
    scoring = {
        **refused,
        500: Answer(ErrorAnswer, "The model failed on this request."),
        503: Answer(ErrorAnswer, "No champion is loaded yet: deploy one and retry."),
    }
    label = f"'{contract.label}'"
    return ServiceDocument(
        title=f"{contract.name}: predictions of {label}",
        description=(
            f"{contract.description or contract.name} Each answer gives "
            f"`{contract.probability_field}`, the champion model's probability that {label} "
            f"is 1, and `{contract.label_field}`, whether it reaches the model's threshold."
        ),
        operations={
            "/predict": Operation(
                ProcessRecord,
                body_required=True,
                answers={200: Answer(Prediction, "The answer for the record."), **scoring},
                summary=f"Score one record: the probability of {label}.",
            ),
            "/predict_batch": Operation(
                ProcessBatch,
                body_required=True,
                answers={200: Answer(BatchPrediction, "One answer per record."), **scoring},
                summary=f"Score a batch of records: the probability of {label} for each.",
            ),
            "/admin/reload": Operation(
                ReloadRequest,
                body_required=False,
                answers={
                    200: Answer(ReloadResult, "The champion in the store's pointer is served."),
                    500: Answer(
                        ReloadResult, "The new champion could not be loaded; `error` says why."
                    ),
                    **refused,
                },
                summary="Serve the store's champion now, instead of at the next poll.",
            ),
        },
        api_key_header=API_KEY_HEADER if keyed else None,
        extra_answers={"/readyz": {503: "Not ready: no champion loaded yet."}},
    )


# --- metrics --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Metrics:
    predictions: Any
    latency: Any
    log_dropped: Any
    log_write_errors: Any
    reloads: Any


@functools.cache
def _metrics() -> _Metrics:
    """Created once per worker, after BentoML has set PROMETHEUS_MULTIPROC_DIR.

    prometheus_client decides at import whether it runs in multiprocess mode, which is why
    it is imported here and not at the top of the module.
    """
    import prometheus_client as prom

    metrics = _Metrics(
        predictions=prom.Counter(
            "lifecycle_predictions",
            "Predictions served (rows), by model version and endpoint.",
            ["model_version", "endpoint"],
        ),
        latency=prom.Histogram(
            "lifecycle_prediction_latency_seconds",
            "Time from a validated request to its scores, by endpoint.",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        ),
        log_dropped=prom.Counter(
            "lifecycle_prediction_log_dropped_rows",
            "Prediction-log rows dropped because the log queue was full.",
        ),
        log_write_errors=prom.Counter(
            "lifecycle_prediction_log_write_errors",
            "Prediction-log writes that failed.",
        ),
        reloads=prom.Counter(
            "lifecycle_model_reloads",
            "Champion reloads, by outcome (swapped or failed).",
            ["outcome"],
        ),
    )
    for outcome in ("swapped", "failed"):
        metrics.reloads.labels(outcome=outcome)  # show zeros before the first reload
    return metrics


# --- the service ----------------------------------------------------------------------


# The decorator takes `serving.workers`, `serving.threads`, `serving.host` and `serving.port`,
# so even a bare `bentoml serve` binds to loopback by default. BentoML's own overrides
# (`BENTOML_CONFIG_OVERRIDES`, JSON keyed by the service name `Predictor`, e.g.
# `{"services": {"Predictor": {"traffic": {"timeout": 10}}}}`) win over the decorator,
# and `bentoml serve --host/--port` over both.
@bentoml.service(
    workers=_SETTINGS.serving.workers,
    threads=_SETTINGS.serving.threads,
    traffic={"timeout": REQUEST_TIMEOUT_S},
    http={"host": _SETTINGS.serving.host, "port": _SETTINGS.serving.port},
)
class Predictor:
    """The champion model's probability of the contract's label for each record sent.

    The request and answer fields follow the data contract named in `params.yaml` (its
    columns, and its `answer:` block for the answer's names). Each answer names the model
    version that produced it and the request id under which it was logged.
    """

    def __init__(self) -> None:
        """Load the champion, start the prediction log and the champion watcher.

        The model comes from the shared store's pointer when one is configured, else the
        local store's pointer, else the Bento's packed model (`serving.champion_source`),
        and loads through `serving.model_store.load_served_model` (exact trusted types).
        Without a champion, or with the shared store unreachable, the service starts but is
        not ready (`/readyz` 503) and keeps polling until it can load one.
        """
        _configure_logging()
        cancel_request_timeout_timers()  # see serving/bentoml_patches.py
        settings = _SETTINGS
        config = settings.serving
        self._settings = settings
        self._metrics = _metrics()
        self._reload_lock = threading.Lock()
        self._failed_reload: str | None = None  # the last error, logged once per message
        self._model: ServedModel | None = None
        shared_url = shared_store_url(config.shared_store_env)
        self._source = ChampionSource(settings.store, shared_url, settings.packed)
        logger.info("the champion comes from %s", self._source.describe())
        self._reload("start")
        _warn_about_thread_settings(config.numeric_threads)

        self._prediction_log = PredictionLogger(
            settings.prediction_log,
            queue_size=config.prediction_log.queue_size,
            flush_interval_s=config.prediction_log.flush_interval_s,
            sink=shared_log_sink(config, shared_url),  # None: files under `directory`
        )
        self._prediction_log.start()
        self._log_seen = {"dropped": 0, "write_errors": 0}
        self._limiter: anyio.CapacityLimiter | None = None
        # single records that arrive while the model is busy are scored together in its
        # next call (`serving.batching`)
        self._batcher = (
            RowBatcher(
                self._score,
                config.batching.max_batch_size,
                config.batching.max_latency_ms,
                self._in_thread,
            )
            if config.batching.enabled
            else None
        )
        self._stopping = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch_champion, name="champion-watcher", daemon=True
        )
        self._watcher.start()
        # The start-up heap (libraries, contract, model: ~250,000 objects) never becomes
        # garbage; freezing it keeps full collections from rescanning it (~80 ms each here,
        # which otherwise lands on a request's latency). benchmarks/results/serving.md.
        gc.collect()
        gc.freeze()

    # --- endpoints ---------------------------------------------------------------------

    @bentoml.api(route="/predict")
    async def predict(self, record: ProcessRecord, /, ctx: bentoml.Context) -> Prediction:
        """Score one record: the probability of the label and whether it crosses the threshold."""
        request_id = request_id_from(ctx.request.headers.get(REQUEST_ID_HEADER))
        if self._model is None:
            return _not_ready()
        start = time.perf_counter()
        if self._batcher is not None:
            model, score = await self._batcher.submit(record)
        else:
            model, scores = await self._in_thread(self._score, [record])
            score = float(scores[0])
        self._observe("predict", model, 1, start)
        answer = Prediction.from_probability(score, model.threshold, model.version, request_id)
        self._log_answer([record], answer)
        return answer

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, batch: ProcessBatch, /, ctx: bentoml.Context) -> BatchPrediction:
        """Score a batch of records in one model call; answers keep the request's order."""
        request_id = request_id_from(ctx.request.headers.get(REQUEST_ID_HEADER))
        if self._model is None:
            return _not_ready()
        records = list(batch.records)
        start = time.perf_counter()
        model, scores = await self._in_thread(self._score, records)
        self._observe("predict_batch", model, len(records), start)
        answer = BatchPrediction.from_probabilities(
            scores, model.threshold, model.version, request_id
        )
        self._log_answer(records, answer)
        return answer

    @bentoml.api(route="/admin/reload")
    async def reload(self, ctx: bentoml.Context) -> ReloadResult:
        """Load the champion named in the store's pointer now, instead of at the next poll.

        Takes no parameters: no body or `{}` (anything else is a 400, as on the other routes).
        Protected: when the environment variable named by `serving.api_key_env` is set,
        the request needs header `X-API-Key` with its value (401 otherwise). Answers 500,
        and keeps serving the current model, when the new champion cannot be loaded. With
        several workers only the one that takes this request reloads at once; the others
        follow at their next poll.
        """
        result = await anyio.to_thread.run_sync(self._reload, "admin")
        if result.error is not None:
            ctx.response.status_code = 500
        return result

    def __is_ready__(self) -> bool:
        return self._model is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        """Stop polling, then flush the prediction log: no logged row is lost."""
        self._stopping.set()
        if self._batcher is not None:
            self._batcher.stop()
        self._watcher.join(timeout=5)
        self._prediction_log.close(LOG_CLOSE_TIMEOUT_S)
        self._sync_log_metrics()
        logger.info(
            "prediction log closed: %d rows logged, %d dropped, %d write errors",
            self._prediction_log.logged,
            self._prediction_log.dropped,
            self._prediction_log.write_errors,
        )

    # --- scoring -------------------------------------------------------------------------

    def _score(self, records: list[Any]) -> tuple[ServedModel, np.ndarray]:
        """Scores from the model being served when the call starts (one reference read)."""
        model = self._model
        if model is None:
            raise RuntimeError("no model loaded")
        frame = records_to_frame(records, self._settings.contract)
        return model, predict_probability(model.pipeline, frame, self._settings.contract)

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._settings.serving.threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)

    def _observe(self, endpoint: str, model: ServedModel, rows: int, start: float) -> None:
        self._metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)
        self._metrics.predictions.labels(model_version=model.version, endpoint=endpoint).inc(rows)

    def _log_answer(self, records: list[Any], answer: Prediction | BatchPrediction) -> None:
        """Queue the rows for the prediction log; never raises, never blocks."""
        try:
            self._prediction_log.log(prediction_rows(records, answer))
        except Exception:  # logging must not cost a prediction
            logger.exception("could not queue %d row(s) for the prediction log", len(records))

    # --- champion reloads ----------------------------------------------------------------

    def _load(self, champion: Champion) -> ServedModel:
        """Load a model and check it answers the request schema this service was built with."""
        tag = champion.tag
        model = load_served_model(tag, champion.store)
        features = model.meta.get("features")
        if features is not None and list(features) != self._settings.contract.features:
            raise ModelStoreError(
                f"{tag} was trained on features {features}, but the service's contract has "
                f"{self._settings.contract.features}; restart the service with its contract"
            )
        return model

    def _reload(self, source: str) -> ReloadResult:
        """Serve the pointer's champion: load it fully, then swap one reference."""
        with self._reload_lock:
            before = self._model
            previous = before.tag if before else None
            try:
                champion = self._source.find(previous)
                if champion.tag == previous:
                    return ReloadResult(
                        changed=False,
                        tag=previous,
                        model_version=before.version if before else None,
                        previous_tag=previous,
                    )
                model = self._load(champion)
            except NoChampion as exc:  # nothing to serve yet: not an error
                _READINESS.waiting(str(exc))
                if source != "poll":
                    logger.warning("%s; not ready until there is one", exc)
                return ReloadResult(
                    changed=False,
                    tag=previous,
                    model_version=before.version if before else None,
                    previous_tag=previous,
                )
            except Exception as exc:  # keep serving what we have
                self._metrics.reloads.labels(outcome="failed").inc()
                repeated = source == "poll" and str(exc) == self._failed_reload
                logger.log(
                    logging.DEBUG if repeated else logging.ERROR,
                    "%s reload failed; still serving %s: %s",
                    source,
                    previous,
                    exc,
                )
                self._failed_reload = str(exc)
                _READINESS.waiting(str(exc))
                return ReloadResult(
                    changed=False,
                    tag=previous,
                    model_version=before.version if before else None,
                    previous_tag=previous,
                    error=str(exc),
                )
            self._model = model  # the swap: requests already scoring keep their reference
            _READINESS.serving(model.tag, champion.source)
            self._failed_reload = None
            if source != "start":  # the first load is no reload
                self._metrics.reloads.labels(outcome="swapped").inc()
            logger.info("%s reload: now serving %s (was %s)", source, model.tag, previous)
            return ReloadResult(
                changed=True, tag=model.tag, model_version=model.version, previous_tag=previous
            )

    def _watch_champion(self) -> None:
        """Re-read the pointer every `serving.reload_poll_s` and reload when it changed.

        A new tag is loaded completely, then one reference is swapped (`_reload`). A request
        scores with the model it picked up, so nothing in flight fails or mixes versions.
        """
        poll_s = self._settings.serving.reload_poll_s
        while not self._stopping.wait(poll_s):
            try:
                self._reload("poll")
                self._sync_log_metrics()
            except Exception:  # the watcher must outlive any surprise
                logger.exception("champion watcher: unexpected error; polling on")

    def _sync_log_metrics(self) -> None:
        """Carry the logger's running totals over to the Prometheus counters."""
        for name, counter in (
            ("dropped", self._metrics.log_dropped),
            ("write_errors", self._metrics.log_write_errors),
        ):
            total = int(getattr(self._prediction_log, name))
            if total > self._log_seen[name]:
                counter.inc(total - self._log_seen[name])
                self._log_seen[name] = total


# /readyz: 200 or 503 as BentoML's, with the model served and its source (or why none)
Predictor.add_asgi_middleware(ReadinessRoute, readiness=_READINESS)

# API key, body size, JSON and schema are checked before BentoML parses anything.
Predictor.add_asgi_middleware(
    RequestGate,
    protected=("/predict", "/predict_batch", "/admin/reload"),
    schemas={
        "/predict": ProcessRecord,
        "/predict_batch": ProcessBatch,
        "/admin/reload": ReloadRequest,
    },
    api_key_env=_SETTINGS.serving.api_key_env,
    max_body_bytes=_SETTINGS.serving.max_body_bytes,
    # one worker has nothing to rebalance: keep its connections open
    close_every=(
        _SETTINGS.serving.recycle_connection_every if _SETTINGS.serving.workers > 1 else 0
    ),
)


# /docs.json: BentoML's document, corrected to say what the routes take and answer
Predictor.add_asgi_middleware(
    OpenAPIDocument,
    build=lambda: correct_document(
        bentoml_openapi_document(Predictor), service_document(_SETTINGS)
    ),
)


def _configure_logging() -> None:
    """Our packages log at $LOG_LEVEL (INFO) through BentoML's handlers, which it set up."""
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    for package in OUR_PACKAGES:
        logging.getLogger(package).setLevel(level)


def _not_ready() -> JSONResponse:
    return JSONResponse(
        {"error": "no model loaded yet: deploy a champion (dvc repro) and retry"},
        status_code=503,
    )


def _warn_about_thread_settings(expected: int) -> None:
    """Oversubscribed OpenMP/BLAS pools cost 30x throughput here; say so at start-up.

    `lifecycle serve` sets the environment the numeric libraries read when they load
    (`OMP_NUM_THREADS` and friends), which no code in this module could set early enough.
    """
    from threadpoolctl import threadpool_info

    for pool in threadpool_info():
        threads = int(pool.get("num_threads") or 0)
        if threads > expected:
            logger.warning(
                "%s (%s) runs %d threads, serving.numeric_threads is %d: start the service "
                "with `lifecycle serve`, which sets OMP_NUM_THREADS and friends",
                pool.get("internal_api"),
                pool.get("prefix"),
                threads,
                expected,
            )
