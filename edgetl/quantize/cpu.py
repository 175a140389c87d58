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
builds it, and the default is right on every x86 CPU. The kinds themselves, and which
of them a CPU computes exactly, are facts of the device (runtime/machine.py).
"""
from __future__ import annotations

import logging

from edgetl.core.errors import ConfigError
from edgetl.runtime.machine import CPU_TARGETS, CpuTarget, cpu_has_vnni, host_is_arm

log = logging.getLogger("edgetl")


DEFAULT_CPU = "portable"


def cpu_target(name: str | None) -> CpuTarget:
    if name is None:
        name = DEFAULT_CPU
    if name not in CPU_TARGETS:
        raise ConfigError(f"unknown --cpu {name!r}", hint=f"use one of {', '.join(CPU_TARGETS)}")
    return CPU_TARGETS[name]


def warn_if_host_differs(target: CpuTarget) -> None:
    """The accuracy quantize measures is this machine's; say so when it is not the target's."""
    if target.name == "vnni" and not host_is_arm() and not cpu_has_vnni():
        log.warning("--cpu vnni: this CPU has no VNNI, so the accuracy measured here is lower than what a VNNI CPU "
                    "computes with this model")
    if target.name == "arm" and not host_is_arm():
        log.warning("--cpu arm: measured on this x86 CPU; ARM kernels round differently, check it on the device")
