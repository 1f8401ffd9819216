"""A real third-party plugin package, installed in a throwaway location, driven by the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import install_example
from tests.helpers import run_zoo as _zoo


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install`` the example package (built for real, offline) into a fresh target."""
    target = install_example("zoo-plugin-example", tmp_path_factory.mktemp("site"))
    assert list(target.glob("zoo_plugin_example-0.1.0.dist-info"))
    return target


def test_installed_plugin_model_is_listed_created_and_reported(installed_example: Path) -> None:
    listed = _zoo("list", "tiny*", "--json", path=installed_example)
    assert listed.returncode == 0, listed.stderr
    (spec,) = json.loads(listed.stdout)
    assert (spec["name"], spec["plugin"]) == ("tiny_mlp", "example")

    plugins = {
        r["name"]: r for r in json.loads(_zoo("plugins", "--json", path=installed_example).stdout)
    }
    example = plugins["example"]
    assert example["status"] == "loaded" and example["builtin"] is False
    assert (example["distribution"], example["version"]) == ("zoo-plugin-example", "0.1.0")
    assert example["models"] == ["tiny_mlp"] and example["hooks"] == ["zoo_register_models"]

    info = _zoo("info", "tiny_mlp", "--arg", "hidden=32", path=installed_example)
    assert info.returncode == 0, info.stderr
    assert "25,450 (25,450 trainable)" in info.stdout  # 784*32+32 + 32*10+10
    assert "plugin      example (zoo-plugin-example 0.1.0)" in info.stdout

    code = (
        "import zoo, torch; m = zoo.create_model('tiny_mlp', num_classes=4); "
        "print(tuple(m(torch.zeros(2, 1, 28, 28)).shape))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(installed_example)},
    )
    assert out.stdout.strip() == "(2, 4)"


def test_disabling_the_plugin_by_distribution_name(installed_example: Path) -> None:
    listed = _zoo(
        "list", "--json", path=installed_example, ZOO_DISABLE_PLUGINS="zoo-plugin-example"
    )
    assert "tiny_mlp" not in [s["name"] for s in json.loads(listed.stdout)]
    plugins = {
        r["name"]: r
        for r in json.loads(
            _zoo("plugins", "--json", path=installed_example, ZOO_DISABLE_PLUGINS="example").stdout
        )
    }
    assert plugins["example"]["status"] == "disabled"


@pytest.fixture
def broken_site(make_dist) -> Path:  # type: ignore[no-untyped-def]
    return make_dist(
        "zoo-broken-plugins",
        "0.0.1",
        {
            "zoo_test_crash_on_import": "raise RuntimeError('this plugin is broken')\n",
            "zoo_test_crash_in_hook": """
                import zoo

                @zoo.hookimpl
                def zoo_register_models(registry):
                    raise ValueError("cannot register today")
            """,
        },
        {"crash_import": "zoo_test_crash_on_import", "crash_hook": "zoo_test_crash_in_hook"},
    )


def test_broken_plugins_never_take_zoo_down(broken_site: Path) -> None:
    for args in (["--help"], ["list"], ["info", "lenet"]):
        result = _zoo(*args, path=broken_site)
        assert result.returncode == 0, (args, result.stderr)
    listed = _zoo("list", path=broken_site)
    assert "lenet" in listed.stdout
    assert "zoo: warning: plugin 'crash_import' (zoo-broken-plugins 0.0.1) failed" in listed.stderr
    assert "RuntimeError: this plugin is broken" in listed.stderr
    assert "Traceback" not in listed.stderr

    records = {r["name"]: r for r in json.loads(_zoo("plugins", "--json", path=broken_site).stdout)}
    assert records["crash_import"]["status"] == "failed"
    assert records["crash_import"]["entry_point"] == "zoo_test_crash_on_import"
    assert records["crash_hook"]["error"] == "ValueError: cannot register today"


def test_strict_mode_makes_a_broken_plugin_fatal(broken_site: Path) -> None:
    result = _zoo("list", path=broken_site, ZOO_STRICT_PLUGINS="1")
    assert result.returncode == 1
    assert result.stderr.startswith("zoo: error: plugin 'crash_hook'")
    assert "ZOO_STRICT_PLUGINS=1" in result.stderr
    quiet = _zoo("list", path=broken_site, ZOO_DISABLE_PLUGINS="crash_import,crash_hook")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_the_example_image_model_trains_and_exports_as_a_uint8_bundle(
    installed_example: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    trained = _zoo(
        "train",
        "tiny_mlp",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--no-tensorboard",
        "--out",
        str(run),
        path=installed_example,
    )
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "export"
    done = _zoo(
        "export",
        "tiny_mlp",
        "--checkpoint",
        str(run),
        "--format",
        "onnx",
        "--out",
        str(out),
        path=installed_example,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"][0]["dtype"] == "uint8"
    assert manifest["inputs"][0]["shape"] == ["batch", 28, 28, 1]
    assert [s["op"] for s in manifest["preprocessing"]] == [
        "ToFloat",
        "Resize",
        "ToChannels",
        "Normalize",
    ]
    assert manifest["formats"]["onnx"]["parity"]["passed"]
