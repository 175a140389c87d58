"""OpenVINO backend: an IR (.xml + .bin) compiled for a device string (CPU by default).

The inference precision is always set, never left to the plugin: on CPUs with AVX-512
BF16 or AMX, OpenVINO's CPU plugin runs an FP32 IR in bf16 by default, which changes
answers (measured: 99.7% top-1 agreement with PyTorch instead of 100%, and an INT8 IR
1.1 points less accurate). f32 is the default; bf16 and f16 are opt-in and are checked
against what the device can do. What was compiled is read back from the compiled model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgetl.errors import ArtifactError, BackendUnavailable
from edgetl.runtime.artifacts import card_from_openvino_model
from edgetl.runtime.runner import Runner, quantizer_before

PRECISION_PROPERTY = "INFERENCE_PRECISION_HINT"
_CAPABILITY = {"bf16": "BF16", "f16": "FP16", "f32": "FP32"}


def ov_message(exc: BaseException) -> str:
    """OpenVINO's messages start with lines of source locations; the cause comes last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return " ".join(useful or lines[-1:]) or type(exc).__name__


def compile_config(core, device: str, precision: str, threads: int | None) -> dict:
    """The compile properties edgetl always sets: the inference precision (checked
    against the device's capabilities) and, on the CPU, the thread count."""
    supported = core.get_property(device, "SUPPORTED_PROPERTIES")
    if PRECISION_PROPERTY not in supported:
        if precision != "f32":
            raise BackendUnavailable(f"OpenVINO's {device} plugin takes no precision hint, so {precision} cannot be asked",
                                     hint="leave --precision-hint at f32")
        config = {}
    else:
        capabilities = core.get_property(device, "OPTIMIZATION_CAPABILITIES")
        if _CAPABILITY[precision] not in capabilities:
            raise BackendUnavailable(f"OpenVINO's {device} cannot compute in {precision} on this machine "
                                     f"(its capabilities: {', '.join(capabilities)})",
                                     hint="leave --precision-hint at f32")
        config = {PRECISION_PROPERTY: precision}
    if threads and device == "CPU":
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def compiled_precision(compiled) -> str:
    """The inference precision the compiled model really uses ("device default" when the
    plugin does not report one)."""
    if PRECISION_PROPERTY not in compiled.get_property("SUPPORTED_PROPERTIES"):
        return "device default"
    return compiled.get_property(PRECISION_PROPERTY).get_type_name()


def check_ir_xml(path: Path) -> None:
    """An OpenVINO IR's .xml is well-formed XML whose root is <net>; anything else is named
    as not an IR (the .bin is not to blame)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(str(path)).getroot()  # the whole file: an IR's .xml is its graph, not its weights
    except (ET.ParseError, OSError) as exc:
        raise ArtifactError(f"{path} is not an OpenVINO IR (not well-formed XML: {exc})",
                            hint="export the IR again (edgetl export RUN --openvino), or pass the .onnx model") from None
    if root.tag != "net":
        raise ArtifactError(f"{path} is not an OpenVINO IR (its root element is <{root.tag}>, not <net>)",
                            hint="export the IR again (edgetl export RUN --openvino), or pass the .onnx model")


class OpenVinoRunner(Runner):
    backend = "openvino"
    # Measured on an NNCF INT8 speech model: a part cut at a pooling's output, fed exactly the
    # grid values the whole model has there (re-quantized alike), gave other logits on 1.5%
    # of windows (up to 0.54), where ONNX Runtime's QDQ parts are exact. The low-precision
    # transformations build each compiled graph's integer pipeline anew (the whole model
    # runs the windows' mean in i8 with the next FakeQuantize fused); against the IR
    # emulated in f32, parts and whole are equally close, but not the same.
    int8_cuts_exact = False

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision_hint: str = "f32") -> "OpenVinoRunner":
        import openvino as ov

        core = ov.Core()
        ov_device = device.upper()
        if ov_device.split(".")[0] not in {d.split(".")[0] for d in core.available_devices}:
            raise BackendUnavailable(f"OpenVINO has no device {ov_device}",
                                     hint=f"available: {', '.join(core.available_devices)}")
        check_ir_xml(path)  # before OpenVINO, which tries every other frontend (and their logs) on a bad file
        try:
            model = core.read_model(str(path))
        except Exception as exc:
            no_bin = not path.with_suffix(".bin").is_file()
            raise ArtifactError(f"cannot read {path}: {ov_message(exc)}",
                                hint=f"an IR is two files: put {path.with_suffix('.bin').name} beside it" if no_bin
                                else f"{path.with_suffix('.bin').name} does not fit {path.name} (cut short, or from "
                                     "another export): copy both files again, or export again "
                                     "(edgetl export RUN --openvino)") from None
        card = card_from_openvino_model(model, path)
        config = compile_config(core, ov_device.split(".")[0], precision_hint, threads)
        try:
            compiled = core.compile_model(model, ov_device, config)
        except Exception as exc:
            if precision_hint == "f32":
                raise ArtifactError(f"OpenVINO cannot compile {path} for {ov_device}: {ov_message(exc)}",
                                    hint="try --device cpu, or export the IR again with this OpenVINO") from None
            raise BackendUnavailable(f"OpenVINO cannot compile {path.name} in {precision_hint} on this {ov_device}: "
                                     f"{ov_message(exc)}", hint="leave --precision-hint at f32") from None
        runner = cls(path, card, device, threads)
        runner._core, runner._ov_device, runner._config = core, ov_device, config
        runner._model = model  # as read: parts are cut from copies of it
        runner.compiled = compiled
        runner.inference_precision = compiled_precision(compiled)
        runner.request = compiled.create_infer_request()
        runner._input = None
        if precision_hint != "f32":
            runner._probe(precision_hint)
        return runner

    def _probe(self, precision: str) -> None:
        """One call on zeros: a plugin may compile a precision its kernels then cannot run
        (e.g. bf16 where oneDNN is limited to AVX2: an error, or with one thread an empty
        result), which must be a clear error here, not wrong figures later."""
        shape = [d if isinstance(d, int) else 1 for d in self.input_spec["shape"]]
        try:
            out = self.infer_all(np.zeros(shape, np.float32), shape[0], finite=False)
            problem = None if np.isfinite(out).all() else "the result is not finite"
        except Exception as exc:
            problem = ov_message(exc)
        if problem:
            raise BackendUnavailable(f"OpenVINO cannot run {self.path.name} in {precision} on this "
                                     f"{self.device.upper()}: {problem}", hint="leave --precision-hint at f32")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        # Reuse the request's input tensor while the shape stays the same: setting a new
        # tensor on every call makes a dynamic-shape model redo shape inference and
        # allocation (about 10% of a 1.5 ms call), which deployed code does not pay.
        batch = np.asarray(batch, dtype=np.float32)
        tensor = self._input
        if tensor is None or tuple(tensor.shape) != batch.shape:
            import openvino as ov

            tensor = self._input = ov.Tensor(np.array(batch, copy=True))
            self.request.set_input_tensor(tensor)
        else:
            tensor.data[...] = batch
        self.request.infer()
        return np.array(self.request.get_output_tensor().data, dtype=np.float32, copy=True)

    def part(self, inputs: list[str], outputs: list[str], any_length: bool = False):
        import openvino as ov
        import openvino.opset13 as ops

        model = self._model.clone()  # a copy of its own: the cut rewires it
        ports = {name: out for op in model.get_ordered_ops() for out in op.outputs() for name in out.get_names()}
        if any(name not in ports for name in [*inputs, *outputs]):
            return None
        params = []
        for name in inputs:
            port = ports[name]
            shape = ov.PartialShape.dynamic(port.get_partial_shape().rank) if any_length else port.get_partial_shape()
            param = ops.parameter(shape, port.get_element_type(), name=name)
            fed, quantizer = param.output(0), _quantizer_before(port)
            if quantizer is not None:  # the part quantizes its input as the whole model did before the cut
                fed = ops.fake_quantize(fed, *[quantizer.input_value(i) for i in range(1, 5)],
                                        quantizer.get_levels()).output(0)
            for target in list(port.get_target_inputs()):
                target.replace_source_output(fed)
            params.append(param)
        try:
            compiled = self._core.compile_model(ov.Model([ports[n] for n in outputs], params, "part"),
                                                self._ov_device, self._config)
        except Exception:  # a graph that does not cut there: the whole model still runs
            return None
        request = compiled.create_infer_request()

        def run(*arrays):
            request.infer([np.ascontiguousarray(a, dtype=np.float32) for a in arrays], share_inputs=True)
            return [np.array(request.get_output_tensor(i).data, copy=True) for i in range(len(outputs))]
        return run


def _quantizer_before(port):
    """The FakeQuantize every value of the tensor at `port` last went through
    (runner.quantizer_before; FakeQuantize is idempotent on values already quantized), or
    None."""
    def ranges(q) -> tuple:
        values = [q.input_value(i).get_node() for i in range(1, 5)]
        if any(v.get_type_name() != "Constant" or v.get_output_partial_shape(0).is_dynamic or
               int(np.prod(v.get_output_shape(0))) != 1 for v in values):
            return ()
        return (q.get_levels(), *(float(np.asarray(v.get_data()).ravel()[0]) for v in values))
    return quantizer_before(port.get_node(), lambda n: n.get_type_name(),
                            lambda n: [i.get_source_output().get_node() for i in n.inputs()],
                            lambda n: n.get_type_name() == "FakeQuantize", ranges)
