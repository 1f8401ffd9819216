"""The dataset registry, list_datasets, load_dataset's argument handling, default_data_dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

import zoo.data
from zoo.data import default_dataset_registry, list_datasets, load_dataset
from zoo.datasets import DatasetInfo, DatasetRegistry, DataSplits, LoadRequest, default_data_dir
from zoo.errors import (
    DataMismatchError,
    DuplicateNameError,
    InvalidSpecError,
    UnknownDatasetError,
    UsageError,
)
from zoo.registry import InputSpec

BUILTINS = [
    "cifar10",
    "digits",
    "fashion-mnist",
    "imagefolder:PATH",
    "mnist",
    "mnist5k",
    "names",
    "textfolder:PATH",
]


def test_list_datasets_names_every_builtin_sorted_with_a_description() -> None:
    listed = list_datasets()
    assert [name for name, _ in listed] == BUILTINS
    assert all(description and "\n" not in description for _, description in listed)


def test_unknown_dataset_suggests_close_names(lenet_input: InputSpec) -> None:
    with pytest.raises(UnknownDatasetError) as caught:
        load_dataset("mnist5", lenet_input)
    assert "mnist5k" in caught.value.suggestions
    assert "did you mean 'mnist5k'" in str(caught.value)
    assert isinstance(caught.value, KeyError)


def test_unknown_dataset_without_close_names_points_to_the_listing() -> None:
    with pytest.raises(UnknownDatasetError, match="zoo datasets"):
        default_dataset_registry().get("qqqqqqq")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("imagefolder", "imagefolder:PATH"),
        ("imagefolder:", "imagefolder:PATH"),
        ("names:x", "names"),
        ("names:", "names"),
    ],
)
def test_argument_missing_or_unexpected_suggests_the_right_form(name: str, suggestion: str) -> None:
    with pytest.raises(UnknownDatasetError) as caught:
        default_dataset_registry().get(name)
    assert caught.value.suggestions == [suggestion]


def test_argument_keeps_colons_after_the_first(tmp_path: Path, lenet_input: InputSpec) -> None:
    registry = DatasetRegistry()
    seen: list[str | None] = []

    def loader(request: LoadRequest) -> DataSplits:
        seen.append(request.argument)
        return _tiny_splits(request)

    registry.register("echo", loader, "test", argument="PATH")
    load_dataset("echo:C:/a:b", lenet_input, registry=registry)
    assert seen == ["C:/a:b"]


def _tiny_splits(request: LoadRequest) -> DataSplits:
    info = DatasetInfo(request.name, "image", 2, ("a", "b"), "tiny", "memory", channels=1)
    request.check(info)
    data = TensorDataset(torch.zeros(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]))
    return DataSplits(data, data, data, info)


def test_plugin_loader_gets_the_request_and_its_info_is_checked(lenet_input: InputSpec) -> None:
    registry = DatasetRegistry()
    requests: list[LoadRequest] = []

    def loader(request: LoadRequest) -> DataSplits:
        requests.append(request)
        return _tiny_splits(request)

    registry.register("tiny", loader, "two classes of zeros", plugin="zoo-test")
    splits = load_dataset("tiny", lenet_input, registry=registry, seed=3, data_dir="~/x")
    assert splits.info.num_classes == 2
    (request,) = requests
    assert (request.seed, request.argument, request.download) == (3, None, True)
    assert request.data_dir == Path("~/x").expanduser()
    assert request.input is lenet_input

    # A loader that never calls request.check() is still checked on what it returns.
    registry.register("unchecked", lambda r: DataSplits(*([[]] * 3), _colour(r.name)), "x")
    with pytest.raises(DataMismatchError, match="1 channel"):
        load_dataset("unchecked", lenet_input, registry=registry)


def _colour(name: str) -> DatasetInfo:
    return DatasetInfo(name, "image", 2, ("a", "b"), "colour", "memory", channels=3)


def test_declared_kind_fails_before_the_loader_runs(lstm_input: InputSpec) -> None:
    registry = DatasetRegistry()

    def loader(request: LoadRequest) -> DataSplits:
        raise AssertionError("the loader must not run for a mismatched model")

    registry.register("pictures", loader, "images", kind="image")
    with pytest.raises(DataMismatchError, match="token"):
        load_dataset("pictures", lstm_input, registry=registry)


def test_duplicate_and_malformed_names_are_refused() -> None:
    registry = DatasetRegistry()
    registry.register("tiny", _tiny_splits, "x", plugin="first")
    with pytest.raises(
        DuplicateNameError, match=r"'tiny' from plugin 'second' .* by plugin 'first'"
    ):
        registry.register("tiny", _tiny_splits, "x", plugin="second")
    with pytest.raises(InvalidSpecError, match="invalid"):
        registry.register("Bad Name", _tiny_splits, "x")
    with pytest.raises(InvalidSpecError, match="not callable"):
        registry.register("nothing", "no_colon_here", "x")
    assert "tiny" in registry and len(registry) == 1


@pytest.mark.parametrize(
    ("val", "test"), [(-0.1, 0.1), (1.0, 0.0), (0.5, 0.5), (0.1, 1.2)], ids=str
)
def test_bad_fractions_are_usage_errors(val: float, test: float, lenet_input: InputSpec) -> None:
    with pytest.raises(UsageError, match="fraction"):
        load_dataset("mnist5k", lenet_input, val_fraction=val, test_fraction=test)


def test_default_data_dir_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    monkeypatch.delenv("ZOO_DATA_DIR")
    assert default_data_dir() == Path.home() / ".cache" / "zoo" / "data"


def test_all_is_sorted_and_complete() -> None:
    assert zoo.data.__all__ == sorted(zoo.data.__all__)
    for name in zoo.data.__all__:
        assert getattr(zoo.data, name) is not None


def test_importing_and_listing_loads_no_dataset_library() -> None:
    # torch comes with the model plugins, which load with every other plugin; the loaders'
    # libraries only with a dataset.
    code = (
        "import sys, zoo.data; zoo.data.list_datasets(); "
        "print(sorted(m for m in ('torchvision', 'sklearn', 'faker', 'mlxtend') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
