from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import install_example


@pytest.fixture(scope="module")
def examples_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every example plugin in examples/, installed for real into one site directory."""
    site = tmp_path_factory.mktemp("examples-site")
    for example in ("zoo-plugin-example", "zoo-regression", "zoo-openvino"):
        install_example(example, site)
    return site
