"""Process set-up shared by every entry point: logging, timing, and clean failure."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

# Errors raised by our own packages carry a message meant for the user: no traceback.
OUR_PACKAGES = frozenset({"pipelines", "features", "models", "serving", "monitoring"})


def configure_logging(level: str | None = None) -> None:
    """Configure logging once, in the entry point."""
    logging.basicConfig(
        level=(level or os.environ.get("LOG_LEVEL", "INFO")).upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # httpx logs every request's full URL at INFO, credentials and query tokens included
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextlib.contextmanager
def timed(what: str) -> Iterator[None]:
    """Log the start of a block and how long it took."""
    start = time.perf_counter()
    logger.info("%s: started", what)
    try:
        yield
    finally:
        logger.info("%s: done in %.2f s", what, time.perf_counter() - start)


def run_stage(name: str, body: Callable[[], None]) -> None:
    """Run a stage's body; on failure log a readable message and exit non-zero."""
    configure_logging()
    start = time.perf_counter()
    logger.info("stage %s: started", name)
    try:
        body()
    except Exception as exc:  # the edge of the process: report, then exit non-zero
        if type(exc).__module__.split(".")[0] in OUR_PACKAGES:
            logger.error("stage %s failed: %s", name, exc)
        else:
            logger.exception("stage %s failed with an unexpected error", name)
        logger.info("stage %s: failed after %.2f s", name, time.perf_counter() - start)
        sys.exit(1)
    logger.info("stage %s: succeeded in %.2f s", name, time.perf_counter() - start)
