"""sha256 of a file, without torch: the weight cache pins what it fetched with it
(`opengenie.features.weights`), and an evaluation records which weights it measured
(`opengenie.card.weights_digest`)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
