from __future__ import annotations

import pytest
import torch

import zoo
from tests.helpers import tiny_spec
from zoo.registry import InputSpec, ModelRegistry, OutputSpec, suggest


def _registry(*names: str, **overrides: object) -> ModelRegistry:
    registry = ModelRegistry()
    for name in names:
        registry.register(tiny_spec(name, **overrides), plugin=f"plugin-{name}")
    return registry


# -- ModelSpec and InputSpec validation ------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"name": "Bad Name"}, "model name 'Bad Name' is invalid"),
        ({"name": ""}, "is invalid"),
        ({"builder": 42}, "is not callable"),
        ({"task": "Not A Task"}, "task 'Not A Task' is not a task name"),
        ({"task": 3}, "task 3 is not a task name"),
        ({"outputs": ()}, "outputs must be OutputSpecs"),
        ({"outputs": (OutputSpec("input", (3,)),)}, "input and output names must be distinct"),
        ({"num_classes": 0}, "num_classes must be positive"),
        ({"input": (4,)}, "input must be an InputSpec"),
    ],
)
def test_invalid_spec_is_refused_with_the_reason(override: dict, message: str) -> None:
    with pytest.raises(zoo.InvalidSpecError, match=message):
        tiny_spec(**override)


def test_task_is_any_task_name_checked_only_when_training() -> None:
    assert tiny_spec(task="regression").task == "regression"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (0, 3)}, "positive ints"),
        ({"shape": (3,), "dtype": "float8"}, "dtype 'float8' is not one of"),
        ({"shape": (3,), "value_range": (1.0, 0.0)}, "low > high"),
        ({"shape": (3,), "dynamic_axes": {2: "time"}}, r"dynamic axes \[2\] are outside"),
    ],
)
def test_invalid_input_spec(kwargs: dict, message: str) -> None:
    with pytest.raises(zoo.InvalidSpecError, match=message):
        InputSpec(**kwargs)


def test_image_input_derives_its_range_from_the_normalisation() -> None:
    spec = InputSpec.image((1, 28, 28), (0.1307,), (0.3081,))
    assert spec.value_range == (-0.4242, 2.8215)
    assert (spec.mean, spec.std) == ((0.1307,), (0.3081,))
    with pytest.raises(zoo.InvalidSpecError, match="3 values for 1 channels"):
        InputSpec((1, 28, 28), mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(zoo.InvalidSpecError, match="give both or neither"):
        InputSpec((1, 28, 28), mean=(0.5,))


def test_example_input_is_reproducible_and_within_range() -> None:
    spec = InputSpec((3, 5), value_range=(-1.0, 2.0))
    a, b = spec.example(4, seed=7), spec.example(4, seed=7)
    assert a.shape == (4, 3, 5) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, spec.example(4, seed=8))
    assert a.min() >= -1.0 and a.max() <= 2.0


def test_integer_example_input_covers_inclusive_range() -> None:
    spec = InputSpec(
        (1000,), dtype="int64", value_range=(1, 3), dynamic_axes={0: "batch", 1: "time"}
    )
    x = spec.example(2)
    assert x.dtype == torch.int64
    assert set(x.unique().tolist()) == {1, 2, 3}
    assert spec.describe() == "int64[B,T] in [1, 3]"


# -- registry ----------------------------------------------------------------------------------


def test_duplicate_name_names_both_plugins() -> None:
    registry = _registry("alpha")
    with pytest.raises(
        zoo.DuplicateModelError, match=r"'alpha' from plugin 'late'.*by plugin 'plugin-alpha'"
    ):
        registry.register(tiny_spec("alpha"), plugin="late")
    assert registry.get("alpha").plugin == "plugin-alpha"


def test_register_refuses_non_specs() -> None:
    with pytest.raises(zoo.InvalidSpecError, match=r"expected a zoo\.ModelSpec instance, got dict"):
        ModelRegistry().register({"name": "x"})  # type: ignore[arg-type]


def test_unknown_name_suggests_close_matches() -> None:
    registry = _registry("resnet18", "resnet34", "lenet")
    with pytest.raises(zoo.UnknownModelError) as info:
        registry.get("resnet19")
    assert info.value.suggestions[:2] == ["resnet18", "resnet34"]
    assert "did you mean 'resnet18'" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_unknown_name_without_close_match_points_to_zoo_list() -> None:
    with pytest.raises(zoo.UnknownModelError, match="run `zoo list`"):
        _registry("lenet").get("transformer")


def test_suggest_includes_names_containing_the_query() -> None:
    assert suggest("net", ["lenet", "googlenet", "vae"]) == ["lenet", "googlenet"]


def test_list_filters_by_wildcards_task_and_tag() -> None:
    registry = _registry("resnet18", "resnet34", "lenet")
    registry.register(tiny_spec("vae", task="generative", tags=("gen",)))
    assert registry.list() == ["lenet", "resnet18", "resnet34", "vae"]
    assert registry.list("resnet*") == ["resnet18", "resnet34"]
    assert registry.list(["lenet", "vae"]) == ["lenet", "vae"]
    assert registry.list("*", exclude="resnet3?") == ["lenet", "resnet18", "vae"]
    assert registry.list(task="generative") == ["vae"]
    assert registry.list(tag="gen") == ["vae"]
    assert registry.list("nothing*") == []


def test_create_validates_kwargs_against_the_builder() -> None:
    registry = _registry("tiny")
    model = registry.create("tiny", num_classes=5)
    assert model(torch.zeros(2, 4)).shape == (2, 5)
    with pytest.raises(zoo.InvalidArgumentsError) as info:
        registry.create("tiny", num_clases=5)
    message = str(info.value)
    assert "'num_clases' (did you mean 'num_classes'?)" in message
    assert "valid arguments: num_classes" in message


def test_required_builder_arguments_are_reported() -> None:
    registry = ModelRegistry()
    registry.register(tiny_spec("req", builder=lambda width: torch.nn.Linear(4, width)))
    with pytest.raises(zoo.InvalidArgumentsError, match="needs argument"):
        registry.create("req")


def test_builder_must_return_a_module() -> None:
    registry = ModelRegistry()
    registry.register(tiny_spec("bad", builder=lambda: "not a module"))
    with pytest.raises(zoo.InvalidSpecError, match=r"returned str, not an nn\.Module"):
        registry.create("bad")


def test_spec_to_dict_describes_options_without_building() -> None:
    calls = []

    def builder(num_classes: int = 3, act: object = torch.nn.ReLU) -> torch.nn.Module:
        calls.append(1)
        return torch.nn.Linear(4, num_classes)

    data = tiny_spec("d", builder=builder).to_dict()
    assert data["options"]["num_classes"] == 3
    assert "ReLU" in data["options"]["act"]
    assert data["input"]["dynamic_axes"] == {"0": "batch"}
    assert calls == []


def test_default_registry_holds_the_seven_families() -> None:
    names = set(zoo.list_models())
    assert {
        "lenet",
        "googlenet",
        "resnet",
        "resnet18",
        "resnet34",
        "resnet50",
        "vgg_head",
        "lstm",
        "gru",
        "vae",
        "bam",
        "bam_resnet",
    } <= names
    assert zoo.get_spec("lenet").plugin == "lenet"
    assert zoo.list_models(task="vae") == ["vae"]
