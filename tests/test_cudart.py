"""The system's CUDA runtime through ctypes (runtime/cudart.py): a stand-in libcudart.so
compiled here (the C signatures, host memory for device memory) carries a tensor to the
"device" and back through runtime/cuda_device.py; one too new for the driver is refused
naming the library, both CUDA versions and the remedy, or passed over for the next
runtime; and a real libcudart, where one is installed, answers its first calls."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgetl.core.errors import BackendUnavailable
from edgetl.runtime import cuda_device, cudart

SOURCE = Path(__file__).with_name("fake_libcudart.c")


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    """libcudart.so stand-ins: one whose runtime the driver runs, one too new for it."""
    if shutil.which("gcc") is None:
        pytest.skip("no C compiler to build the stand-in libcudart")
    folder = tmp_path_factory.mktemp("cudart")
    built = {}
    for name, flags in (("fits", ["-DDRIVER=12060", "-DRUNTIME=12060"]), ("too-new", ["-DDRIVER=12060", "-DRUNTIME=13000"])):
        out = folder / name / "libcudart.so.12"
        out.parent.mkdir()
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", *flags, "-o", str(out), str(SOURCE)], check=True)
        built[name] = out
    return built


@pytest.fixture
def only(monkeypatch):
    """The GPU reached only through the runtimes given (no cuda-python, no torch)."""
    def use(*paths, binding=None):
        monkeypatch.setattr(cuda_device, "_system_runtimes",
                            lambda: [cudart.CtypesRuntime(ctypes.CDLL(str(p)), str(p)) for p in paths])
        monkeypatch.setattr(cuda_device, "_cudart", lambda: binding)
        monkeypatch.setattr(cuda_device, "_torch_cuda", lambda: None)
    return use


def test_the_runtime_named_by_edgetl_cudart_is_tried_first(libraries, monkeypatch):
    monkeypatch.setenv("EDGETL_CUDART", str(libraries["fits"]))
    assert cudart.candidates()[0] == libraries["fits"]
    loaded, _ = cudart.load_all()
    assert loaded[0].path == str(libraries["fits"]) and loaded[0].cudaRuntimeGetVersion() == (0, 12060)


def test_a_tensor_goes_to_the_device_and_back_through_libcudart(libraries, only):
    only(libraries["fits"])
    lib = ctypes.CDLL(str(libraries["fits"]))
    device = cuda_device.CudaDevice(0)
    assert device.via == f"libcudart {libraries['fits']}" and device.cause is None
    assert device.facts() == {"gpu": "Fake GPU (libcudart)", "compute_capability": "8.7"}
    assert device.versions == {"driver_cuda": "12.6", "runtime_cuda": "12.6"}
    buf = device.buffer(4 * 6)
    data = np.arange(6, dtype=np.float32).reshape(2, 3) * 1.5
    buf.shape_as((2, 3), np.float32)[...] = data
    device.to_device(buf)
    buf.host[...] = 0  # the host mirror cleared: what comes back is what the device held
    device.to_host(buf)
    device.synchronize()
    np.testing.assert_array_equal(buf.host, data)
    assert lib.fake_copies() == 2 and lib.fake_streams() == 1 and lib.fake_live() == 2  # device + pinned
    device.close()
    assert lib.fake_live() == 0 and lib.fake_streams() == 0


def test_a_runtime_too_new_for_the_driver_is_one_clear_error(libraries, only):
    only(libraries["too-new"])
    with pytest.raises(BackendUnavailable) as err:
        cuda_device.CudaDevice(0)
    message = err.value.message
    assert str(libraries["too-new"]) in message and "cudaErrorInsufficientDriver (35)" in message
    assert "CUDA 13.0 runtime needs a newer driver" in message and "CUDA 12.6" in message
    assert "EDGETL_CUDART" in err.value.hint and "nvidia-cuda-runtime-cu12" in err.value.hint
    report = cuda_device.gpu_report(0)
    assert not report["found"] and report["compatible"] is False and report["runtimes"] == [
        f"libcudart {libraries['too-new']}"]


def test_a_runtime_too_new_is_passed_over_for_the_next_that_fits(libraries, only):
    only(libraries["too-new"], libraries["fits"])
    device = cuda_device.CudaDevice(0)
    assert device.via == f"libcudart {libraries['fits']}"
    assert str(libraries["too-new"]) in device.cause  # said, not silent
    report = cuda_device.gpu_report(0)
    assert report["found"] and report["compatible"] and report["via"] == device.via
    assert str(libraries["too-new"]) in report["passed_over"]
    device.close()


def test_a_real_libcudart_answers_its_first_calls():
    """Where a CUDA runtime is installed (torch's wheels bring one) but no driver is, the
    runtime answers its version and the device call fails in one clear line."""
    loaded, why = cudart.load_all()
    if not loaded:
        pytest.skip(f"no libcudart on this machine ({why})")
    runtime = loaded[0]
    err, version = runtime.cudaRuntimeGetVersion()
    assert err == 0 and version >= 11000
    err, driver = runtime.cudaDriverGetVersion()
    assert err == 0
    if driver == 0:  # no driver, as on the machines without a GPU
        (code,) = runtime.cudaSetDevice(0)
        assert code != 0 and runtime.cudaGetErrorName(code)[1].startswith(b"cudaError")
