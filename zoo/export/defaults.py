"""The defaults of the export gates, declared once: the exporter, ``zoo export``'s options and
the conformance kit read them here (this module imports nothing, so ``zoo --help`` can)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_CALIBRATION_SAMPLES",
    "DEFAULT_EVAL_SAMPLES",
    "DEFAULT_MAX_DROP",
    "DEFAULT_RTOL",
]

#: The parity gate's tolerances; float32 graphs that fuse or reorder ops differ by ~1e-6 here.
DEFAULT_ATOL: Final = 1e-4
DEFAULT_RTOL: Final = 1e-3
#: Accuracy points (or percent of eager's value, for a lower-is-better metric).
DEFAULT_MAX_DROP: Final = 0.5
#: Training samples int8 calibration runs.
DEFAULT_CALIBRATION_SAMPLES: Final = 256
#: The held-out samples the accuracy gate runs (a seeded subset of larger test splits).
DEFAULT_EVAL_SAMPLES: Final = 2000
