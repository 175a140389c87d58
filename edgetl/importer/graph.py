"""The graphs of foreign models: reading them (ONNX with or without external data, an
OpenVINO IR, TorchScript, a torch.export program, an nn.Module), their signature, and the
two edits an import makes: keep the one output that holds the class scores, and turn a
softmax at the end into an identity (the runtime applies softmax where it shows
probabilities, so a model that already applies it would be softmaxed twice)."""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgetl.core.errors import ArtifactError, BackendUnavailable
from edgetl.runtime.signature import TensorSpec

log = logging.getLogger("edgetl")

ONNX_SUFFIXES, IR_SUFFIXES, TORCH_SUFFIXES = (".onnx",), (".xml",), (".pt", ".pth", ".pt2", ".ts")
# Operations a softmax's probabilities pass through unchanged on the way to the output.
_PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}
_SOFTMAX = {"Softmax", "SoftMax"}


@dataclasses.dataclass
class Graph:
    """A foreign model as edgetl edits and writes it: the format it is kept in ("onnx" or
    "openvino"), the graph itself (an onnx ModelProto or an openvino Model), and its
    signature."""

    format: str
    model: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    source_format: str  # onnx, openvino, torchscript, torch.export, nn.Module

    def keep_output(self, name: str) -> None:
        """Only the output `name` stays (and what computes it)."""
        if len(self.outputs) == 1:
            return
        if self.format == "onnx":
            _onnx_keep_output(self.model, name)
        else:
            import openvino as ov

            port = next(o for o in self.model.outputs if name in o.get_names())
            self.model = ov.Model([port], self.model.get_parameters(), self.model.get_friendly_name())
        self.outputs = [o for o in self.outputs if o.name == name]

    def softmax_at_end(self) -> bool:
        """Whether the (one) output is a softmax's probabilities, through reshapes only."""
        return self._final_softmax() is not None

    def strip_softmax(self) -> None:
        """The final softmax becomes an identity: the output holds the scores before it."""
        node = self._final_softmax()
        if self.format == "onnx":
            node.op_type, node.domain = "Identity", ""
            del node.attribute[:]
        else:
            node.output(0).replace(node.input_value(0))

    def _final_softmax(self) -> Any:  # the softmax node (ONNX NodeProto or OpenVINO Node), or None
        if self.format == "onnx":
            producers = {out: n for n in self.model.graph.node for out in n.output}
            node = producers.get(self.model.graph.output[0].name)
            while node is not None and node.op_type in _PASS_THROUGH:
                node = producers.get(node.input[0])
            return node if node is not None and node.op_type in _SOFTMAX else None
        node = self.model.outputs[0].get_node().input_value(0).get_node()  # the Result's source
        while node.get_type_name() in _PASS_THROUGH:
            node = node.input_value(0).get_node()
        return node if node.get_type_name() in _SOFTMAX else None


def read_graph(path: Path) -> Graph:
    """The model at `path`, by its suffix; an ArtifactError that names the remedy when it
    cannot be read."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ArtifactError(f"{path} does not exist" if not path.exists() else f"{path} is not a model file",
                            hint="pass an .onnx, an OpenVINO .xml, a TorchScript .pt or a torch.export .pt2 file")
    if suffix in ONNX_SUFFIXES:
        return read_onnx(path)
    if suffix in IR_SUFFIXES:
        return read_ir(path)
    raise ArtifactError(f"{path.name}: edgetl imports .onnx, OpenVINO .xml, TorchScript .pt and torch.export .pt2 "
                        f"models, not {suffix or 'a file without a suffix'}",
                        hint="export it to ONNX first (torch.onnx.export, tf2onnx, ...)")


def read_onnx(path: Path, source_format: str = "onnx") -> Graph:
    import onnx

    try:
        head = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's errors for a file that is not ONNX
        raise ArtifactError(f"cannot read {path} as ONNX: {str(exc).splitlines()[0][:300] if str(exc) else exc!r}",
                            hint="the file is damaged or not ONNX: export it again") from None
    missing = sorted({_location(t) for t in head.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
                      and not (path.parent / _location(t)).is_file()})
    if missing:
        raise ArtifactError(f"{path.name} keeps its weights in {', '.join(missing)}, which is not beside it",
                            hint=f"copy {missing[0]} into {path.parent} (ONNX external data is found beside the model)")
    model = onnx.load(str(path))  # with its external data, held in the graph from here on
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if opsets.get("ai.onnx", 0) > onnx.defs.onnx_opset_version():
        raise ArtifactError(f"{path.name} uses ONNX opset {opsets['ai.onnx']}, newer than the installed onnx reads "
                            f"({onnx.defs.onnx_opset_version()})",
                            hint="export it with a lower opset, or upgrade onnx and onnxruntime")
    initializers = {i.name for i in model.graph.initializer}
    inputs = [_onnx_spec(v) for v in model.graph.input if v.name not in initializers]
    return Graph("onnx", model, inputs, [_onnx_spec(v) for v in model.graph.output], source_format)


def read_ir(path: Path) -> Graph:
    from edgetl.runtime.openvino_runner import _spec, check_ir_xml, ov_message

    try:
        import openvino as ov
    except ImportError:
        raise BackendUnavailable("importing an OpenVINO IR needs openvino", hint="pip install 'edgetl[openvino]'") from None
    check_ir_xml(path)
    if not path.with_suffix(".bin").is_file():
        raise ArtifactError(f"{path.name} has no {path.with_suffix('.bin').name} beside it (an IR is two files)",
                            hint=f"put {path.with_suffix('.bin').name} beside {path.name}")
    try:
        model = ov.Core().read_model(str(path))
    except Exception as exc:
        raise ArtifactError(f"cannot read {path}: {ov_message(exc)}",
                            hint="copy the .xml and .bin of one export together") from None
    return Graph("openvino", model, [_spec(p, f"input{i}") for i, p in enumerate(model.inputs)],
                 [_spec(p, f"output{i}") for i, p in enumerate(model.outputs)], "openvino")


def load_torch(path: Path) -> tuple[Any, str]:
    """A TorchScript (.pt) or torch.export (.pt2) file as a module to export (eval mode)."""
    import torch

    try:
        if path.suffix.lower() == ".pt2":
            return torch.export.load(str(path)).module(), "torch.export"
        return torch.jit.load(str(path), map_location="cpu").eval(), "torchscript"  # type: ignore[no-untyped-call]
    except Exception as exc:
        if path.suffix.lower() != ".pt2" and _is_state_dict(path):
            raise ArtifactError(f"{path.name} holds weights only (a state dict), not a model",
                                hint="load it into its nn.Module in Python and pass the module to "
                                     "edgetl.import_model(module, ...), or save it with torch.jit.script(...).save()"
                                ) from None
        what = "torch.export program" if path.suffix.lower() == ".pt2" else "TorchScript model"
        raise ArtifactError(f"cannot load {path.name} as a {what}: "
                            f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}",
                            hint="save it with torch.jit.script(model).save(...) or torch.export.save(...), or export "
                                 "it to ONNX") from None


def _is_state_dict(path: Path) -> bool:
    import torch

    try:
        return isinstance(torch.load(str(path), map_location="cpu", weights_only=True), dict)
    except Exception:  # not a weights file either
        return False


def run_onnx(model: Any, threads: int | None) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A function of an input batch -> every output of an ONNX ModelProto (ONNX Runtime, CPU)."""
    from edgetl.runtime.artifacts import onnx_session, session_options

    try:
        session = onnx_session(model.SerializeToString(), session_options(threads))
    except Exception as exc:
        raise ArtifactError(f"ONNX Runtime cannot load the model: {' '.join(str(exc).split())[:400]}",
                            hint="an operator or opset ONNX Runtime lacks: export it with another opset "
                                 "(e.g. 17) or without custom operators") from None
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def run_ir(model: Any, threads: int | None) -> Callable[[np.ndarray], list[np.ndarray]]:
    import openvino as ov

    from edgetl.runtime.openvino_runner import compile_config

    core = ov.Core()
    compiled = core.compile_model(model, "CPU", compile_config(core, "CPU", "f32", threads or 1))
    return lambda x: [np.asarray(v) for v in compiled(x).values()]


def _location(tensor: Any) -> str:
    return next((e.value for e in tensor.external_data if e.key == "location"), "?")


_ONNX_DTYPES = {1: "float32", 10: "float16", 11: "float64", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool"}


def _onnx_spec(value: Any) -> TensorSpec:
    t = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim)
    return TensorSpec(value.name, dims, _ONNX_DTYPES.get(t.elem_type, f"onnx type {t.elem_type}"))


def _onnx_keep_output(model: Any, name: str) -> None:
    """Drop every other output, and the nodes and weights only they needed."""
    graph = model.graph
    kept = [o for o in graph.output if o.name == name]
    del graph.output[:]
    graph.output.extend(kept)
    nodes = list(graph.node)
    producers = {out: i for i, n in enumerate(nodes) for out in n.output}
    needed: set[int] = set()
    stack, used = [name], set()
    while stack:  # walk back from the output (a node's subgraphs name their outer inputs too)
        tensor = stack.pop()
        used.add(tensor)
        index = producers.get(tensor)
        if index is None or index in needed:
            continue
        needed.add(index)
        node = nodes[index]
        stack.extend(i for i in node.input if i)
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.type in (5, 10) else []:
                stack.extend(i for n in sub.node for i in n.input if i)
    keep_nodes = [type(n)() for n in nodes]
    for copy, node in zip(keep_nodes, nodes):
        copy.CopyFrom(node)
    del graph.node[:]
    graph.node.extend(keep_nodes[i] for i in sorted(needed))
    keep_init = [i for i in graph.initializer if i.name in used]
    copies = [type(i)() for i in keep_init]
    for copy, init in zip(copies, keep_init):
        copy.CopyFrom(init)
    del graph.initializer[:]
    graph.initializer.extend(copies)
