"""The champion model over HTTP: a BentoML 1.4 service. Start it with `lifecycle serve`.

Endpoints: `POST /predict` (one record), `POST /predict_batch` (`{"records": [...]}`),
`POST /admin/reload`, and BentoML's `/livez`, `/readyz`, `/metrics`, `/docs.json`.

The request schema is derived from the data contract, and BentoML needs it as a class when
this module is imported, so the module reads `params.yaml` once, at import
(`serving.service_settings`), and builds its models from it (`serving.api_models`). That
read is the only import-time effect: no model, store, thread or environment change
happens before BentoML builds the service. Every prediction is queued to the prediction log,
which never blocks or fails a request and is flushed when the service shuts down.

During a rollout (the pointer's `rollout` block) each worker serves the champion and the
other model as one pair (`serving.rollout`): in shadow the champion answers and the other
model scores the row after the answer (`serving.shadow`, which then logs it); in a canary
the candidate answers the share of ids its stable hash routes to it.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import bentoml
from starlette.responses import JSONResponse

from core import OUR_PACKAGES
from serving.api_models import service_document, service_models
from serving.batching import RowBatcher
from serving.bentoml_patches import bentoml_openapi_document, cancel_request_timeout_timers
from serving.champion_reload import ReloadRequest, ReloadResult, ServedChampion
from serving.champion_source import ChampionSource
from serving.gate import REQUEST_ID_HEADER, RequestGate, request_id_from
from serving.metrics import service_metrics
from serving.openapi import OpenAPIDocument, correct_document
from serving.prediction_log import PredictionLogger
from serving.prediction_log.shared import shared_log_sink
from serving.readiness import Readiness, ReadinessRoute
from serving.rollout import RowAnswer, ServedPair, log_row, score_rows
from serving.service_settings import load_settings
from serving.shadow import ShadowRow, ShadowScorer
from serving.shared_store import shared_store_url

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 60.0  # BentoML answers 504 after this; overridable with its config
LOG_CLOSE_TIMEOUT_S = 10.0
SHADOW_CLOSE_TIMEOUT_S = 10.0  # queued shadow rows scored at shutdown; the rest logged unscored

# configuration and models, made once when BentoML imports this module
_SETTINGS = load_settings()
_READINESS = Readiness()  # this worker's /readyz answer
_MODELS = service_models(_SETTINGS, __name__)
ProcessRecord = _MODELS.record
ProcessBatch = _MODELS.batch
Prediction = _MODELS.prediction
BatchPrediction = _MODELS.batch_prediction


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
        self._metrics = service_metrics()
        shared_url = shared_store_url(config.shared_store_env)
        source = ChampionSource(settings.store, shared_url, settings.packed)
        logger.info("the champion comes from %s", source.describe())
        self._champion = ServedChampion(
            source, settings.contract, _READINESS, self._metrics.reloads
        )
        self._champion.reload("start")
        _warn_about_thread_settings(config.numeric_threads)

        self._prediction_log = PredictionLogger(
            settings.prediction_log,
            queue_size=config.prediction_log.queue_size,
            flush_interval_s=config.prediction_log.flush_interval_s,
            sink=shared_log_sink(config, shared_url),  # None: files under `directory`
        )
        self._prediction_log.start()
        self._shadow = ShadowScorer(
            settings.contract,
            self._prediction_log.log,
            queue_rows=settings.shadow.queue_rows,
            max_batch_rows=settings.shadow.max_batch_rows,
            counted=self._metrics.shadow_rows,
            max_cpu_share=settings.shadow.max_cpu_share,
            max_lag_s=settings.shadow.max_lag_s,
            paired_every=settings.shadow.paired_every,
        )
        self._shadow.start()
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
        if self._champion.model is None:
            return _not_ready()
        start = time.perf_counter()
        row = (record, request_id)
        if self._batcher is not None:
            scored: RowAnswer = await self._batcher.submit(row)
        else:
            scored = (await self._in_thread(self._score, [row]))[0]
        self._observe("predict", [scored], start)
        model = scored.model  # the champion, or a canary's candidate for this id
        answer = Prediction.from_probability(
            scored.probability, model.threshold, model.version, request_id
        )
        self._log_answers([record], request_id, [scored])
        return answer

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, batch: ProcessBatch, /, ctx: bentoml.Context) -> BatchPrediction:
        """Score a batch of records in one model call; answers keep the request's order.

        `threshold` and `model_version` are the champion's; each record's `model_version`
        names the model that answered it (during a canary, the candidate for its ids).
        """
        request_id = request_id_from(ctx.request.headers.get(REQUEST_ID_HEADER))
        if self._champion.model is None:
            return _not_ready()
        records = list(batch.records)
        start = time.perf_counter()
        champion, scored = await self._in_thread(
            self._score_pair, [(record, request_id) for record in records]
        )
        self._observe("predict_batch", scored, start)
        answer = BatchPrediction.from_rows(
            [(a.probability, a.model.threshold, a.model.version) for a in scored],
            champion.threshold,
            champion.version,
            request_id,
        )
        self._log_answers(records, request_id, scored)
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
        result = await anyio.to_thread.run_sync(self._champion.reload, "admin")
        if result.error is not None:
            ctx.response.status_code = 500
        return result

    def __is_ready__(self) -> bool:
        return self._champion.model is not None

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        """Stop polling, drain the shadow scorer, then flush the prediction log: no row is lost.

        Shadow rows still queued after `SHADOW_CLOSE_TIMEOUT_S` are logged unscored.
        """
        self._stopping.set()
        if self._batcher is not None:
            self._batcher.stop()
        self._watcher.join(timeout=5)
        self._shadow.close(SHADOW_CLOSE_TIMEOUT_S)
        self._prediction_log.close(LOG_CLOSE_TIMEOUT_S)
        self._sync_log_metrics()
        logger.info(
            "prediction log closed: %d rows logged, %d dropped, %d write errors",
            self._prediction_log.logged,
            self._prediction_log.dropped,
            self._prediction_log.write_errors,
        )

    # --- scoring -------------------------------------------------------------------------

    def _score(self, rows: list[tuple[Any, str]]) -> list[RowAnswer]:
        """Each (record, request id) row's answer from the pair served when the call starts."""
        return self._score_pair(rows)[1]

    def _score_pair(self, rows: list[tuple[Any, str]]) -> tuple[Any, list[RowAnswer]]:
        """The champion of the pair that scored (one reference read) and each row's answer."""
        pair: ServedPair | None = self._champion.state
        if pair is None:
            raise RuntimeError("no model loaded")
        answers = score_rows(pair, rows, self._settings.contract, self._metrics.canary_fallbacks)
        return pair.champion, answers

    async def _in_thread(self, func: Callable[..., Any], *args: Any) -> Any:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._settings.serving.threads)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)

    def _observe(self, endpoint: str, answers: list[RowAnswer], start: float) -> None:
        self._metrics.latency.labels(endpoint=endpoint).observe(time.perf_counter() - start)
        rows: dict[str, int] = {}
        for answer in answers:
            rows[answer.model.version] = rows.get(answer.model.version, 0) + 1
        for version, count in rows.items():
            self._metrics.predictions.labels(model_version=version, endpoint=endpoint).inc(count)

    def _log_answers(self, records: list[Any], request_id: str, answers: list[RowAnswer]) -> None:
        """Queue the rows for the prediction log, through the shadow scorer during a rollout.

        Never raises, never blocks.
        """
        try:
            plain, shadowed = [], []
            for record, answer in zip(records, answers, strict=True):
                row = log_row(record, request_id, answer)
                if answer.needs_shadow:
                    shadowed.append(ShadowRow(row, record, answer.shadow, answer.model))
                else:
                    plain.append(row)
            if plain:
                self._prediction_log.log(plain)
            if shadowed:
                self._shadow.submit(shadowed)
        except Exception:  # logging must not cost a prediction
            logger.exception("could not queue %d row(s) for the prediction log", len(records))

    # --- the champion watcher --------------------------------------------------------

    def _watch_champion(self) -> None:
        """Re-read the pointer every `serving.reload_poll_s` and reload when it changed.

        A new tag is loaded completely, then one reference is swapped
        (`ServedChampion.reload`). A request scores with the model it picked up, so nothing
        in flight fails or mixes versions.
        """
        poll_s = self._settings.serving.reload_poll_s
        while not self._stopping.wait(poll_s):
            try:
                self._champion.reload("poll")
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
        bentoml_openapi_document(Predictor), service_document(_SETTINGS, _MODELS)
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
