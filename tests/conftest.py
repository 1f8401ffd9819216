"""Shared fixtures. Tests mirror the package: tests/plugins/ for zoo/plugins/, and so on."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from zoo import _pluginmanager


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo-cache")


@pytest.fixture(autouse=True)
def _cache_in_tmp(_session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """zoo's cache (bench exports) in a temporary directory of this test session (of this
    worker, under pytest-xdist), never ~/.cache; zoo processes the tests start inherit it."""
    monkeypatch.setenv("ZOO_CACHE_DIR", str(_session_cache))


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Rediscover plugins for this test (after it changed sys.path or env) and again after."""
    monkeypatch.delenv(_pluginmanager.STRICT_ENV, raising=False)
    monkeypatch.delenv(_pluginmanager.DISABLE_ENV, raising=False)
    _pluginmanager.reset_plugins()
    yield
    _pluginmanager.reset_plugins()


MakeDist = Callable[..., Path]


@pytest.fixture
def make_dist(tmp_path: Path) -> MakeDist:
    """Write an importable module plus a real ``.dist-info`` declaring ``zoo`` entry points.

    Returns the directory to put on ``sys.path`` / ``PYTHONPATH``: importlib.metadata finds
    the distribution there exactly as it finds an installed package.
    """
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)

    def make(
        dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]
    ) -> Path:
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = "\n".join(f"{name} = {target}" for name, target in entry_points.items())
        (info / "entry_points.txt").write_text(f"[zoo]\n{lines}\n")
        return site

    return make


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    def add(path: Path) -> None:
        monkeypatch.syspath_prepend(str(path))
        for name in list(sys.modules):
            if name.startswith("zoo_test_"):
                del sys.modules[name]

    return add
