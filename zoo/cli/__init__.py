"""The ``zoo`` command line.

Kept cheap to import: ``zoo --help`` loads no plugin and no torch, so the modules that import
torch (the trainer, the exporter, the benchmark, the model card, the dataset loaders) are
imported by the subcommands that use them. Errors zoo raises on purpose print one line to
stderr and exit 2 (usage) or 1 (runtime); ``zoo --debug ...`` shows the traceback instead.

The group and its error handling are in :mod:`zoo.cli.app` (its Ctrl-C handler, which holds
a Ctrl-C landing in an import, is in :mod:`zoo._interrupts`), the shared parameter types in
:mod:`zoo.cli.params` and what is printed in :mod:`zoo.cli.output`; each command family has
a module of its own (``listing``, ``train``, ``export``, ``deploy``, ``bench``,
``check_plugin``),
imported here so that it registers its commands on :data:`cli`.
"""

from __future__ import annotations

from collections.abc import Sequence

from zoo.cli import bench, check_plugin, deploy, export, listing, train  # noqa: F401 (their commands)
from zoo.cli.app import cli

__all__ = ["cli", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="zoo")


if __name__ == "__main__":  # pragma: no cover
    main()
