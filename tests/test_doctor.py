"""`edgetl doctor`: what this machine can run and why not, read back against the machine
itself (/proc/cpuinfo, the installed backends) and, for the GPU, against a stand-in of
cuda-python's runtime with a driver too old for it."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import fake_cudart
import pytest
from click.testing import CliRunner

from edgetl.cli import cli


def _cpuinfo_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _doctor_json() -> dict:
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="reads /proc/cpuinfo")
def test_doctor_reports_this_cpu_and_the_backends_installed_here():
    import onnxruntime

    facts = _doctor_json()
    assert set(facts) >= {"edgetl", "python", "cpu", "backends", "gpu"}
    assert set(facts["backends"]) == {"onnxruntime", "openvino", "tensorrt", "torch"}
    flags = _cpuinfo_flags()
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    arm = platform.machine() in ("aarch64", "arm64")
    expected = "arm" if arm else "vnni" if vnni else "avx2" if "avx2" in flags else "x86"
    cpu = facts["cpu"]
    assert cpu["kind"] == expected
    assert cpu["isa"]["avx512"] == ("avx512f" in flags) and cpu["isa"]["avx2"] == ("avx2" in flags)
    assert cpu["isa"]["vnni"] == bool(flags & {"avx512_vnni", "avx_vnni"})
    assert cpu["int8_models"]["portable"] == "exact"
    assert (cpu["int8_models"]["vnni"] == "exact") == (vnni or arm)  # 8-bit weights saturate on AVX2-only x86
    ort = facts["backends"]["onnxruntime"]
    assert ort["runs"] and ort["version"] == onnxruntime.__version__ and "CPUExecutionProvider" in ort["devices"]
    ov = facts["backends"]["openvino"]
    assert ov["runs"] and "CPU" in ov["devices"] and "FP32" in ov["cpu_precisions"]
    assert ("BF16" in ov["cpu_precisions"]) == bool(flags & {"avx512_bf16", "amx_bf16"})
    trt = facts["backends"]["tensorrt"]
    if not trt["installed"]:
        assert not trt["runs"] and "pip install 'edgetl[tensorrt]'" in trt["problem"]
    text = CliRunner().invoke(cli, ["doctor"])
    assert text.exit_code == 0 and all(b in text.output for b in facts["backends"])
    assert cpu["model"] in text.output


def test_doctor_names_a_cuda_runtime_too_new_for_the_driver(monkeypatch):
    """JetPack 6's driver (CUDA 12.6) with cuda-python 13: not compatible, and the remedy."""
    from edgetl.runtime import cuda_device

    fake_cudart.reset(driver=12060, runtime=13000)
    fake_cudart.install(monkeypatch)
    monkeypatch.setattr(cuda_device, "_torch_cuda", lambda: None)
    monkeypatch.setattr("edgetl.runtime.doctor.nvidia_driver", lambda: "540.3.0")
    gpu = _doctor_json()["gpu"]
    assert gpu["driver_cuda"] == "12.6" and gpu["runtime_cuda"] == "13.0" and gpu["compatible"] is False
    assert "pip install 'cuda-python>=12,<13'" in gpu["problem"]
    text = CliRunner().invoke(cli, ["doctor"]).output
    assert "cuda-python>=12,<13" in text
    fake_cudart.reset()  # a runtime the driver runs
    gpu = _doctor_json()["gpu"]
    assert gpu["found"] and gpu["compatible"] is True and gpu["gpu"] == "Orin (fake)" and gpu["via"] == "cuda-python"
    assert "compute capability 8.7" in CliRunner().invoke(cli, ["doctor"]).output
