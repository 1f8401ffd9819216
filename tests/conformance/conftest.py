from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import MakeDist
from tests.helpers import install_example

#: The defect the issue found: a model whose spec says 10 classes and that returns 7.
SEVEN = """
    import zoo
    from torch import nn

    def build(num_classes=10):
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 7))

    @zoo.hookimpl
    def zoo_register_models(registry):
        registry.register(zoo.ModelSpec(
            name="seven", builder=build, task="classification",
            input=zoo.InputSpec.image((1, 28, 28), mean=(0.5,), std=(0.5,)),
            outputs=(zoo.OutputSpec("logits", (10,)),), num_classes=10,
            summary="returns 7 classes, declares 10"))
"""


@pytest.fixture
def seven_site(make_dist: MakeDist) -> Path:
    """A site directory where the distribution ``zoo-test-seven`` (plugin ``seven``) is
    installed."""
    return make_dist(
        "zoo-test-seven", "1.0", {"zoo_test_seven": SEVEN}, {"seven": "zoo_test_seven"}
    )


@pytest.fixture(scope="module")
def examples_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every example plugin in examples/, installed for real into one site directory."""
    site = tmp_path_factory.mktemp("examples-site")
    for example in ("zoo-plugin-example", "zoo-regression", "zoo-openvino"):
        install_example(example, site)
    return site
