"""The model card at the MLflow edge: logged with the version's run, kept as its description.

A promoted version's card (`models.model_card`) goes to the version's run (the train run)
as `model_card/card.md` and `model_card/card.html`, and, fitted to MLflow's limit, becomes
the registry version's description, which the MLflow UI shows on the version's page.
`champion_card` reads it back for `lifecycle champion --card`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from models.model_card import CARD_FILE, CARD_HTML_FILE, SHORTENED_NOTE, fit_card
from pipelines.edges import registry
from pipelines.edges import registry_client as calls
from pipelines.edges.registry_client import RegistryError

logger = logging.getLogger(__name__)

ARTIFACT_DIR = "model_card"
CARD_ARTIFACT = f"{ARTIFACT_DIR}/{CARD_FILE}"
# MLflow's model_versions.description is String(5000): PostgreSQL and MySQL refuse longer text
MAX_DESCRIPTION_CHARS = 5000
_CARD_START = "# Model card:"
_SHORTENED = SHORTENED_NOTE.split("{", 1)[0]
_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def publish_card(name: str, version: int, run_id: str, markdown: str, html: str) -> str:
    """Log the card with `run_id` and set it as `name` v`version`'s description; returns the
    description set (the card, or its leading sections when it is too long)."""
    description = fit_card(markdown, MAX_DESCRIPTION_CHARS, CARD_ARTIFACT)
    with calls.registry_call(f"publishing the model card of {name!r} v{version}"):
        client = calls.open_client()
        client.log_text(run_id, markdown, CARD_ARTIFACT)
        client.log_text(run_id, html, f"{ARTIFACT_DIR}/{CARD_HTML_FILE}")
        client.update_model_version(name, str(version), description=description)
    shortened = " (shortened)" if description != markdown else ""
    logger.info(
        "model card of %s v%d: run %s artifact %s, and the version's description%s",
        name,
        version,
        run_id,
        CARD_ARTIFACT,
        shortened,
    )
    return description


def champion_card(name: str) -> str:
    """The champion's card: its description when that is the whole card, else the run's
    artifact. Raises `RegistryError` when there is no champion, or it has no card."""
    info = registry.champion(name)
    if info is None:
        raise RegistryError(f"{name!r} has no champion: no version was promoted yet")
    with calls.registry_call(f"reading the model card of {name!r} v{info.version}"):
        description = (
            calls.get_ready_version(calls.open_client(), name, info.version).description or ""
        )
    is_card = description.startswith(_CARD_START)
    if is_card and _SHORTENED not in description:
        return description
    artifact = _read_artifact(info.run_id) if info.run_id else None
    if artifact is not None:
        return artifact
    if is_card:
        return description
    raise RegistryError(
        f"{name!r} v{info.version} has no model card (the deploy stage writes one when it "
        "promotes a version)"
    )


def _read_artifact(run_id: str) -> str | None:
    """The run's `model_card/card.md`, or None when it has none (or it cannot be fetched)."""
    from mlflow.exceptions import MlflowException

    try:
        with (
            calls.registry_call(f"fetching {CARD_ARTIFACT} of run {run_id}"),
            _no_progress_bar(),
            tempfile.TemporaryDirectory(prefix="card-") as tmp,
        ):
            client = calls.open_client()
            if CARD_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, ARTIFACT_DIR)}:
                return None
            local = client.download_artifacts(run_id, CARD_ARTIFACT, tmp)
            return Path(local).read_text(encoding="utf-8")
    except calls.RegistryUnavailableError:
        raise
    except (RegistryError, MlflowException, OSError) as exc:
        logger.info("no %s in run %s (%s)", CARD_ARTIFACT, run_id, exc)
        return None


@contextlib.contextmanager
def _no_progress_bar() -> Iterator[None]:
    """MLflow's download progress bar off (on stderr it would clutter a one-file fetch),
    unless the environment chose."""
    added = _PROGRESS_BAR not in os.environ
    if added:
        os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if added:
            os.environ.pop(_PROGRESS_BAR, None)
