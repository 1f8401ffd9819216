"""What each export format does for a model: measured outcomes, and the built-ins' record.

A :class:`Capabilities` maps format names to a :class:`CapabilityOutcome`: it works (``ok``,
with how: ``torchscript`` by ``trace``), it does not (``failed``, with the reason), or nobody
measured it (``not measured``, what a format missing from the mapping is). "Works" means what
``zoo export`` checks: the artifact is written, loads in its runtime and matches eager
PyTorch at batch sizes 1 and 3 (and at other sizes on every dynamic axis).

The built-in models' capabilities are measured, not declared: ``make capabilities``
(``zoo.export.matrix``) exports each one to each format and writes the outcomes to the
record, ``capabilities.json`` beside this module, which :func:`recorded` reads. A plugin's
model starts as not measured everywhere; ``tests/export/test_matrix.py`` checks every measured
outcome against a fresh export.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, final

from zoo import _json as js
from zoo._io import atomic_write_json
from zoo.errors import InvalidSpecError

__all__ = [
    "FAILED",
    "NOT_MEASURED",
    "OK",
    "RECORD",
    "Capabilities",
    "CapabilityOutcome",
    "read_record",
    "recorded",
    "write_record",
]

OK: Final = "ok"
FAILED: Final = "failed"
NOT_MEASURED: Final = "not measured"
_STATUSES: Final = (OK, FAILED, NOT_MEASURED)

#: The measured capabilities of zoo's own models (``make capabilities`` writes it).
RECORD: Final = Path(__file__).resolve().parent / "capabilities.json"
RECORD_VERSION: Final = 2
#: A record is a few KB a model: zoo reads no more than this, and only a regular file.
MAX_RECORD_BYTES = 16 << 20


@final
@dataclass(frozen=True)
class CapabilityOutcome:
    """What exporting one model to one format came to."""

    #: ``ok``, ``failed`` or ``not measured``.
    status: str = NOT_MEASURED
    #: Why it failed.
    reason: str = ""
    #: How it works, where there is more than one way (TorchScript: ``script`` or ``trace``).
    method: str = ""

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise InvalidSpecError(
                f"capability status {self.status!r} is not one of {', '.join(_STATUSES)}"
            )

    @classmethod
    def ok(cls, method: str = "") -> CapabilityOutcome:
        return cls(OK, method=method)

    @classmethod
    def failed(cls, reason: str) -> CapabilityOutcome:
        return cls(FAILED, reason=reason)

    @property
    def works(self) -> bool | None:
        """True, False, or None when not measured."""
        return {OK: True, FAILED: False}.get(self.status)

    def to_dict(self) -> dict[str, str]:
        data = {"status": self.status}
        if self.reason:
            data["reason"] = self.reason
        if self.method:
            data["method"] = self.method
        return data

    @classmethod
    def from_dict(cls, data: Any) -> CapabilityOutcome:
        if not isinstance(data, Mapping) or not set(data) <= {"status", "reason", "method"}:
            raise ValueError(f"not a capability outcome: {data!r:.100}")
        values = {k: data[k] for k in ("status", "reason", "method") if k in data}
        if not all(isinstance(v, str) for v in values.values()):
            raise ValueError(f"capability outcome fields are strings: {data!r:.100}")
        return cls(**values)


@final
@dataclass(frozen=True)
class Capabilities:
    """The export formats a model works with (built with its default options)."""

    #: Format name -> outcome; a format missing here is not measured.
    formats: Mapping[str, CapabilityOutcome] = field(default_factory=dict)
    #: Exported graphs accept any batch size (and any length on other dynamic axes); None:
    #: not measured.
    dynamic_batch: bool | None = None
    #: What measured these outcomes ("" when nothing did).
    measured: str = ""

    def __post_init__(self) -> None:
        outcomes = dict(self.formats)
        if not all(isinstance(o, CapabilityOutcome) for o in outcomes.values()):
            raise InvalidSpecError("capabilities: formats must map names to CapabilityOutcomes")
        object.__setattr__(self, "formats", outcomes)

    def outcome(self, fmt: str) -> CapabilityOutcome:
        return self.formats.get(fmt, CapabilityOutcome())

    def works(self, fmt: str) -> bool | None:
        """Whether format ``fmt`` works: True, False, or None when not measured."""
        return self.outcome(fmt).works

    @property
    def notes(self) -> str:
        """Why the formats that failed failed."""
        return "; ".join(f"{fmt}: {o.reason}" for fmt, o in self.formats.items() if o.reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "formats": {fmt: o.to_dict() for fmt, o in self.formats.items()},
            "dynamic_batch": self.dynamic_batch,
            "measured": self.measured,
            "notes": self.notes,
        }


def read_record(path: Path = RECORD) -> dict[str, Any]:
    """The record of measured outcomes: ``{"measured_with": {...}, "models": {model: {format:
    outcome}}}``; an empty one where there is none. ValueError, naming the file, for a file
    that is not a record of this version."""
    try:
        record: Any = json.loads(js.read_text(path, str(path), MAX_RECORD_BYTES))
    except FileNotFoundError:
        return {"format_version": RECORD_VERSION, "measured_with": {}, "models": {}}
    except (OSError, ValueError) as exc:  # not a regular file, too large, not UTF-8 or JSON
        raise ValueError(f"{path} is not a capability record: {exc}") from None
    if not isinstance(record, dict) or record.get("format_version") != RECORD_VERSION:
        version = record.get("format_version") if isinstance(record, dict) else None
        again = ": run `make capabilities` again" if path == RECORD else ""
        raise ValueError(
            f"{path} is not a capability record of format {RECORD_VERSION} "
            f"(format {version!r:.20}){again}"
        )
    models = record.get("models")
    if not isinstance(models, dict) or not all(isinstance(m, dict) for m in models.values()):
        raise ValueError(f"{path}: 'models' must map model names to their formats' outcomes")
    return record


def write_record(record: Mapping[str, Any], path: Path = RECORD) -> None:
    atomic_write_json(path, {**record, "format_version": RECORD_VERSION})


_RECORDS: dict[Path, dict[str, Any]] = {}


def recorded(name: str, record: str | Path = RECORD) -> Capabilities:
    """The measured capabilities of model ``name`` in ``record`` (default: zoo's own, for the
    built-in models); not measured where the record has nothing (a new model, before
    ``make capabilities``).

    A plugin ships the record ``zoo check-plugin DIST --record FILE`` writes beside its
    module and reads it in its spec: ``capabilities=recorded("my_model", HERE / "caps.json")``.
    """
    path = Path(record).resolve()
    if path not in _RECORDS:
        _RECORDS[path] = read_record(path)
    data = _RECORDS[path]
    outcomes = {
        fmt: CapabilityOutcome.from_dict(outcome)
        for fmt, outcome in data["models"].get(name, {}).items()
    }
    if not outcomes:
        return Capabilities()
    versions = data.get("measured_with", {})
    order = sorted(versions, key=lambda k: (k not in ("zoo", "torch"), k != "zoo", k))
    by = ", ".join(f"{k} {versions[k]}" for k in order)
    how = "zoo export" if path == RECORD else "zoo check-plugin"
    return Capabilities(
        formats=outcomes,
        # The parity gate runs batch sizes 1 and 3 on a graph exported at batch 2.
        dynamic_batch=any(o.works for o in outcomes.values()),
        measured=f"{how} ({by})" if by else how,
    )
