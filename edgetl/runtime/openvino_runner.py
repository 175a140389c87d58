"""OpenVINO backend: an IR (.xml + .bin) compiled for a device string (CPU by default).

The inference precision is always set, never left to the plugin: on CPUs with AVX-512
BF16 or AMX, OpenVINO's CPU plugin runs an FP32 IR in bf16 by default, which changes
answers (measured: 99.7% top-1 agreement with PyTorch instead of 100%, and an INT8 IR
1.1 points less accurate). f32 is the default; bf16 and f16 are opt-in and are checked
against what the device can do. What was compiled is read back from the compiled model.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, BackendUnavailable
from edgetl.runtime.artifacts import OPENVINO_CARD_KEY, card_from_openvino_model
from edgetl.runtime.runner import Runner, quantizer_before
from edgetl.runtime.signature import TensorSpec, bare_card

PRECISION_PROPERTY = "INFERENCE_PRECISION_HINT"
_CAPABILITY = {"bf16": "BF16", "f16": "FP16", "f32": "FP32"}


def ov_message(exc: BaseException) -> str:
    """OpenVINO's messages start with lines of source locations; the cause comes last."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return " ".join(useful or lines[-1:]) or type(exc).__name__


def compile_config(core: Any, device: str, precision: str, threads: int | None) -> dict[str, Any]:
    """The compile properties edgetl always sets: the inference precision (checked
    against the device's capabilities) and, on the CPU, the thread count."""
    supported = core.get_property(device, "SUPPORTED_PROPERTIES")
    if PRECISION_PROPERTY not in supported:
        if precision != "f32":
            raise BackendUnavailable(f"OpenVINO's {device} plugin takes no precision hint, so {precision} cannot be asked",
                                     hint="leave --precision-hint at f32")
        config: dict[str, Any] = {}
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


def compiled_precision(compiled: Any) -> str:
    """The inference precision the compiled model really uses ("device default" when the
    plugin does not report one)."""
    if PRECISION_PROPERTY not in compiled.get_property("SUPPORTED_PROPERTIES"):
        return "device default"
    return str(compiled.get_property(PRECISION_PROPERTY).get_type_name())


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
    # openvino's Core, Model, CompiledModel, InferRequest and Tensor (not typed here: the
    # runtime imports openvino only when this backend is used)
    _core: Any
    _ov_device: str
    _config: dict[str, Any]
    _model: Any
    compiled: Any
    request: Any
    _input: Any
    _signature: tuple[list[TensorSpec], list[TensorSpec]]

    @classmethod
    def load(cls, path: Path, device: str = "cpu", threads: int | None = None,
             precision_hint: str = "f32", bare: bool = False) -> OpenVinoRunner:
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
        signature = ([_spec(p, f"input{i}") for i, p in enumerate(model.inputs)],
                     [_spec(p, f"output{i}") for i, p in enumerate(model.outputs)])
        card = bare_card(*signature) if bare and not model.has_rt_info(OPENVINO_CARD_KEY) else \
            card_from_openvino_model(model, path)
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
        runner._signature = signature
        if precision_hint != "f32":
            runner._probe(precision_hint)
        return runner

    @classmethod
    def facts(cls, gpu: dict[str, Any]) -> dict[str, Any]:
        import openvino as ov

        core = ov.Core()
        out: dict[str, Any] = {"devices": list(core.available_devices)}
        try:
            out["cpu_precisions"] = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
            # What OpenVINO would run an FP32 model's float layers in by default; edgetl sets f32.
            out["cpu_default_precision"] = core.get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
        except Exception as exc:
            out["cpu_precisions"] = f"unreadable: {exc}"
        return out

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

    def compute(self, batch: np.ndarray) -> np.ndarray:
        # Reuse the request's input tensor while the shape stays the same: setting a new
        # tensor on every call makes a dynamic-shape model redo shape inference and
        # allocation (about 10% of a 1.5 ms call), which deployed code does not pay.
        tensor = self._input
        if tensor is None or tuple(tensor.shape) != batch.shape:
            import openvino as ov

            tensor = self._input = ov.Tensor(np.array(batch, copy=True))
            self.request.set_input_tensor(tensor)
        else:
            tensor.data[...] = batch
        self.request.infer()
        return np.array(self.request.get_output_tensor().data, dtype=np.float32, copy=True)

    def infer_named(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer({name: np.ascontiguousarray(a) for name, a in feeds.items()})
        names = [o.name for o in self.signature[1]]
        return {name: np.array(results[port], copy=True) for name, port in zip(names, self.compiled.outputs)}

    def part(self, inputs: list[str], outputs: list[str], any_length: bool = False) -> Callable[..., Any] | None:
        import openvino as ov

        model = self._model.clone()  # a copy of its own: the cut rewires it
        ports = _ports(model)
        if any(name not in ports for name in [*inputs, *outputs]):
            return None
        params = [self._cut_at(ports[name], name, any_length) for name in inputs]
        return self._compiled_part(ov.Model([ports[n] for n in outputs], params, "part"))

    def window_parts(self, tensors: dict[str, str], any_length: bool = False
                     ) -> tuple[Callable[..., Any] | None, Callable[..., Any] | None]:
        """The front-end part stops where the element-wise chain that ends at the features
        starts (a log-mel's clamp, log and `x/10 + 2` after its mel matrix product), and
        the per-window part applies that chain to its windows before the layers after
        them. OpenVINO folds such a chain's operations together anew in each compiled
        graph: cut at the chain's end, the features of a front-end part differed from
        those inside the whole model by float roundings (5.7e-6 after the first
        convolution), which flipped the next quantizer's level and moved an INT8 speech
        model's scores on 16% of a stream's hops (up to 0.011; AMD EPYC with AVX2 only,
        where the CPU plugin's kernels are not those of AVX-512). With the chain on the
        per-window side, parts and whole model give the same scores bit for bit (AVX2,
        and oneDNN capped to AVX)."""
        import openvino as ov
        import openvino.opset13 as ops

        model = self._model.clone()
        ports = _ports(model)
        chain = _elementwise_chain(ports.get(tensors["features"]))
        if not chain or tensors["windows"] not in ports or tensors["embeddings"] not in ports:
            return super().window_parts(tensors, any_length)
        source = _variable_input(chain[0])
        start = next(iter(source.get_names()), None)
        if start is None or start not in ports:
            return super().window_parts(tensors, any_length)
        frontend = self.part([self.card.input.get("name", "input")], [start], any_length=any_length)
        windows = ports[tensors["windows"]]
        shape = windows.get_partial_shape()
        param = ops.parameter(shape, source.get_element_type(), name=tensors["windows"])
        for i in chain[0].inputs():  # the chain, moved: from the windows' frames to the windows' consumers
            if i.get_source_output().get_node().get_type_name() != "Constant":
                i.replace_source_output(param.output(0))
        for target in list(windows.get_target_inputs()):
            target.replace_source_output(chain[-1].output(0))
        per_window = self._compiled_part(ov.Model([ports[tensors["embeddings"]]], [param], "windows"))
        return frontend, per_window

    def _cut_at(self, port: Any, name: str, any_length: bool) -> Any:
        """A parameter that replaces the tensor at `port`, quantized as the whole model
        quantized it there."""
        import openvino as ov
        import openvino.opset13 as ops

        shape = ov.PartialShape.dynamic(port.get_partial_shape().rank) if any_length else port.get_partial_shape()
        param = ops.parameter(shape, port.get_element_type(), name=name)
        fed, quantizer = param.output(0), _quantizer_before(port)
        if quantizer is not None:  # the part quantizes its input as the whole model did before the cut
            fed = ops.fake_quantize(fed, *[quantizer.input_value(i) for i in range(1, 5)],
                                    quantizer.get_levels()).output(0)
        for target in list(port.get_target_inputs()):
            target.replace_source_output(fed)
        return param

    def _compiled_part(self, model: Any) -> Callable[..., list[np.ndarray]] | None:
        """`model` compiled as the whole model was, as a function of numpy arrays."""
        try:
            compiled = self._core.compile_model(model, self._ov_device, self._config)
        except Exception:  # a graph that does not cut there: the whole model still runs
            return None
        request = compiled.create_infer_request()
        count = len(model.outputs)

        def run(*arrays: np.ndarray) -> list[np.ndarray]:
            request.infer([np.ascontiguousarray(a, dtype=np.float32) for a in arrays], share_inputs=True)
            return [np.array(request.get_output_tensor(i).data, copy=True) for i in range(count)]
        return run


def _spec(port: Any, unnamed: str) -> TensorSpec:
    """A model input's or output's name (`unnamed` for a tensor without one), shape (None
    where dynamic) and numpy dtype."""
    shape = port.get_partial_shape()
    dims = tuple(d.get_length() if d.is_static else None for d in shape) if shape.rank.is_static else ()
    return TensorSpec(next(iter(sorted(port.get_names())), unnamed), dims, np.dtype(port.get_element_type().to_dtype()).name)


def _ports(model: Any) -> dict[str, Any]:
    """Every named tensor of `model`: name -> the output port that makes it."""
    return {name: out for op in model.get_ordered_ops() for out in op.outputs() for name in out.get_names()}


# Operations computed value by value (with scalar constants): a chain of them keeps each
# frame's values its own, so it may run on either side of a cut.
_ELEMENTWISE = {"Add", "Subtract", "Multiply", "Divide", "Maximum", "Minimum", "Power", "Log", "Exp", "Sqrt", "Abs",
                "Clamp", "Relu", "Negative"}


def _variable_input(node: Any) -> Any:
    """The one input of an element-wise operation that is not a constant."""
    return next(i.get_source_output() for i in node.inputs()
                if i.get_source_output().get_node().get_type_name() != "Constant")


def _elementwise_chain(port: Any) -> list[Any]:
    """The element-wise operations (each with one variable input, constants scalar, used by
    the next one only) that end at the tensor at `port`, first to last; empty when the
    tensor is not made by one."""
    chain: list[Any] = []
    node = None if port is None else port.get_node()
    while node is not None and node.get_type_name() in _ELEMENTWISE:
        inputs = [i.get_source_output() for i in node.inputs()]
        constants = [o for o in inputs if o.get_node().get_type_name() == "Constant"]
        if len(inputs) - len(constants) != 1 or any(int(np.prod(c.get_shape())) != 1 for c in constants):
            break
        if chain and len(node.output(0).get_target_inputs()) != 1:
            break  # used elsewhere too: the whole model needs it where it is
        chain.append(node)
        node = _variable_input(node).get_node()
    return chain[::-1]


def _quantizer_before(port: Any) -> Any:
    """The FakeQuantize every value of the tensor at `port` last went through
    (runner.quantizer_before; FakeQuantize is idempotent on values already quantized), or
    None."""
    def ranges(q: Any) -> tuple[Any, ...]:
        values = [q.input_value(i).get_node() for i in range(1, 5)]
        if any(v.get_type_name() != "Constant" or v.get_output_partial_shape(0).is_dynamic or
               int(np.prod(v.get_output_shape(0))) != 1 for v in values):
            return ()
        return (q.get_levels(), *(float(np.asarray(v.get_data()).ravel()[0]) for v in values))
    return quantizer_before(port.get_node(), lambda n: n.get_type_name(),
                            lambda n: [i.get_source_output().get_node() for i in n.inputs()],
                            lambda n: n.get_type_name() == "FakeQuantize", ranges)
