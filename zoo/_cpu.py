"""What CPU this is: its model name and the instruction-set flags that decide which kernels run.

Read from ``/proc/cpuinfo`` (Linux); elsewhere the model name comes from ``platform`` and the
flags are unknown. No torch here: the benchmark records these in processes that time torch,
and the trainer asks whether bf16 runs natively before it builds anything.
"""

from __future__ import annotations

import functools
import platform

__all__ = ["SIMD_FLAGS", "cpu_description", "cpu_flags", "native_bf16"]

#: The CPU flags that decide which kernels run (vector width, fused multiply-add, bf16/int8
#: dot products and matrix units): recorded with every benchmark, since machines differ.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512", "vnni", "amx")
#: Instructions that compute in bf16: AVX-512 BF16 dot products, AMX tiles.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str] | None]:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:  # the first processor's fields are enough
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if "model name" in fields and "flags" in fields:
                    break
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    flags = frozenset(fields["flags"].split()) if "flags" in fields else None
    return name, flags


def cpu_flags() -> frozenset[str] | None:
    """Every flag of the first CPU, or None where the system does not say (not Linux)."""
    return _cpuinfo()[1]


def cpu_description() -> tuple[str, list[str]]:
    """The CPU's model name and its SIMD flags (:data:`SIMD_FLAGS` prefixes), sorted."""
    name, flags = _cpuinfo()
    return name, sorted(f for f in flags or () if f.startswith(SIMD_FLAGS))


def native_bf16() -> bool | None:
    """Whether the CPU has bf16 instructions (:data:`BF16_FLAGS`); None when unknown."""
    flags = cpu_flags()
    return None if flags is None else any(f in flags for f in BF16_FLAGS)
