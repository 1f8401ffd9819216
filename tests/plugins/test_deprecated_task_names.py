"""Plugins written for zoo 0.1 keep loading: its ``zoo.Task`` enum members read as the task
names they became, with a DeprecationWarning naming the replacement, until zoo 0.3."""

from __future__ import annotations

import inspect
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import zoo
from tests.conftest import MakeDist
from tests.helpers import run_zoo
from zoo._pluginmanager import get_plugins
from zoo.tasks import DEPRECATED_NAMES, Task

#: zoo 0.1's ``class Task(str, Enum)`` (zoo/registry.py before the task plugins), each
#: member with the task that replaced it: ``generative`` became the VAE's ``vae``.
ENUM_0_1 = {
    "CLASSIFICATION": "classification",
    "SEQUENCE_CLASSIFICATION": "sequence_classification",
    "GENERATIVE": "vae",
    "BLOCK": "block",
}

#: zoo 0.1's example plugin as it was written then (``task=zoo.Task.CLASSIFICATION`` in its
#: hook), plus a block whose spec is built on import, as a plugin may also do.
LEGACY_PLUGIN = """
    from torch import Tensor, nn

    import zoo

    BLOCK = zoo.ModelSpec(
        name="legacy_block",
        builder=nn.Identity,
        task=zoo.Task.BLOCK,
        input=zoo.InputSpec((3,)),
        outputs=(zoo.OutputSpec("out", (3,)),),
        summary="A block whose spec a zoo 0.1 plugin builds on import",
    )


    class TinyMLP(nn.Module):
        def __init__(self, num_classes: int = 10, hidden: int = 64) -> None:
            super().__init__()
            self.net = nn.Sequential(
                nn.Flatten(), nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
            )

        def forward(self, x: Tensor) -> Tensor:
            return self.net(x)


    def tiny_mlp(num_classes: int = 10, hidden: int = 64) -> TinyMLP:
        return TinyMLP(num_classes=num_classes, hidden=hidden)


    @zoo.hookimpl
    def zoo_register_models(registry):
        registry.register(BLOCK)
        registry.register(
            zoo.ModelSpec(
                name="legacy_mlp",
                builder=tiny_mlp,
                task=zoo.Task.CLASSIFICATION,
                input=zoo.InputSpec((1, 28, 28), value_range=(0.0, 1.0)),
                outputs=(zoo.OutputSpec("logits", (10,)),),
                num_classes=10,
                summary="zoo 0.1's example plugin, unchanged",
                tags=("vision", "example"),
            )
        )
"""

MODULE = "zoo_test_legacy"


def message(member: str) -> str:
    return (
        f"zoo.Task.{member} is deprecated since zoo 0.2 and will be removed in 0.3: "
        f'use task="{ENUM_0_1[member]}"'
    )


@pytest.fixture
def legacy(make_dist: MakeDist) -> Path:
    """A site directory where the 0.1-style plugin is installed (an entry point in ``zoo``)."""
    return make_dist("zoo-legacy", "0.1.0", {MODULE: LEGACY_PLUGIN}, {"legacy": MODULE})


# --- the aliases ------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ENUM_0_1)
def test_each_0_1_member_is_its_task_name_with_a_warning_at_the_caller(member: str) -> None:
    with pytest.warns(DeprecationWarning) as caught:
        value = getattr(zoo.Task, member)
    # A str equal to the task name, with 0.1's .name and .value, that a spec stores as a str.
    assert value == ENUM_0_1[member] and isinstance(value, str)
    assert (value.name, value.value, str(value), f"{value}") == (member, *[ENUM_0_1[member]] * 3)
    assert [str(w.message) for w in caught] == [message(member)]
    assert caught[0].filename == __file__  # stacklevel: the line that named the member
    spec = zoo.ModelSpec(
        name="m",
        builder=dict,
        task=value,
        input=zoo.InputSpec((3,)),
        outputs=(zoo.OutputSpec("out", (3,)),),
        summary="s",
    )
    assert type(spec.task) is str and spec.task == ENUM_0_1[member]


def test_0_1s_import_from_zoo_registry_gives_the_enum_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"zoo\.registry\.Task is deprecated") as caught:
        from zoo.registry import Task as Legacy  # type: ignore[attr-defined]
    assert caught[0].filename == __file__
    assert [m.name for m in Legacy] == list(ENUM_0_1)
    assert {m.name: m.value for m in Legacy} == ENUM_0_1
    assert Legacy("classification") is Legacy.CLASSIFICATION  # 0.1's lookup by value
    assert Legacy("generative") is Legacy.GENERATIVE  # by its 0.1 value too
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        import zoo.registry

        zoo.registry.Nothing  # type: ignore[attr-defined]  # noqa: B018


def test_the_aliases_are_zoo_0_1s_members_and_name_registered_tasks() -> None:
    assert dict(DEPRECATED_NAMES) == ENUM_0_1
    assert set(ENUM_0_1.values()) <= set(get_plugins().tasks.names())


def test_anything_else_is_still_missing_and_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for missing in ("something_else", "classification", "CLASIFICATION", "REGRESSION"):
            assert not hasattr(Task, missing)
            with pytest.raises(AttributeError, match=f"'Task' has no attribute '{missing}'"):
                getattr(Task, missing)
        # The aliases are Task's alone: a task class and an instance do not have them.
        from zoo.plugins.classification import Classification

        assert not hasattr(Classification, "CLASSIFICATION")
        assert not hasattr(Classification(), "CLASSIFICATION")
        assert not hasattr(Task, "__origin__")  # dunder probes (typing, pickle) still miss
        assert "CLASSIFICATION" not in dir(Task) and "CLASSIFICATION" not in vars(Task)


def test_task_is_still_an_abc_that_plugins_subclass() -> None:
    from zoo.plugins.classification import Classification

    assert inspect.isabstract(Task)
    assert Task.__abstractmethods__ == {"loss", "new_metrics"}
    with pytest.raises(TypeError, match="abstract"):
        Task()  # type: ignore[abstract]
    assert issubclass(Classification, Task) and isinstance(Classification(), Task)

    class Half(Task):
        def loss(self, outputs: Any, x: Any, y: Any) -> Any:
            return outputs

    assert inspect.isabstract(Half) and Half.__abstractmethods__ == {"new_metrics"}


# --- a 0.1 plugin, installed for real ---------------------------------------------------------


def test_a_0_1_plugin_loads_in_zoo_list_with_its_tasks_as_names(legacy: Path) -> None:
    listed = run_zoo("list", "legacy_*", "--json", path=legacy)
    assert listed.returncode == 0, listed.stderr
    tasks = {spec["name"]: spec["task"] for spec in json.loads(listed.stdout)}
    assert tasks == {"legacy_block": "block", "legacy_mlp": "classification"}
    records = {r["name"]: r for r in json.loads(run_zoo("plugins", "--json", path=legacy).stdout)}
    assert records["legacy"]["status"] == "loaded"
    assert records["legacy"]["models"] == ["legacy_block", "legacy_mlp"]
    # Warnings of the plugin's module shown: one per member it names, at its own lines.
    shown = run_zoo(
        "list",
        "--task",
        "classification",
        path=legacy,
        PYTHONWARNINGS=f"always::DeprecationWarning:{MODULE}",
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^legacy_mlp +classification ", shown.stdout, re.M)
    warned = re.findall(rf"{MODULE}\.py:\d+: DeprecationWarning: (.*)", shown.stderr)
    assert warned == [message("BLOCK"), message("CLASSIFICATION")]


def test_a_0_1_plugin_fails_naming_the_replacement_when_deprecations_are_errors(
    legacy: Path,
) -> None:
    strict = run_zoo(
        "plugins", "--json", path=legacy, PYTHONWARNINGS=f"error::DeprecationWarning:{MODULE}"
    )
    records = {r["name"]: r for r in json.loads(strict.stdout)}
    assert records["legacy"]["status"] == "failed"
    assert f"DeprecationWarning: {message('BLOCK')}" in records["legacy"]["error"]
    assert records["lenet"]["status"] == "loaded"


def test_a_0_1_plugin_loaded_in_process_warns_from_its_own_lines(
    legacy: Path, on_path: Callable[[Path], None], fresh_plugins: None
) -> None:
    on_path(legacy)
    with pytest.warns(DeprecationWarning) as caught:
        plugins = get_plugins()
    assert plugins.models.get("legacy_mlp").task == "classification"
    assert plugins.models.get("legacy_block").task == "block"
    ours = [w for w in caught if str(w.message).startswith("zoo.Task.")]
    assert [str(w.message) for w in ours] == [message("BLOCK"), message("CLASSIFICATION")]
    assert {Path(w.filename) for w in ours} == {legacy / f"{MODULE}.py"}
