"""Shared fixtures. Tests mirror the package: tests/plugins/ for zoo/plugins/, and so on."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
def check_in_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """``zoo export --check`` (through click's runner) checks in this process: the two calls
    the child process of :func:`zoo.export.checking.check_bounded` makes, without the second
    or so the child spends importing torch. For tests of what the check says; the child, its
    time bound and its crashes are tested through the real ``zoo`` (tests/hostile)."""

    def check_here(directory: str | Path, timeout: float = 0) -> tuple[Any, Any]:
        from zoo.export.exporter import check_accuracy, check_export

        return check_export(directory), check_accuracy(directory)  # as the child's _main

    monkeypatch.setattr("zoo.export.checking.check_bounded", check_here)


@pytest.fixture(scope="session")
def _ceilings() -> dict[Any, dict[str, Any]]:
    return {}


@pytest.fixture
def one_ceiling_a_session(
    _ceilings: dict[Any, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``zoo bench`` (run in this process) measures the matmul ceiling of each device and
    precision in a worker of its own, 5 s of a 2-core CI machine, before every run: here the
    runs take the first run's measurement of this session (a real one, by the same worker,
    on this machine) instead of measuring it again. A failed measurement is not kept."""
    from zoo.bench import runner
    from zoo.bench.worker import CeilingJob

    spawn = runner._spawn

    def once(job: Any, timeout: float) -> dict[str, Any]:
        if not isinstance(job, CeilingJob):
            return spawn(job, timeout)
        if job not in _ceilings:
            measured = spawn(job, timeout)
            if measured.get("status") != "ok":
                return measured
            _ceilings[job] = measured
        return _ceilings[job]

    monkeypatch.setattr(runner, "_spawn", once)


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
