"""The kit as a pytest plugin, as a plugin's own CI uses it: a real pytest process, with the
example plugin and a non-conforming one installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _pytest(
    directory: Path, *args: str, sites: tuple[Path, ...]
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, sites))}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        env=env,
    )


def test_the_fixture_passes_a_conforming_plugin_and_fails_a_broken_one_with_its_report(
    examples_site: Path, seven_site: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_conformance.py").write_text(
        textwrap.dedent(
            """
            def test_example_conforms(zoo_conformance):
                report = zoo_conformance("zoo-plugin-example", formats=["onnx"])
                assert report.capabilities["tiny_mlp"].works("onnx")

            def test_seven_conforms(zoo_conformance):
                zoo_conformance("zoo-test-seven", formats=["onnx"])
            """
        )
    )
    result = _pytest(suite, sites=(examples_site, seven_site))
    assert "1 failed, 1 passed" in result.stdout, result.stdout + result.stderr
    assert "FAIL  model seven / outputs: model 'seven': output 'logits' is [B, 7]" in result.stdout
    assert "zoo-test-seven does NOT conform" in result.stdout


def test_the_option_adds_one_test_per_plugin_and_nothing_without_it(
    examples_site: Path, seven_site: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "empty"
    suite.mkdir()
    result = _pytest(
        suite,
        "--zoo-conformance",
        "zoo-regression",
        "--zoo-conformance",
        "seven",
        "--zoo-conformance-formats",
        "torchscript",
        "-rA",
        sites=(examples_site, seven_site),
    )
    assert result.returncode == 1
    assert "PASSED ::zoo-conformance[zoo-regression]" in result.stdout, result.stdout
    assert "FAILED ::zoo-conformance[seven]" in result.stdout
    assert "seven does NOT conform: 2 passed, 1 failed, 0 skipped" in result.stdout
    # Without the option the plugin adds no test (and the kit is not even imported).
    quiet = _pytest(suite, sites=(examples_site,))
    assert "no tests ran" in quiet.stdout
