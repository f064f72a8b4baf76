"""The service's OpenAPI document, made to tell the truth about what the service answers.

BentoML 1.4 documents every API route with its own generic answers (200, and 400/404/500
as `{"error": str, "detail": str}`), marks no request body required, and flattens each
top-level `X | None` field to `X`, so a field that answers or accepts null is documented as
never null. `correct_document` rewrites the document BentoML builds: each of our operations
gets its request and answer schemas from our pydantic models in OpenAPI 3.0 form
(`nullable: true`, one `example`), `requestBody.required` where a body is required, and
exactly the status codes the request gate and the service answer, with their bodies.
`OpenAPIDocument` serves the corrected document at `/docs.json`.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from serving.gate import send_json

logger = logging.getLogger(__name__)

DOCUMENT_PATH = "/docs.json"
REF_PREFIX = "#/components/schemas/"
API_KEY_SCHEME = "apiKey"


@dataclass(frozen=True)
class Answer:
    """One documented answer of an operation: its body's model and when it is given."""

    model: type[BaseModel]
    description: str


@dataclass(frozen=True)
class Operation:
    """What one POST route takes and answers, by status code."""

    request: type[BaseModel]
    body_required: bool
    answers: Mapping[int, Answer]
    protected: bool = True  # behind the API key when one is configured
    summary: str = ""


@dataclass(frozen=True)
class ServiceDocument:
    """Everything `correct_document` changes in BentoML's document."""

    title: str
    description: str
    operations: Mapping[str, Operation]
    api_key_header: str | None = None  # set when requests need an API key
    extra_answers: Mapping[str, Mapping[int, str]] = field(default_factory=dict)  # GET routes


def correct_document(spec: Mapping[str, Any], service: ServiceDocument) -> dict[str, Any]:
    """BentoML's document with our operations, answers, title and security stated as they are.

    Components no longer referenced (BentoML's `*IODescriptor` and generic error schemas)
    are dropped, so the document shows one schema per model.
    """
    document = copy.deepcopy(dict(spec))
    components: dict[str, Any] = dict(document.get("components", {}).get("schemas", {}))
    document["info"] = {
        **document.get("info", {}),
        "title": service.title,
        "description": service.description,
    }
    document["info"].pop("contact", None)
    for path, operation in service.operations.items():
        post = document.get("paths", {}).get(path, {}).get("post")
        if post is None:
            raise ValueError(f"BentoML's OpenAPI document has no POST {path} to correct")
        components.update(openapi_components(operation.request, "validation"))
        post["requestBody"] = {
            "required": operation.body_required,
            "content": {"application/json": {"schema": _ref(operation.request)}},
        }
        responses = {}
        for status, answer in sorted(operation.answers.items()):
            components.update(openapi_components(answer.model, "serialization"))
            responses[str(status)] = {
                "description": answer.description,
                "content": {"application/json": {"schema": _ref(answer.model)}},
            }
        post["responses"] = responses
        if operation.summary:
            post["summary"] = operation.summary
        if service.api_key_header and operation.protected:
            post["security"] = [{API_KEY_SCHEME: []}]
    for path, answers in service.extra_answers.items():
        for item in document.get("paths", {}).get(path, {}).values():
            for status, description in answers.items():
                item.setdefault("responses", {})[str(status)] = {"description": description}
    document["components"] = {**document.get("components", {}), "schemas": components}
    if service.api_key_header:
        document["components"]["securitySchemes"] = {
            API_KEY_SCHEME: {"type": "apiKey", "in": "header", "name": service.api_key_header}
        }
    document["components"]["schemas"] = _referenced(document, components)
    return document


def openapi_components(model: type[BaseModel], mode: str) -> dict[str, Any]:
    """The model's schema and those it refers to, as OpenAPI 3.0 components by name.

    JSON Schema's `anyOf: [X, {type: null}]` becomes X with `nullable: true`, an `examples`
    list becomes one `example`, and `const` becomes a one-value `enum`.
    """
    schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}", mode=mode)  # type: ignore[arg-type]
    defs = schema.pop("$defs", {})
    return {name: _openapi_30(node) for name, node in {**defs, model.__name__: schema}.items()}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF_PREFIX + model.__name__}


def _openapi_30(node: Any) -> Any:
    if isinstance(node, list):
        return [_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _openapi_30(value) for key, value in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [option for option in options if option != {"type": "null"}]
            del node[key]
            if len(rest) == 1 and "$ref" in rest[0]:
                node["allOf"] = rest  # a $ref's siblings are ignored in OpenAPI 3.0
            elif len(rest) == 1:
                node = {**rest[0], **node}
            else:
                node[key] = rest
            node["nullable"] = True
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
    if "examples" in node and isinstance(node["examples"], list):
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    if "const" in node:
        node["enum"] = [node.pop("const")]
    return node


def _referenced(document: Mapping[str, Any], components: Mapping[str, Any]) -> dict[str, Any]:
    """The components reachable from the document's paths (transitively)."""
    wanted: set[str] = set()
    queue = _refs(document.get("paths", {}))
    while queue:
        name = queue.pop()
        if name in wanted or name not in components:
            continue
        wanted.add(name)
        queue |= _refs(components[name])
    return {name: schema for name, schema in components.items() if name in wanted}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"][len(REF_PREFIX) :]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*map(_refs, node)) if node else set()
    return set()


class OpenAPIDocument:
    """ASGI middleware: `GET /docs.json` answers the corrected document, built on first ask.

    Every other request passes through. If the document cannot be built, the answer is a
    500 naming why and the log has one line, not a traceback.
    """

    def __init__(self, app: Any, *, build: Callable[[], Mapping[str, Any]]) -> None:
        self.app = app
        self.build = build
        self._body: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != DOCUMENT_PATH or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        status = 200
        if self._body is None:
            try:
                self._body = json.dumps(self.build()).encode("utf-8")
            except Exception as exc:  # the service still serves; only its document is missing
                logger.error("could not build the OpenAPI document: %s", exc)
                status, body = 500, {"error": f"could not build the OpenAPI document: {exc}"}
        payload = self._body if status == 200 else json.dumps(body).encode("utf-8")
        await send_json(send, status, payload)
