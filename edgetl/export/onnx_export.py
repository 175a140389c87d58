"""PyTorch -> ONNX: the torch.export-based exporter first, TorchScript as the fallback;
the card in metadata_props, onnx.checker, then onnxslim (the unsimplified graph is kept
when simplification fails)."""
from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
import warnings
from pathlib import Path

from edgetl.core.card import ModelCard
from edgetl.core.errors import ArtifactError, ConfigError
from edgetl.modality import dummy_input
from edgetl.runtime.artifacts import set_onnx_card

log = logging.getLogger("edgetl")
DEFAULT_OPSET = 18
# Modules of this name (a speech model's log-mel front-end) are exported with node names
# that start with "frontend/": INT8 quantization keeps those nodes in float.
FRONTEND_SCOPE = "frontend"


def check_opset(opset: int) -> None:
    import onnx.defs

    newest = onnx.defs.onnx_opset_version()
    if not 13 <= opset <= newest:
        raise ConfigError(f"opset {opset} cannot be written by the installed onnx {onnx.__version__}",
                          hint=f"choose an opset between 13 and {newest}")


def mark_scope(proto, scope: str) -> int:
    """Prefix the names of the nodes computed inside modules named `scope` with "SCOPE/"
    (read from the exporter's scope metadata, or from TorchScript's module paths)."""
    marked = 0
    for node in proto.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")
        inside = re.search(rf"['.]{scope}'", scopes) or f"/{scope}/" in node.name
        if inside and not node.name.startswith(f"{scope}/"):
            node.name = f"{scope}/{node.name.lstrip('/')}"
        marked += node.name.startswith(f"{scope}/")
    return marked


def mark_frontend(proto) -> int:
    return mark_scope(proto, FRONTEND_SCOPE)


def scope_boundary(proto, scope: str) -> tuple[list[str], list[str]]:
    """The tensors that enter the nodes of `scope` from outside (weights aside), and those
    that leave it, in graph order."""
    inside = [n for n in proto.graph.node if n.name.startswith(f"{scope}/")]
    made_inside = {o for n in inside for o in n.output}
    weights = {i.name for i in proto.graph.initializer}
    entering = list(dict.fromkeys(i for n in inside for i in n.input if i and i not in made_inside and i not in weights))
    used_outside = {i for n in proto.graph.node if not n.name.startswith(f"{scope}/") for i in n.input}
    used_outside |= {o.name for o in proto.graph.output}
    leaving = [o for n in inside for o in n.output if o in used_outside]
    return entering, leaving


def window_tensors(proto, parts: dict) -> dict[str, str] | None:
    """For a model that embeds windows of its front-end's frames (card.parts), the three
    tensors the streaming detector computes from: the front-end's frames, the windows
    going into the per-window module, and the embeddings coming out; None when the
    graph does not have exactly that shape."""
    scope = parts.get("scope")
    if not scope or not mark_scope(proto, scope):
        return None
    _, features = scope_boundary(proto, FRONTEND_SCOPE)
    windows, embeddings = scope_boundary(proto, scope)
    if not (len(features) == len(windows) == len(embeddings) == 1):
        return None
    return {"features": features[0], "windows": windows[0], "embeddings": embeddings[0]}


def in_frontend(name: str) -> bool:
    """Whether a node (ONNX), operation (OpenVINO) or layer (TensorRT) name is the front-end's."""
    return name.startswith(f"{FRONTEND_SCOPE}/")


def frontend_nodes(proto) -> list[str]:
    return [n.name for n in proto.graph.node if in_frontend(n.name)]


def _export(model, example, path: Path, opset: int, static_batch: int | None, dynamo: bool) -> None:
    import torch

    kwargs = dict(input_names=["input"], output_names=["logits"], opset_version=opset, dynamo=dynamo, verbose=False)
    if dynamo:
        if static_batch is None:
            kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=4096)}}
        kwargs["optimize"] = True
    elif static_batch is None:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), **kwargs)


def _culprit(exc: Exception) -> str:
    """The line of an exporter error that names the rejected operator, else its first line."""
    text = str(exc)
    for line in text.splitlines():
        if "aten." in line or "Unsupported" in line or "not supported" in line:
            return line.strip()[:300]
    return text.splitlines()[0][:300] if text else type(exc).__name__


_ATEN_OP = re.compile(r"aten(?:\.|::)(\w+)")


def _module_using(model, example, ops: set[str]) -> tuple[str, str] | None:
    """(module path and class, operator) of the first module that runs one of `ops`:
    the forward pass is replayed with a dispatch spy and a stack of the modules entered."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    modules = dict(model.named_modules())
    stack: list[str] = []
    def enter(name):
        def hook(_module, _args) -> None:  # returning None keeps the inputs
            stack.append(name)
        return hook

    def leave(_module, _args, _output) -> None:  # returning None keeps the output
        stack.pop()

    hooks = [m.register_forward_pre_hook(enter(name)) for name, m in modules.items()]
    hooks += [m.register_forward_hook(leave) for m in modules.values()]
    found: list[tuple[str, str]] = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            op = func.__name__.split(".")[0]
            # exporters may name the public op (linalg_eigvals), dispatch the kernel (linalg_eig)
            if not found and stack and any(o.startswith(op) or op.startswith(o) for o in ops):
                found.append((f"{stack[-1] or 'the model'} ({type(modules[stack[-1]]).__name__})", op))
            return func(*args, **(kwargs or {}))

    try:
        with torch.no_grad(), Spy():
            model(example)
    except Exception:  # the spy only looks; a failing forward leaves it without an answer
        pass
    finally:
        for hook in hooks:
            hook.remove()
    return found[0] if found else None


def export_onnx(model, card: ModelCard, path: Path, opset: int = DEFAULT_OPSET, static_batch: int | None = None,
                slim: bool = True) -> dict:
    """Write `model` (eval mode) to `path`; returns what was done (exporter, slimmed)."""
    import onnx
    import torch

    check_opset(opset)
    model = model.eval()
    example = torch.from_numpy(dummy_input(card.input, static_batch or 2))
    info = {"opset": opset, "static_batch": static_batch}
    errors, ops = [], set()
    raw = path.parent / "raw" / path.name  # the exporter may write external data files beside it
    raw.parent.mkdir(exist_ok=True)
    for dynamo in (True, False):
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the exporter reports its steps on stdout
                _export(model, example, raw, opset, static_batch, dynamo)
            info["exporter"] = "torch.export" if dynamo else "torchscript"
            break
        except Exception as exc:  # the exporters raise many kinds; both are tried before giving up
            errors.append(_culprit(exc))
            ops.update(_ATEN_OP.findall(errors[-1]))  # from the culprit line only, not graph dumps
            log.debug("exporter %s failed: %s", "dynamo" if dynamo else "torchscript", exc)
    else:
        where = _module_using(model, example, ops) if ops else None
        what = f"operator aten::{where[1]} in module {where[0]}: " if where else ""
        raise ArtifactError(f"cannot export {card.source.get('backbone', 'the model')} to ONNX: {what}{errors[-1]}",
                            hint=f"torch.export said: {errors[0]}")
    proto = onnx.load(str(raw))
    shutil.rmtree(raw.parent)
    info["frontend_nodes"] = mark_frontend(proto)
    if card.parts.get("scope"):
        mark_scope(proto, card.parts["scope"])
    if slim:
        try:
            import onnxslim

            proto = onnxslim.slim(proto)
            info["slimmed"] = True
        except Exception as exc:  # keep the working graph
            log.warning("onnxslim could not simplify the graph (%s); keeping the unsimplified model",
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            info["slimmed"] = False
    from edgetl.export.frontend_kernels import generate_kernels

    info["kernel_bytes_generated"] = generate_kernels(proto, FRONTEND_SCOPE)  # after slimming, which folds them
    onnx.checker.check_model(proto)
    if card.parts.get("scope"):  # where overlapping windows' work can be shared when streaming
        from edgetl.export.sliding import stream_stages

        tensors = window_tensors(proto, card.parts)
        stages = stream_stages(proto, card.parts, tensors) if tensors else None
        parts = {k: v for k, v in card.parts.items() if k != "stages"}  # measured again, never carried over
        card.parts = {**parts, "tensors": tensors, **({"stages": stages} if stages else {})} if tensors else \
            {k: v for k, v in parts.items() if k not in ("scope", "starts", "frames", "step")}
    training_ops = {n.op_type for n in proto.graph.node} & {"Dropout"}
    info["training_ops_left"] = sorted(training_ops)
    set_onnx_card(proto, card)
    onnx.save(proto, str(path))
    return info
