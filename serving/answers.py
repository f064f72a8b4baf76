"""The answer models of the prediction service, their field names from the data contract.

`build_answer_models` names the answer's probability and label fields as the contract's
`answer:` block says. `serving.schema` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from features.contract import DataContract


class Prediction(BaseModel):
    """The answer for one record; `build_answer_models` names its fields from the contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    probability_field: ClassVar[str] = "probability"
    label_field: ClassVar[str] = "predicted"

    @classmethod
    def from_probability(
        cls, probability: float, threshold: float, model_version: str, request_id: str
    ) -> Prediction:
        return cls.model_validate(
            {
                cls.probability_field: float(probability),
                cls.label_field: bool(probability >= threshold),
                "threshold": threshold,
                "model_version": model_version,
                "request_id": request_id,
            }
        )

    def scored(self) -> tuple[float, bool]:
        """(probability, predicted label), whatever the contract names them."""
        return getattr(self, self.probability_field), getattr(self, self.label_field)


class RecordPrediction(BaseModel):
    """One record's answer within a batch; fields named from the contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    probability_field: ClassVar[str] = "probability"
    label_field: ClassVar[str] = "predicted"

    def scored(self) -> tuple[float, bool]:
        return getattr(self, self.probability_field), getattr(self, self.label_field)


class BatchPrediction(BaseModel):
    """The answers for a batch, in request order; what every row shares is stated once."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    probability_field: ClassVar[str] = "probability"
    label_field: ClassVar[str] = "predicted"

    @classmethod
    def from_probabilities(
        cls,
        probabilities: Sequence[float] | np.ndarray,
        threshold: float,
        model_version: str,
        request_id: str,
    ) -> BatchPrediction:
        scores = np.asarray(probabilities, dtype=np.float64)
        predicted = (scores >= threshold).tolist()
        return cls.model_validate(
            {
                "predictions": [
                    {cls.probability_field: p, cls.label_field: f, "model_version": model_version}
                    for p, f in zip(scores.tolist(), predicted, strict=True)
                ],
                "threshold": threshold,
                "model_version": model_version,
                "request_id": request_id,
            }
        )

    @classmethod
    def from_rows(
        cls,
        rows: Sequence[tuple[float, float, str]],
        threshold: float,
        model_version: str,
        request_id: str,
    ) -> BatchPrediction:
        """Rows answered by different models: each (probability, its threshold, its version).

        `threshold` and `model_version` at the top are the champion's; each row's
        `model_version` names the model that answered it (a canary's candidate, say), and
        its label is decided at that model's own threshold.
        """
        return cls.model_validate(
            {
                "predictions": [
                    {
                        cls.probability_field: float(p),
                        cls.label_field: bool(p >= cut),
                        "model_version": version,
                    }
                    for p, cut, version in rows
                ],
                "threshold": threshold,
                "model_version": model_version,
                "request_id": request_id,
            }
        )

    def scored(self) -> list[tuple[float, bool]]:
        """Each record's (probability, predicted label), in request order."""
        return [record.scored() for record in self.predictions]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class AnswerModels:
    """The response models of one contract: one record's answer, a batch row, a batch."""

    single: type[Prediction]
    record: type[RecordPrediction]
    batch: type[BatchPrediction]


def build_answer_models(contract: DataContract) -> AnswerModels:
    """The answer models, their two scored fields named by the contract's `answer` block.

    `Prediction` is {probability, label, threshold, model_version, request_id};
    `BatchPrediction` is {predictions: [{probability, label, model_version}], threshold,
    model_version, request_id}, with the contract's names for probability and label; at
    the top the champion's threshold and version, in each row the version that answered.
    """
    probability, label = contract.probability_field, contract.label_field
    about = (
        f"The model's probability that '{contract.label}' is 1 (the positive class), "
        "for this record."
    )
    decided = f"True when {probability} >= threshold: the predicted '{contract.label}'."
    scored = {
        probability: (float, Field(ge=0, le=1, description=about)),
        label: (bool, Field(description=decided)),
    }
    shared = {
        "threshold": (
            float,
            Field(ge=0, le=1, description="The operating threshold chosen at evaluation."),
        ),
        "model_version": (str, Field(description="The registered model version that answered.")),
        "request_id": (str, Field(description="This request's id; the prediction log keys on it.")),
    }
    names = {"probability_field": probability, "label_field": label}
    answered_by = {
        "model_version": (
            str,
            Field(
                description="The registered model version that answered this record: the "
                "champion's, or during a canary rollout the candidate's for the records "
                "routed to it (its label is decided at its own threshold)."
            ),
        )
    }
    record = _answer_model(
        RecordPrediction, "One record's answer within a batch.", {**scored, **answered_by}, names
    )
    single = _answer_model(Prediction, "The answer for one record.", {**scored, **shared}, names)
    rows = (
        list[record],  # type: ignore[valid-type]
        Field(description="One answer per record, in the request's order."),
    )
    champion = {
        "threshold": (
            float,
            Field(
                ge=0,
                le=1,
                description="The champion's operating threshold (chosen at evaluation).",
            ),
        ),
        "model_version": (
            str,
            Field(
                description="The champion's registered version; each record's own "
                "`model_version` says which model answered it."
            ),
        ),
        "request_id": shared["request_id"],
    }
    batch = _answer_model(
        BatchPrediction,
        "The answers for a batch, in request order; what every row shares is stated once.",
        {"predictions": rows, **champion},
        names,
    )
    return AnswerModels(single=single, record=record, batch=batch)


def _answer_model(
    base: type[Any], doc: str, fields: dict[str, tuple[Any, FieldInfo]], names: dict[str, str]
) -> Any:
    """A subclass of `base` named like it, with `fields` in order and its field-name ClassVars."""
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": doc,
        "__qualname__": base.__name__,
        "__annotations__": {name: kind for name, (kind, _) in fields.items()},
        **{name: info for name, (_, info) in fields.items()},
        **names,
    }
    return type(base.__name__, (base,), namespace)
