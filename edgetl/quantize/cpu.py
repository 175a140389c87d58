"""The kind of CPU an INT8 model is made for.

x86 CPUs without VNNI (AVX2 only) multiply uint8 activations by int8 weights with
`vpmaddubsw`, which adds the products in pairs into int16 and saturates: 2 x 255 x 127
does not fit. OpenVINO and ONNX Runtime use those kernels on such CPUs, so a model
whose weights use all 8 bits computes other answers there than on a CPU with VNNI or
AMX. Measured on a digits fine-tune, OpenVINO INT8 evaluated with AVX2 kernels: 52.3%
with full 8-bit weights, 58.0% with NNCF's default (7-bit weights in the first layer
only), 60.3% with 7-bit weights everywhere, which is also what the VNNI kernels compute
for that model. With 7-bit weights (|w| <= 64) a pair sums to at most 32,640: no
saturation anywhere.

So the choice is made for the CPU the model will run on, never for the machine that
builds it, and the default is right on every x86 CPU.
"""
from __future__ import annotations

import dataclasses
import logging
import platform

from edgetl.errors import ConfigError

log = logging.getLogger("edgetl")


@dataclasses.dataclass(frozen=True)
class CpuTarget:
    name: str
    seven_bit_weights: bool  # weights in [-64, 64]: products summed in int16 pairs cannot saturate
    symmetric_activations: bool  # int8 activations with zero point 0 (ARM's dot-product kernels)
    description: str

    @property
    def overflow_fix(self) -> str:
        """NNCF's OverflowFix value that gives these weights (NNCF's own default,
        first_layer_only, is right on no CPU: see the module docstring)."""
        return "enable" if self.seven_bit_weights else "disable"

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "overflow_fix": self.overflow_fix}


CPU_TARGETS = {
    "portable": CpuTarget("portable", True, False,
                          "any x86-64 CPU (AVX2 without VNNI included) and ARM: 7-bit weights, so the result is the "
                          "same on every CPU"),
    "vnni": CpuTarget("vnni", False, False,
                      "x86 CPUs with VNNI or AMX (AVX512-VNNI, AVX-VNNI): full 8-bit weights; loses accuracy on "
                      "AVX2-only CPUs"),
    "arm": CpuTarget("arm", False, True, "ARM CPUs: symmetric int8 activations, full 8-bit weights"),
}
DEFAULT_CPU = "portable"


def cpu_target(name: str | None) -> CpuTarget:
    if name is None:
        name = DEFAULT_CPU
    if name not in CPU_TARGETS:
        raise ConfigError(f"unknown --cpu {name!r}", hint=f"use one of {', '.join(CPU_TARGETS)}")
    return CPU_TARGETS[name]


def cpu_has_vnni() -> bool:
    """True where 8-bit dot products accumulate without saturation (AVX-512 VNNI / AVX-VNNI / AMX)."""
    from edgetl.runtime.machine import cpu_flags

    return bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})


def host_is_arm() -> bool:
    return platform.machine().lower() in ("arm64", "aarch64")


def warn_if_host_differs(target: CpuTarget) -> None:
    """The accuracy quantize measures is this machine's; say so when it is not the target's."""
    if target.name == "vnni" and not host_is_arm() and not cpu_has_vnni():
        log.warning("--cpu vnni: this CPU has no VNNI, so the accuracy measured here is lower than what a VNNI CPU "
                    "computes with this model")
    if target.name == "arm" and not host_is_arm():
        log.warning("--cpu arm: measured on this x86 CPU; ARM kernels round differently, check it on the device")
