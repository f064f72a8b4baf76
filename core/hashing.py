"""Content hashes of files and folders: one module for every hash the lifecycle records.

`file_sha256` guards integrity (model files, raw data); `file_md5` and `path_md5` are the
hashes DVC records in `dvc.lock` (a folder's is the MD5 of its sorted listing plus `.dir`),
so a data version in MLflow or the ledger compares with DVC's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

_CHUNK = 1 << 20


def file_sha256(path: Path | str) -> str:
    """SHA-256 of a file, read in chunks."""
    return _file_digest(path, hashlib.sha256())


def file_md5(path: Path | str) -> str:
    """The MD5 DVC records for a file in dvc.lock: the data version a run used."""
    return _file_digest(path, hashlib.md5())


def bytes_md5(content: bytes) -> str:
    """The MD5 of bytes already read (equal to `file_md5` of a file holding them)."""
    return hashlib.md5(content).hexdigest()


def path_md5(path: Path) -> str | None:
    """DVC's MD5 of a file or directory; None when the path does not exist."""
    if path.is_file():
        return file_md5(path)
    if path.is_dir():
        entries = [
            {"md5": file_md5(file), "relpath": file.relative_to(path).as_posix()}
            for file in path.rglob("*")
            if file.is_file()
        ]
        entries.sort(key=lambda entry: entry["relpath"])
        listing = json.dumps(entries, sort_keys=True).encode("utf-8")  # as DVC writes it
        return bytes_md5(listing) + ".dir"
    return None


def _file_digest(path: Path | str, digest: hashlib._Hash) -> str:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
