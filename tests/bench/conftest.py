from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture(autouse=True)
def _cache_in_tmp(bench_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """On-the-fly exports go to a temporary cache shared by the bench tests, never ~/.cache."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(bench_cache))
    yield


@pytest.fixture(autouse=True)
def _ceiling_once(one_ceiling_a_session: None) -> None:
    """The ceiling each run is measured against, measured once a session (tests/conftest.py)."""
