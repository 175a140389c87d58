"""A stand-in for the `tensorrt` module where the real one cannot be installed: it
records every builder call (flags, profiles, DLA settings) and serves a fake engine
whose I/O tensors the runner must bind by name and dtype. The real-TensorRT tests in
test_tensorrt.py stay and run wherever `tensorrt` imports."""
from __future__ import annotations

import enum
import types

import fake_cudart
import numpy as np


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    TF32 = 2
    GPU_FALLBACK = 3
    OBEY_PRECISION_CONSTRAINTS = 4
    PREFER_PRECISION_CONSTRAINTS = 5


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class TensorIOMode(enum.Enum):
    INPUT = 0
    OUTPUT = 1


class DataType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16
    INT32 = np.int32


float32 = DataType.FLOAT


def nptype(dtype: DataType):
    return dtype.value


class Logger:
    WARNING = 2

    def __init__(self, level=None):
        self.level = level


class _Recorder:
    def __init__(self):
        self.calls: list[tuple] = []

    def log(self, *call):
        self.calls.append(call)


class _Layer:
    def __init__(self, name):
        self.name, self.num_outputs, self.precision, self.outputs = name, 1, None, {}

    def set_output_type(self, index, dtype):
        self.outputs[index] = dtype


class _Network:
    def __init__(self, rec, flags, input_name):
        self.rec, self.flags = rec, flags
        self.layers = [_Layer("/features/conv/Conv"), _Layer("/head/Gemm")]
        self.input = types.SimpleNamespace(name=input_name)

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, i):
        return self.layers[i]

    def get_input(self, i):
        return self.input


UNSUPPORTED_OPS = {"NonMaxSuppression_Unsupported"}  # an operator this parser does not know (tests set it)


class _ParserError:
    __slots__ = ("_text",)

    def __init__(self, text):
        self._text = text

    def __str__(self):
        return self._text


class _Parser:
    """As TensorRT's OnnxParser: False and its errors for a file it cannot read or an
    operator it does not know."""

    __slots__ = ("_errors", "network")

    def __init__(self, network, logger):
        self.network, self._errors = network, []

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, i):
        return self._errors[i]

    def parse_from_file(self, path):
        import onnx

        self.network.rec.log("parse", path)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            self._errors.append(_ParserError(f"ModelImporter.cpp: failed to parse the ONNX model: {exc}"))
            return False
        for node in model.graph.node:
            if node.op_type in UNSUPPORTED_OPS:
                self._errors.append(_ParserError(
                    f"In node {node.name} (importFallbackPluginImporter): UNSUPPORTED_NODE: no importer registered "
                    f"for op: {node.op_type}"))
        if self._errors:
            return False
        self.network.onnx = path
        return True


class _Profile:
    def __init__(self, rec):
        self.rec = rec

    def set_shape(self, name, low, opt, high):
        self.rec.log("profile", name, tuple(low), tuple(opt), tuple(high))


class _TimingCache:
    def __init__(self, data=b""):
        self.data = bytes(data)

    def serialize(self):
        return b"cache:" + __version__.encode()  # timings of this version


class _Config:
    # as the real IBuilderConfig: a misspelt property is an AttributeError, not a new attribute
    __slots__ = ("_device", "_dla_core", "flags", "rec")

    def __init__(self, rec):
        self.rec, self.flags = rec, set()
        self._dla_core = None
        self._device = DeviceType.GPU

    def set_memory_pool_limit(self, pool, size):
        self.rec.log("workspace", size)

    def set_flag(self, flag):
        self.flags.add(flag)
        self.rec.log("set_flag", flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)
        self.rec.log("clear_flag", flag)

    def add_optimization_profile(self, profile):
        self.rec.log("add_profile")

    def create_timing_cache(self, data):
        return _TimingCache(data)

    def set_timing_cache(self, cache, ignore_mismatch):
        self.rec.log("timing_cache", cache.data)
        return True

    def get_timing_cache(self):
        return _TimingCache()

    def can_run_on_DLA(self, layer):
        return layer.name.startswith("/features")

    @property
    def default_device_type(self):
        return self._device

    @default_device_type.setter
    def default_device_type(self, value):
        self._device = value
        self.rec.log("device_type", value)

    @property
    def DLA_core(self):
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, value):
        self._dla_core = value
        self.rec.log("dla_core", value)


class Builder:
    num_DLA_cores = 2

    def __init__(self, logger):
        self.rec = RECORD

    def create_network(self, flags):
        self.rec.log("create_network", flags)
        return _Network(self.rec, flags, INPUT_NAME)

    def create_builder_config(self):
        return _Config(self.rec)

    def create_optimization_profile(self):
        return _Profile(self.rec)

    def build_serialized_network(self, network, config):
        self.rec.log("build", frozenset(config.flags))
        half = b"fp16\n" if BuilderFlag.FP16 in config.flags else b""  # the engine computes in FP16
        return ONNX_ENGINE + half + str(network.onnx).encode()  # runs the parsed model in ONNX Runtime


def OnnxParser(network, logger):
    return _Parser(network, logger)


# ------------------------------------------------------------------ runtime side

class _Engine:
    """Two inputs of mixed dtypes and one FP16 output: logits = input[:, :2] * lengths."""

    tensors = {"input": (TensorIOMode.INPUT, DataType.FLOAT, (-1, 3)),
               "lengths": (TensorIOMode.INPUT, DataType.INT32, (-1,)),
               "logits": (TensorIOMode.OUTPUT, DataType.HALF, (-1, 2))}

    num_io_tensors = 3

    def get_tensor_name(self, i):
        return list(self.tensors)[i]

    def get_tensor_mode(self, name):
        return self.tensors[name][0]

    def get_tensor_dtype(self, name):
        return self.tensors[name][1]

    def get_tensor_shape(self, name):
        return self.tensors[name][2]

    profile = (1, 4, 8)  # batch min, opt, max

    def get_tensor_profile_shape(self, name, profile):
        rest = self.tensors[name][2][1:]
        return tuple((n, *rest) for n in self.profile)

    def create_execution_context(self):
        return _Context()


class _Context:
    def __init__(self):
        self.shapes, self.addresses = {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return (self.shapes["input"][0], 2)

    def set_tensor_address(self, name, address):
        self.addresses[name] = address

    def execute_async_v3(self, stream):
        shape = self.shapes["input"]
        x = fake_cudart.view(self.addresses["input"], np.float32, shape)
        n = fake_cudart.view(self.addresses["lengths"], np.int32, (shape[0],))
        out = fake_cudart.view(self.addresses["logits"], np.float16, (shape[0], 2))
        out[...] = (x[:, :2] * n[:, None]).astype(out.dtype)
        RECORD.log("execute", stream)
        return True


class _OnnxEngine(_Engine):
    """What an engine built from an ONNX model computes: that model, run by ONNX Runtime
    on the tensors in (stand-in) device memory, float32 in and out, batch 1 to 32; built
    with FP16, its inputs and outputs are rounded through float16 as an FP16 engine's are."""

    profile = (1, 8, 32)

    def __init__(self, path, half: bool = False):
        self.half = half
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.tensors = {t.name: (mode, DataType.FLOAT, tuple(d if isinstance(d, int) else -1 for d in t.shape))
                        for mode, ts in ((TensorIOMode.INPUT, self.session.get_inputs()),
                                         (TensorIOMode.OUTPUT, self.session.get_outputs())) for t in ts}
        self.num_io_tensors = len(self.tensors)

    def create_execution_context(self):
        return _OnnxContext(self)


class _OnnxContext:
    def __init__(self, engine):
        self.engine, self.shapes, self.addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        batch = next(iter(self.shapes.values()))[0]
        return (batch, *self.engine.tensors[name][2][1:])

    def set_tensor_address(self, name, address):
        self.addresses[name] = address

    def execute_async_v3(self, stream):
        feeds = {n: fake_cudart.view(self.addresses[n], np.float32, s).copy() for n, s in self.shapes.items()}
        if self.engine.half:
            feeds = {n: v.astype(np.float16).astype(np.float32) for n, v in feeds.items()}
        names = [n for n, (mode, _, _) in self.engine.tensors.items() if mode == TensorIOMode.OUTPUT]
        for name, value in zip(names, self.engine.session.run(names, feeds)):
            if self.engine.half:
                value = value.astype(np.float16).astype(np.float32)
            fake_cudart.view(self.addresses[name], np.float32, value.shape)[...] = value
        RECORD.log("execute", stream)
        return True


def init_libnvinfer_plugins(logger, namespace):
    RECORD.log("init_plugins", namespace)
    return True


class Runtime:
    __slots__ = ("_dla",)

    def __init__(self, logger):
        self._dla = None

    @property
    def DLA_core(self):
        return self._dla

    @DLA_core.setter
    def DLA_core(self, value):
        self._dla = value
        RECORD.log("runtime_dla_core", value)

    def deserialize_cuda_engine(self, data):
        RECORD.log("deserialize")
        if data.startswith(ONNX_ENGINE):
            rest = data[len(ONNX_ENGINE):]
            half = rest.startswith(b"fp16\n")
            return _OnnxEngine(rest[5:].decode() if half else rest.decode(), half)
        return _Engine() if data.startswith(b"fake") else None


__version__ = "10.3.0"
ONNX_ENGINE = b"fake onnx engine\n"
INPUT_NAME = "input"
RECORD = _Recorder()


def reset(version: str = "10.3.0") -> None:
    global __version__
    __version__ = version
    RECORD.calls.clear()
    fake_cudart.reset()
