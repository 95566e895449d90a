"""Tiny real models for the agent tests: ONNX built with ``onnx.helper``, TFLite built with the LiteRT schema."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def matmul_chain(path: Path, depth: int = 4, rows: int | str = 1, width: int = 64) -> Path:
    """Input [rows, width] through ``depth`` MatMul+Relu layers; cost grows with depth and rows (a name for
    ``rows``: a symbolic batch dimension)."""
    scale = np.sqrt(2 / width)  # He init: activations keep their scale through the ReLU chain
    weight = np.random.default_rng(1).standard_normal((width, width)) * scale
    weight = numpy_helper.from_array(weight.astype(np.float32), "w")
    nodes, name = [], "x"
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [name, "w"], [f"m{i}"]))
        nodes.append(helper.make_node("Relu", [f"m{i}"], [f"r{i}"]))
        name = f"r{i}"
    nodes.append(helper.make_node("Identity", [name], ["y"]))
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, width])],
        [weight],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def wrong_batch(path: Path) -> Path:
    """Input [2, 10] but output [1, 10]: the batch dimension is lost (a wrong output shape)."""
    inits = [numpy_helper.from_array(np.array(v, dtype=np.int64), n) for n, v in [("s", [0]), ("e", [1]), ("a", [0])]]
    graph = helper.make_graph(
        [helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])],
        "wrongbatch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 10])],
        inits,
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def nan_output(path: Path) -> Path:
    """sqrt(-|x|): NaN for every non-zero input."""
    graph = helper.make_graph(
        [
            helper.make_node("Abs", ["x"], ["a"]),
            helper.make_node("Neg", ["a"], ["n"]),
            helper.make_node("Sqrt", ["n"], ["y"]),
        ],
        "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def fails_at_run(path: Path) -> Path:
    """Loads fine (dynamic input) but Reshape to [3, 7] fails for any input that is not 21 values."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "runfail",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 7])],
        [numpy_helper.from_array(np.array([3, 7], dtype=np.int64), "shape")],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def tiny_tflite(path: Path, width: int = 4) -> Path:
    """A one-op (ADD x + x) TFLite model, written with the flatbuffer schema that ships with LiteRT."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.ADD
    code.version = 1
    tensors = []
    for name in (b"x", b"y"):
        tensor = schema.TensorT()
        tensor.shape = tensor.shapeSignature = [1, width]
        tensor.type, tensor.buffer, tensor.name = schema.TensorType.FLOAT32, 0, name
        tensors.append(tensor)
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 0], [1]
    op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.AddOptions, schema.AddOptionsT()
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, [0], [1], [op]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [subgraph], [schema.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def to_fp16(source: Path, path: Path) -> Path:
    """``source`` converted to float16 by onnxruntime's own tool, float16 input and output included."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(source)), keep_io_types=False), str(path))
    return path


def to_int8(source: Path, path: Path, samples: int = 8) -> Path:
    """``source`` (one float input of static shape) quantized to int8 QDQ by onnxruntime's static quantization,
    calibrated (MinMax) on ``samples`` seeded standard-normal inputs: the distribution the agent feeds."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    model = onnx.load(str(source))
    first = model.graph.input[0]
    shape = [d.dim_value for d in first.type.tensor_type.shape.dim]
    rng = np.random.default_rng(0)
    feeds = iter([{first.name: rng.standard_normal(shape).astype(np.float32)} for _ in range(samples)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(feeds, None)

    quantize_static(
        str(source),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QInt8,
    )
    return path


def no_cpu_kernel(path: Path) -> Path:
    """Acos on float64: valid ONNX, but onnxruntime's CPU provider has no kernel for it (NOT_IMPLEMENTED)."""
    graph = helper.make_graph(
        [helper.make_node("Acos", ["x"], ["y"])],
        "nokernel",
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 4])],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
