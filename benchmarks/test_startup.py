"""Start-up cost of the CLI: `zoo list` against the floor of importing torch and torchvision.

Run with `make bench`. Each round is a fresh process, so the figures include interpreter start,
imports and plugin discovery, exactly as a user pays them. The issue's target is
`zoo list` <= 1.3x `python -c "import torch, torchvision"`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ZOO = str(Path(sys.executable).with_name("zoo"))

COMMANDS = {
    "import-torch-torchvision": [sys.executable, "-c", "import torch, torchvision"],
    "zoo-list": [ZOO, "list"],
    "zoo-help": [ZOO, "--help"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_startup(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    command = COMMANDS[name]
    subprocess.run(command, check=True, capture_output=True)  # warm the file cache
    benchmark.group = "startup"
    benchmark.pedantic(
        subprocess.run,
        args=(command,),
        kwargs={"check": True, "capture_output": True},
        rounds=10,
        iterations=1,
    )
