"""The service's request and answer models, and what its OpenAPI document says of each route.

The models are built from the data contract when BentoML imports `serving.service`
(`service_models`): the request fields are the contract's columns, the answer's names come
from its `answer:` block.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict

from serving.champion_reload import ReloadRequest, ReloadResult
from serving.gate import API_KEY_HEADER
from serving.openapi import Answer, Operation, ServiceDocument
from serving.schema import (
    ErrorAnswer,
    InvalidRequest,
    build_answer_models,
    build_batch_model,
    build_record_model,
    example_record,
)
from serving.service_settings import ServiceSettings


@dataclass(frozen=True)
class ServiceModels:
    """The request bodies of the scoring routes and their answers."""

    record: type[BaseModel]
    batch: type[BaseModel]
    prediction: Any  # serving.schema's answer models (`from_probability`)
    batch_prediction: Any  # (`from_probabilities`)


def service_models(settings: ServiceSettings, module: str) -> ServiceModels:
    """The models for `settings`' contract; the request models are made in `module`."""
    contract = settings.contract
    record = _openapi_30(build_record_model(contract), module)
    batch = _openapi_30(
        build_batch_model(record, settings.serving.max_batch_rows),
        module,
        {"records": [example_record(contract)]},
    )
    answers = build_answer_models(contract)  # field names from the contract's `answer:`
    return ServiceModels(record, batch, answers.single, answers.batch)


def _openapi_30(model: type[BaseModel], module: str, example: Any = None) -> type[BaseModel]:
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
        "__module__": module,
        "__doc__": model.__doc__,
        "model_config": ConfigDict(json_schema_extra=extra),
    }
    return type(model.__name__, (model,), namespace)


def service_document(settings: ServiceSettings, models: ServiceModels) -> ServiceDocument:
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
                models.record,
                body_required=True,
                answers={200: Answer(models.prediction, "The answer for the record."), **scoring},
                summary=f"Score one record: the probability of {label}.",
            ),
            "/predict_batch": Operation(
                models.batch,
                body_required=True,
                answers={
                    200: Answer(models.batch_prediction, "One answer per record."),
                    **scoring,
                },
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
