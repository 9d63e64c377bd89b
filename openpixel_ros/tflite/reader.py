"""Read a TFLite FlatBuffer model without TensorFlow or the LiteRT interpreter.

Only the parts of the TFLite schema (``tensorflow/compiler/mlir/lite/schema/
schema.fbs``) that a converter or a weight loader needs are mapped here:
Model, SubGraph, Tensor, Buffer, QuantizationParameters, Operator,
OperatorCode and the builtin options tables of the operators we convert.
Field numbers come from that schema; FlatBuffers stores field ``n`` at vtable
offset ``4 + 2 * n``.

Example, loading DeepLab weights for PyTorch::

    model = TFLiteModel.load("deeplabv3_257_mv_gpu.tflite")
    for op in model.operators:
        if op.opcode == "CONV_2D":
            weight = model.constant(op.inputs[1])   # [O, KH, KW, I] float32
            bias = model.constant(op.inputs[2])     # [O] float32 or None
"""
from __future__ import annotations

import collections
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import flatbuffers
import numpy as np
from flatbuffers import number_types as nt

FILE_IDENTIFIER = b"TFL3"

# BuiltinOperator enum of the schema, in code order (0 .. 209).
BUILTIN_OPERATORS = tuple("""
    ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
    EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D
    LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1
    RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM
    CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND
    SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE
    BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM
    CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT
    SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT
    SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND
    LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD
    RANGE RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE
    CEIL REVERSE_V2 ADD_N GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE
    MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5
    SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES
    CUMSUM CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND
    HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE
    ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL
    GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX
    UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT
    STABLEHLO_LOGISTIC STABLEHLO_ADD STABLEHLO_DIVIDE STABLEHLO_MULTIPLY STABLEHLO_MAXIMUM
    STABLEHLO_RESHAPE STABLEHLO_CLAMP STABLEHLO_CONCATENATE STABLEHLO_BROADCAST_IN_DIM
    STABLEHLO_CONVOLUTION STABLEHLO_SLICE STABLEHLO_CUSTOM_CALL STABLEHLO_REDUCE STABLEHLO_ABS
    STABLEHLO_AND STABLEHLO_COSINE STABLEHLO_EXPONENTIAL STABLEHLO_FLOOR STABLEHLO_LOG
    STABLEHLO_MINIMUM STABLEHLO_NEGATE STABLEHLO_OR STABLEHLO_POWER STABLEHLO_REMAINDER
    STABLEHLO_RSQRT STABLEHLO_SELECT STABLEHLO_SUBTRACT STABLEHLO_TANH STABLEHLO_SCATTER
    STABLEHLO_COMPARE STABLEHLO_CONVERT STABLEHLO_DYNAMIC_SLICE STABLEHLO_DYNAMIC_UPDATE_SLICE
    STABLEHLO_PAD STABLEHLO_IOTA STABLEHLO_DOT_GENERAL STABLEHLO_REDUCE_WINDOW STABLEHLO_SORT
    STABLEHLO_WHILE STABLEHLO_GATHER STABLEHLO_TRANSPOSE DILATE STABLEHLO_RNG_BIT_GENERATOR
    REDUCE_WINDOW STABLEHLO_COMPOSITE STABLEHLO_SHIFT_LEFT STABLEHLO_CBRT STABLEHLO_CASE
""".split())
_CUSTOM_CODE = 32

# TensorType enum -> (name, numpy dtype or None where numpy has no equivalent).
_TENSOR_TYPES = {
    0: ("FLOAT32", np.float32), 1: ("FLOAT16", np.float16), 2: ("INT32", np.int32),
    3: ("UINT8", np.uint8), 4: ("INT64", np.int64), 5: ("STRING", None), 6: ("BOOL", np.bool_),
    7: ("INT16", np.int16), 8: ("COMPLEX64", np.complex64), 9: ("INT8", np.int8),
    10: ("FLOAT64", np.float64), 11: ("COMPLEX128", np.complex128), 12: ("UINT64", np.uint64),
    13: ("RESOURCE", None), 14: ("VARIANT", None), 15: ("UINT32", np.uint32),
    16: ("UINT16", np.uint16), 17: ("INT4", None), 18: ("BFLOAT16", None),
}
_PADDINGS = ("SAME", "VALID")
_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")


@dataclass
class TFLiteQuantization:
    """Affine quantization of a tensor: ``real = scale * (q - zero_point)``.

    ``scale`` and ``zero_point`` have one entry per tensor, or one per slice
    along ``quantized_dimension`` for per-channel quantization.
    """

    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int = 0


@dataclass
class TFLiteTensor:
    """One tensor of subgraph 0.

    ``dtype`` is ``None`` for types numpy cannot hold (STRING, RESOURCE, INT4,
    BFLOAT16...); ``type_name`` always carries the TFLite type name.
    ``buffer`` indexes the model's buffers; buffer 0 is the empty sentinel.
    """

    index: int
    name: str
    shape: tuple
    dtype: Optional[np.dtype]
    buffer: int
    quantization: Optional[TFLiteQuantization] = None
    type_name: str = ""


@dataclass
class TFLiteOperator:
    """One operator of subgraph 0.

    ``opcode`` is the builtin name (``"CONV_2D"``) or, for CUSTOM operators,
    the custom code (``"Convolution2DTransposeBias"``). ``inputs`` holds
    tensor indices with ``-1`` for an omitted optional input. ``options``
    holds the parsed builtin options under their schema field names, with
    enums as strings (``padding``: ``"SAME"``/``"VALID"``,
    ``fused_activation_function``: ``"NONE"``/``"RELU"``/``"RELU6"``...); it
    is empty for operators whose options table is not mapped here.
    """

    index: int
    opcode: str
    inputs: list
    outputs: list
    options: dict = field(default_factory=dict)
    custom_options: bytes = b""


class _Table:
    """A FlatBuffers table with typed accessors by schema field number."""

    def __init__(self, buf: bytes, pos: int):
        self._tab = flatbuffers.table.Table(buf, pos)

    def _offset(self, field_number: int) -> int:
        return self._tab.Offset(4 + 2 * field_number)

    def scalar(self, field_number: int, flags, default=0):
        o = self._offset(field_number)
        return self._tab.Get(flags, o + self._tab.Pos) if o else default

    def string(self, field_number: int) -> str:
        o = self._offset(field_number)
        return self._tab.String(o + self._tab.Pos).decode("utf-8") if o else ""

    def table(self, field_number: int) -> Optional["_Table"]:
        o = self._offset(field_number)
        if not o:
            return None
        return _Table(self._tab.Bytes, self._tab.Indirect(o + self._tab.Pos))

    def tables(self, field_number: int) -> list:
        start, length = self.vector_span(field_number, 4)
        return [_Table(self._tab.Bytes, self._tab.Indirect(start + 4 * i)) for i in range(length)]

    def array(self, field_number: int, dtype) -> np.ndarray:
        """A vector of scalars as a numpy array (a copy, so it is aligned and writable)."""
        start, length = self.vector_span(field_number, np.dtype(dtype).itemsize)
        return np.frombuffer(self._tab.Bytes, dtype=np.dtype(dtype).newbyteorder("<"),
                             count=length, offset=start).astype(dtype)

    def raw_bytes(self, field_number: int) -> bytes:
        start, length = self.vector_span(field_number, 1)
        return bytes(self._tab.Bytes[start:start + length])

    def vector_span(self, field_number: int, item_size: int) -> tuple:
        """(start, length) of a vector field in the buffer; (0, 0) when absent. A vector
        that would run past the end of the buffer raises ValueError, before anyone loops
        over a garbage length."""
        o = self._offset(field_number)
        if not o:
            return 0, 0
        start, length = self._tab.Vector(o), self._tab.VectorLen(o)
        if start + length * item_size > len(self._tab.Bytes):
            raise ValueError("a vector runs past the end of the file")
        return start, length


def _enum(names, value: int) -> str:
    return names[value] if 0 <= value < len(names) else f"UNKNOWN_{value}"


def _spatial_options(t: _Table) -> dict:
    """padding, stride_w, stride_h: fields 0..2 of the conv and pool options tables."""
    return {
        "padding": _enum(_PADDINGS, t.scalar(0, nt.Int8Flags)),
        "stride_w": t.scalar(1, nt.Int32Flags),
        "stride_h": t.scalar(2, nt.Int32Flags),
    }


def _conv2d_options(t: _Table) -> dict:
    return {**_spatial_options(t),
            "fused_activation_function": _enum(_ACTIVATIONS, t.scalar(3, nt.Int8Flags)),
            "dilation_w_factor": t.scalar(4, nt.Int32Flags, 1),
            "dilation_h_factor": t.scalar(5, nt.Int32Flags, 1)}


def _depthwise_options(t: _Table) -> dict:
    return {**_spatial_options(t),
            "depth_multiplier": t.scalar(3, nt.Int32Flags),
            "fused_activation_function": _enum(_ACTIVATIONS, t.scalar(4, nt.Int8Flags)),
            "dilation_w_factor": t.scalar(5, nt.Int32Flags, 1),
            "dilation_h_factor": t.scalar(6, nt.Int32Flags, 1)}


def _pool_options(t: _Table) -> dict:
    return {**_spatial_options(t),
            "filter_width": t.scalar(3, nt.Int32Flags),
            "filter_height": t.scalar(4, nt.Int32Flags),
            "fused_activation_function": _enum(_ACTIVATIONS, t.scalar(5, nt.Int8Flags))}


def _activation_only_options(t: _Table) -> dict:
    return {"fused_activation_function": _enum(_ACTIVATIONS, t.scalar(0, nt.Int8Flags))}


def _concatenation_options(t: _Table) -> dict:
    return {"axis": t.scalar(0, nt.Int32Flags),
            "fused_activation_function": _enum(_ACTIVATIONS, t.scalar(1, nt.Int8Flags))}


def _resize_bilinear_options(t: _Table) -> dict:
    # fields 0 and 1 (new_height, new_width) are deprecated; the size is an input tensor
    return {"align_corners": bool(t.scalar(2, nt.BoolFlags, False)),
            "half_pixel_centers": bool(t.scalar(3, nt.BoolFlags, False))}


def _resize_nearest_options(t: _Table) -> dict:
    return {"align_corners": bool(t.scalar(0, nt.BoolFlags, False)),
            "half_pixel_centers": bool(t.scalar(1, nt.BoolFlags, False))}


def _reducer_options(t: _Table) -> dict:
    return {"keep_dims": bool(t.scalar(0, nt.BoolFlags, False))}


# BuiltinOptions union type -> parser of that options table.
_OPTION_PARSERS = {
    1: _conv2d_options,            # Conv2DOptions
    2: _depthwise_options,         # DepthwiseConv2DOptions
    5: _pool_options,              # Pool2DOptions
    10: _concatenation_options,    # ConcatenationOptions
    11: _activation_only_options,  # AddOptions (field 1, pot_scale_int16, is int16-only)
    15: _resize_bilinear_options,  # ResizeBilinearOptions
    21: _activation_only_options,  # MulOptions
    27: _reducer_options,          # ReducerOptions (MEAN, SUM, REDUCE_MAX...)
    28: _activation_only_options,  # SubOptions
    29: _activation_only_options,  # DivOptions
    74: _resize_nearest_options,   # ResizeNearestNeighborOptions
}


def _parse_options(union_type: int, t: Optional[_Table]) -> dict:
    if t is None or union_type not in _OPTION_PARSERS:
        return {}
    return _OPTION_PARSERS[union_type](t)


class TFLiteModel:
    """A parsed TFLite model: the tensors and operators of its first subgraph.

    Use :meth:`load`; all parsing happens there, so a model that loads is
    fully readable.
    """

    def __init__(self, path: Path, data: bytes, *, version: int, description: str,
                 tensors: list, operators: list, inputs: list, outputs: list,
                 buffers: list, subgraph_count: int):
        self.path = path
        self.version = version
        self.description = description
        self.subgraph_count = subgraph_count
        self.tensors: list = tensors
        self.operators: list = operators
        self.inputs: list = inputs
        self.outputs: list = outputs
        self._data = data
        self._buffers = buffers  # (start, length) of each buffer's bytes in the file
        self._producers = {t: op for op in operators for t in op.outputs if t >= 0}

    @classmethod
    def load(cls, path) -> "TFLiteModel":
        """Parse the file at ``path``.

        Raises ValueError with a one-line message when the file is missing,
        unreadable, not a TFLite FlatBuffer, or corrupt/truncated.
        """
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read TFLite model {path}: {exc.strerror or exc}") from None
        if len(data) < 8 or data[4:8] != FILE_IDENTIFIER:
            raise ValueError(f"{path} is not a TFLite model (no 'TFL3' FlatBuffer identifier)")
        try:
            return cls._parse(path, data)
        # the FlatBuffers runtime raises TypeError for an offset outside uint32
        except (IndexError, struct.error, TypeError, ValueError, UnicodeDecodeError,
                OverflowError) as exc:
            raise ValueError(f"{path} is a corrupt or truncated TFLite model: {exc}") from None

    @classmethod
    def _parse(cls, path: Path, data: bytes) -> "TFLiteModel":
        root = _Table(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
        version = root.scalar(0, nt.Uint32Flags)
        opcodes = []
        for oc in root.tables(1):
            code = max(oc.scalar(0, nt.Int8Flags), oc.scalar(3, nt.Int32Flags))
            if code == _CUSTOM_CODE:
                opcodes.append(oc.string(1) or "CUSTOM")
            else:
                opcodes.append(_enum(BUILTIN_OPERATORS, code))
        subgraphs = root.tables(2)
        if not subgraphs:
            raise ValueError("the model has no subgraph")
        description = root.string(3)
        buffers = []
        for b in root.tables(4):
            offset, size = b.scalar(1, nt.Uint64Flags), b.scalar(2, nt.Uint64Flags)
            if offset > 1:  # models over 2 GB keep buffers after the FlatBuffer, at a file offset
                start, length = offset, size
            else:
                start, length = b.vector_span(0, 1)
            if start + length > len(data):
                raise ValueError(f"buffer {len(buffers)} runs past the end of the file")
            buffers.append((start, length))

        graph = subgraphs[0]
        tensors = []
        for i, t in enumerate(graph.tables(0)):
            type_code = t.scalar(1, nt.Int8Flags)
            type_name, dtype = _TENSOR_TYPES.get(type_code, (f"UNKNOWN_{type_code}", None))
            buffer = t.scalar(2, nt.Uint32Flags)
            if buffer >= max(len(buffers), 1):
                raise ValueError(f"tensor {i} refers to buffer {buffer} of {len(buffers)}")
            q = t.table(4)
            quantization = None
            if q is not None:
                scale = q.array(2, np.float32)
                if scale.size:
                    quantization = TFLiteQuantization(
                        scale=scale, zero_point=q.array(3, np.int64),
                        quantized_dimension=q.scalar(6, nt.Int32Flags))
            tensors.append(TFLiteTensor(
                index=i, name=t.string(3), shape=tuple(int(d) for d in t.array(0, np.int32)),
                dtype=None if dtype is None else np.dtype(dtype), buffer=buffer,
                quantization=quantization, type_name=type_name))
        operators = []
        for i, op in enumerate(graph.tables(3)):
            opcode_index = op.scalar(0, nt.Uint32Flags)
            if opcode_index >= len(opcodes):
                raise ValueError(f"operator {i} uses opcode {opcode_index} of {len(opcodes)}")
            op_inputs = [int(x) for x in op.array(1, np.int32)]
            op_outputs = [int(x) for x in op.array(2, np.int32)]
            if (any(not -1 <= x < len(tensors) for x in op_inputs)
                    or any(not 0 <= x < len(tensors) for x in op_outputs)):
                raise ValueError(f"operator {i} refers to a tensor out of range")
            operators.append(TFLiteOperator(
                index=i, opcode=opcodes[opcode_index], inputs=op_inputs, outputs=op_outputs,
                options=_parse_options(op.scalar(3, nt.Uint8Flags), op.table(4)),
                custom_options=op.raw_bytes(5)))
        graph_inputs = [int(x) for x in graph.array(1, np.int32)]
        graph_outputs = [int(x) for x in graph.array(2, np.int32)]
        if any(not 0 <= x < len(tensors) for x in graph_inputs + graph_outputs):
            raise ValueError("a graph input or output refers to a tensor out of range")
        model = cls(path, data, version=version, description=description, tensors=tensors,
                    operators=operators, inputs=graph_inputs, outputs=graph_outputs,
                    buffers=buffers, subgraph_count=len(subgraphs))
        for tensor in tensors:  # a size mismatch means a damaged file; find it now
            if tensor.dtype is not None:
                model._data_start(tensor)
        return model

    def _data_start(self, tensor: TFLiteTensor) -> Optional[int]:
        """File offset of the tensor's data; None when it has none. ValueError when the
        buffer's size disagrees with the tensor's shape and type."""
        if tensor.buffer >= len(self._buffers):  # only a model with no buffers at all
            return None
        start, length = self._buffers[tensor.buffer]
        if length == 0:
            return None
        count = int(np.prod(tensor.shape, dtype=np.int64))
        if count * tensor.dtype.itemsize != length:
            raise ValueError(f"tensor {tensor.index} ({tensor.name!r}) has {length} bytes of "
                             f"data for shape {list(tensor.shape)} {tensor.type_name}")
        return start

    def tensor_data(self, index: int) -> Optional[np.ndarray]:
        """The constant data of tensor ``index``, shaped, in its stored dtype (float16 stays
        float16, quantized ints stay ints); None for tensors without data (activations).
        ValueError for constant data of a type numpy cannot hold (STRING, INT4...)."""
        tensor = self.tensors[index]
        if tensor.dtype is None:
            if tensor.buffer < len(self._buffers) and self._buffers[tensor.buffer][1]:
                raise ValueError(f"tensor {index} ({tensor.name!r}) has type "
                                 f"{tensor.type_name}, which has no numpy equivalent")
            return None
        start = self._data_start(tensor)
        if start is None:
            return None
        array = np.frombuffer(self._data, dtype=tensor.dtype.newbyteorder("<"),
                              count=int(np.prod(tensor.shape, dtype=np.int64)), offset=start)
        return array.astype(tensor.dtype).reshape(tensor.shape)

    def constant(self, index: int) -> Optional[np.ndarray]:
        """Like :meth:`tensor_data`, but as the value the graph computes: follows DEQUANTIZE
        chains and dequantizes, so float weights come back as float32 whether stored as
        float16 or as affine-quantized ints. None when the tensor is not a constant."""
        seen = set()
        while (data := self.tensor_data(index)) is None:
            producer = self._producers.get(index)
            if (producer is None or producer.opcode != "DEQUANTIZE" or not producer.inputs
                    or producer.inputs[0] < 0 or index in seen):
                return None
            seen.add(index)
            index = producer.inputs[0]
        tensor = self.tensors[index]
        if data.dtype == np.float16:
            return data.astype(np.float32)
        q = tensor.quantization
        if q is not None and data.dtype.kind in "iu":
            shape = [1] * data.ndim
            if q.scale.size > 1:
                shape[q.quantized_dimension] = -1
            scale = q.scale.reshape(shape)
            zero_point = q.zero_point.reshape(shape) if q.zero_point.size else 0
            return ((data.astype(np.float32) - zero_point) * scale).astype(np.float32)
        return data

    def producer(self, index: int) -> Optional[TFLiteOperator]:
        """The operator that writes tensor ``index``, or None for inputs and constants."""
        return self._producers.get(index)

    def tensor_by_name(self, name: str) -> TFLiteTensor:
        """The first tensor called ``name``; KeyError if there is none."""
        for tensor in self.tensors:
            if tensor.name == name:
                return tensor
        raise KeyError(f"no tensor named {name!r} in {self.path.name}")

    def op_counts(self) -> collections.Counter:
        """How many operators of each opcode subgraph 0 holds."""
        return collections.Counter(op.opcode for op in self.operators)

    def __repr__(self) -> str:
        return (f"TFLiteModel({self.path.name!r}, {len(self.tensors)} tensors, "
                f"{len(self.operators)} operators)")
