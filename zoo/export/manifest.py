"""``manifest.json``: what an export holds, how it was made, and proof that it matches eager."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from zoo.errors import ZooError

__all__ = ["MANIFEST", "ArtifactError", "read_manifest", "sha256", "verify_files"]

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ArtifactError(ZooError):
    """An export directory is missing, corrupt, or fails its parity check."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{directory} has no {MANIFEST}: not a zoo export directory") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format {manifest.get('format_version')!r}, not 1")
    return manifest


def verify_files(directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems with the files the manifest lists (missing, or sha256 mismatch)."""
    problems = []
    for name, entry in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 does not match the manifest (modified or corrupt)")
    return problems
