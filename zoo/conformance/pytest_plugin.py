"""zoo's pytest plugin: the conformance kit in a plugin's own test suite.

Installed with zoo (entry point ``pytest11``), it does nothing unless asked, in one of two ways:

* ``pytest --zoo-conformance my-dist`` (repeatable; ``--zoo-conformance-formats onnx,pt2``
  narrows the export formats) adds one test per plugin or distribution named, which fails
  with the report of every check when any check fails;
* the ``zoo_conformance`` fixture, in a test of the plugin's own::

      def test_my_plugin_conforms(zoo_conformance):
          report = zoo_conformance("my-dist", formats=["onnx"])
          assert report.capabilities["my_model"].works("onnx")

Importing this module imports neither torch nor the kit (``zoo.conformance.kit``): a test
session that does not ask for the kit pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from zoo.conformance.kit import Report

__all__ = ["ConformanceFailed", "ConformanceItem", "zoo_conformance"]


class ConformanceFailed(Exception):
    """A plugin failed a check; the message is the whole report."""


def _run(target: str, formats: Sequence[str] | None, workdir: Path) -> Report:
    from zoo.conformance.kit import check_plugin  # here: it imports torch and the exporters

    report = check_plugin(target, formats=formats, workdir=workdir)
    if not report.ok:
        raise ConformanceFailed("\n".join(report.lines()))
    return report


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("zoo", "zoo plugin conformance")
    group.addoption(
        "--zoo-conformance",
        action="append",
        default=[],
        metavar="PLUGIN",
        help="Run zoo's conformance kit on PLUGIN (a plugin or distribution name) as a test "
        "(repeatable).",
    )
    group.addoption(
        "--zoo-conformance-formats",
        default=None,
        metavar="FORMATS",
        help="Comma-separated export formats the kit checks models with (default: all).",
    )


class ConformanceItem(pytest.Item):
    """One test: every conformance check of one plugin or distribution."""

    def __init__(self, *, target: str, formats: Sequence[str] | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.formats = formats

    def runtest(self) -> None:
        workdir = self.config._tmp_path_factory.mktemp("zoo-conformance")  # type: ignore[attr-defined]
        _run(self.target, self.formats, workdir)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ConformanceFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[str, int | None, str]:
        return "zoo-conformance", None, f"zoo conformance of {self.target}"


def _formats(config: pytest.Config) -> tuple[str, ...] | None:
    value = config.getoption("zoo_conformance_formats")
    return tuple(f.strip() for f in value.split(",") if f.strip()) if value else None


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    for target in config.getoption("zoo_conformance"):
        items.append(
            ConformanceItem.from_parent(
                session,
                name=f"zoo-conformance[{target}]",
                target=target,
                formats=_formats(config),
            )
        )


@pytest.fixture
def zoo_conformance(
    tmp_path: Path,
) -> Callable[..., Report]:
    """``zoo_conformance(target, formats=None)``: run the kit on a plugin or distribution;
    fails the test with the report of every check if any fails, else returns the report."""

    def check(target: str, *, formats: Sequence[str] | None = None) -> Report:
        try:
            return _run(target, formats, tmp_path / "zoo-conformance")
        except ConformanceFailed as exc:
            pytest.fail(str(exc), pytrace=False)

    return check
