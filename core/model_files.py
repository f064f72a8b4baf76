"""Saving and loading a fitted pipeline with skops, trusting only the types it needs.

A model directory holds `model.skops` and `meta.json` (family, features, label, the exact
trusted types, hashes). Loading refuses any type that is neither skops' default trust nor
listed in `meta.json`.

Two hashes: `sha256` of the file guards its integrity; `content_sha256` identifies the model.
skops files embed memory addresses, so equal models give different files; the content hash
is taken over the fitted object's pickle bytes (hashed in memory, never stored), which are
equal for equal models, across processes and hash seeds.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.hashing import file_sha256
from core.io import read_json, write_atomic, write_json

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

MODEL_FILE = "model.skops"
META_FILE = "meta.json"


class ModelFileError(RuntimeError):
    """A model directory that is missing, incomplete or holds untrusted types."""


@dataclass(frozen=True)
class LoadedModel:
    pipeline: Pipeline
    meta: dict[str, Any]


def model_content_hash(model: Pipeline) -> str:
    """An identity for a fitted model: equal models, equal hash."""
    return hashlib.sha256(pickle.dumps(model, protocol=5)).hexdigest()


def save_model(model: Pipeline, directory: Path, meta: dict[str, Any], trusted: list[str]) -> str:
    """Write the model and its metadata atomically; returns the model's content hash."""
    import skops.io as sio  # 1-2 s to import (it lists every estimator): only where used

    directory = Path(directory)
    target = directory / MODEL_FILE
    write_atomic(target, lambda tmp: sio.dump(model, tmp))
    untrusted = sorted(sio.get_untrusted_types(file=target))
    if sorted(untrusted) != sorted(trusted):
        raise ModelFileError(
            f"model needs trusted types {untrusted}, but the declared list is {sorted(trusted)}"
        )
    content = model_content_hash(model)
    meta = {
        **meta,
        "trusted_types": sorted(trusted),
        "sha256": file_sha256(target),
        "content_sha256": content,
    }
    write_json(meta, directory / META_FILE)
    return content


def load_model(directory: Path) -> LoadedModel:
    """Load a model saved by `save_model`, trusting only the types its metadata lists."""
    import skops.io as sio

    directory = Path(directory)
    model_path, meta_path = directory / MODEL_FILE, directory / META_FILE
    if not model_path.exists() or not meta_path.exists():
        raise ModelFileError(f"{directory}: no model here (expected {MODEL_FILE} and {META_FILE})")
    meta = read_json(meta_path)
    if file_sha256(model_path) != meta.get("sha256"):
        raise ModelFileError(f"{model_path}: content does not match the hash in {META_FILE}")
    trusted = list(meta.get("trusted_types", []))
    unexpected = sorted(set(sio.get_untrusted_types(file=model_path)) - set(trusted))
    if unexpected:
        raise ModelFileError(f"{model_path}: refusing untrusted types {unexpected}")
    return LoadedModel(pipeline=sio.load(model_path, trusted=trusted), meta=meta)
