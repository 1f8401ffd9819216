import warnings
from pathlib import Path

import pytest
import torch

from zoo.plugins import torchscript


def test_deprecation_warning_is_silenced_only_inside_zoo(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scripted = torchscript.script(model)
        scripted.save(str(tmp_path / "m.pt"))
        loaded = torchscript.load(tmp_path / "m.pt")
        torchscript.trace(model, torch.zeros(1, 2))
        warnings.warn("an unrelated deprecation", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["an unrelated deprecation"]
    x = torch.randn(3, 2)
    torch.testing.assert_close(loaded(x), model(x))


def test_direct_torch_jit_calls_still_warn() -> None:
    with pytest.warns(FutureWarning, match="torch.jit.script` is deprecated"):
        torch.jit.script(torch.nn.Linear(2, 2))
