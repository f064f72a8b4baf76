"""Names a user's words become: a slug for files and contracts, and the registered model's name.

The registered model's name is also the BentoML model and Bento name (`<name>:v3`), so it
must be a valid BentoML tag name, which is the stricter of the two: lowercase letters,
digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters.
MLflow accepts every such name.
"""

from __future__ import annotations

import re

MODEL_NAME_MAX = 63
MODEL_NAME = re.compile(r"[a-z0-9]([-._a-z0-9]*[a-z0-9])?")
MODEL_NAME_RULE = (
    "lowercase letters, digits, '-', '_' or '.', starting and ending with a letter or digit, "
    f"at most {MODEL_NAME_MAX} characters"
)
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """`text` in lowercase with each run of other characters as one '-': `WDBC data` -> `wdbc-data`.

    Empty when `text` holds no ASCII letter or digit.
    """
    return _NOT_SLUG.sub("-", text.lower()).strip("-")


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot name a registered model (and its BentoML models and Bento), or None."""
    if len(name) > MODEL_NAME_MAX:
        return f"it is longer than {MODEL_NAME_MAX} characters"
    if not MODEL_NAME.fullmatch(name):
        return f"use {MODEL_NAME_RULE}"
    return None
