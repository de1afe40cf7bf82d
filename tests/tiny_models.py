"""Tiny ONNX models built inline, each carrying one trap real models set."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(0)


def _weight(name, *shape):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name=name)


def _model(nodes, inputs, outputs, initializers=(), opset=17, extra_opsets=()):
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def conv_gemm(batch="N"):
    """Conv 3->8 (3x3, pad 1) on 3x6x6, Flatten, Gemm 288->4 (transB=1). Dynamic batch by default."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], name="gemm", transB=1)]
    inits = [_weight("cw", 8, 3, 3, 3), _weight("cb", 8), _weight("gw", 4, 288), _weight("gb", 4)]
    return _model(nodes, [x], [y], inits)


def constant_weights():
    """Weights held by Constant nodes, no initializers (as PaddleOCR exports)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    w = RNG.standard_normal((5, 3)).astype(np.float32)
    nodes = [helper.make_node("Constant", [], ["w"], name="const_w", value=numpy_helper.from_array(w)),
             helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")]
    return _model(nodes, [x], [y])


def opset11():
    """The conv_gemm model at opset 11."""
    model = conv_gemm()
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 11))
    onnx.checker.check_model(model)
    return model


def if_subgraph():
    """An If whose branches each hold a MatMul with its own weight (as silero-vad's sample-rate branches)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    cond = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])

    def branch(tag):
        out = helper.make_tensor_value_info(f"{tag}_y", TensorProto.FLOAT, ["N", 2])
        node = helper.make_node("MatMul", ["x", f"{tag}_w"], [f"{tag}_y"], name=f"{tag}_matmul")
        return helper.make_graph([node], tag, [], [out], initializer=[_weight(f"{tag}_w", 4, 2)])

    nodes = [helper.make_node("If", ["flag"], ["y"], name="branch", then_branch=branch("then"),
                              else_branch=branch("else"))]
    return _model(nodes, [x, cond], [y])


def two_inputs_with_int():
    """Two inputs, one float and one int64 (an index), and an activation x activation MatMul."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4, 6])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4])
    nodes = [helper.make_node("MatMul", ["a", "w"], ["h"], name="proj"),
             helper.make_node("Cast", ["ids"], ["idf"], to=TensorProto.FLOAT, name="cast"),
             helper.make_node("Unsqueeze", ["idf", "axis"], ["idu"], name="unsq"),
             helper.make_node("Add", ["h", "idu"], ["h2"], name="add"),
             helper.make_node("Transpose", ["h2"], ["ht"], perm=[0, 2, 1], name="transpose"),
             helper.make_node("MatMul", ["h2", "ht"], ["y"], name="scores")]
    inits = [_weight("w", 6, 8), numpy_helper.from_array(np.array([2], dtype=np.int64), name="axis")]
    return _model(nodes, [a, ids], [y], inits)


def ml_classifier():
    """A linear classifier ending in ai.onnx.ml ops, as skl2onnx writes it: label and ZipMap probabilities."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["z"], name="linear"),
             helper.make_node("Add", ["z", "b"], ["logits"], name="bias"),
             helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
             helper.make_node("ArgMax", ["logits"], ["idx"], name="argmax", axis=1, keepdims=0),
             helper.make_node("ArrayFeatureExtractor", ["classes", "idx"], ["picked"], name="classes",
                              domain="ai.onnx.ml"),
             helper.make_node("Reshape", ["picked", "flat"], ["label"], name="reshape")]
    inits = [_weight("w", 4, 3), _weight("b", 3),
             numpy_helper.from_array(np.array([10, 20, 30], dtype=np.int64), name="classes"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), name="flat")]
    return _model(nodes, [x], [label, probs], inits, extra_opsets=[helper.make_opsetid("ai.onnx.ml", 3)])


def no_quantizable_layer():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y])


def conv_transpose():
    """ConvTranspose 4->6, 2x2 stride 2, on 4x3x3: weight [C_in, C_out, kh, kw], channels on axis 1."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 6, 6])
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2, 2])]
    return _model(nodes, [x], [y], [_weight("w", 4, 6, 2, 2)])


def save(model, path):
    onnx.save(model, str(path))
    return path


def weight_on_left():
    """y = W @ x with W [3, 5] and x [5, 7]: W's rows are the output channels."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 7])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 7])
    return _model([helper.make_node("MatMul", ["w", "x"], ["y"], name="left")], [x], [y], [_weight("w", 3, 5)])


def self_product():
    """h = x @ W, then h @ h: the same activation on both inputs of a MatMul."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 4])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="proj"),
             helper.make_node("MatMul", ["h", "h"], ["y"], name="square")]
    return _model(nodes, [x], [y], [_weight("w", 4, 4)])


def embedding_encoder(vocab=500, width=32):
    """A BERT-like encoder in miniature: a Gather embedding table (most of the bytes), a position table,
    a MatMul projection and an Einsum head with a constant operand."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["N", 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 4])
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
             helper.make_node("Gather", ["positions", "pos_ids"], ["pos"], name="position"),
             helper.make_node("Add", ["emb", "pos"], ["h0"], name="add"),
             helper.make_node("MatMul", ["h0", "w"], ["h1"], name="proj"),
             helper.make_node("Relu", ["h1"], ["h2"], name="relu"),
             helper.make_node("Einsum", ["h2", "head"], ["y"], name="head", equation="bsd,dk->bsk")]
    inits = [_weight("table", vocab, width), _weight("positions", 8, width), _weight("w", width, width),
             _weight("head", width, 4), numpy_helper.from_array(np.arange(8, dtype=np.int64), name="pos_ids")]
    return _model(nodes, [ids], [y], inits)


def lstm_in_if(hidden=16, features=8):
    """An LSTM inside an If branch whose W and R are sliced from framework tensors and concatenated into
    ONNX's gate order (as silero-vad's PyTorch export writes them); the other branch runs without it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, features])
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 1, 1, hidden])

    def reorder(source, tag):
        # PyTorch's gates are (i, f, g, o); ONNX's are (i, o, f, c): slice the four and concatenate.
        nodes, parts = [], []
        for k, gate in enumerate((0, 3, 1, 2)):
            start, end = f"{tag}_s{k}", f"{tag}_e{k}"
            inits.extend([numpy_helper.from_array(np.array([gate * hidden], np.int64), start),
                          numpy_helper.from_array(np.array([(gate + 1) * hidden], np.int64), end)])
            nodes.append(helper.make_node("Slice", [source, start, end], [f"{tag}_{k}"], name=f"{tag}_slice{k}"))
            parts.append(f"{tag}_{k}")
        nodes += [helper.make_node("Concat", parts, [f"{tag}_cat"], axis=0, name=f"{tag}_concat"),
                  helper.make_node("Unsqueeze", [f"{tag}_cat", "zero"], [f"{tag}_onnx"], name=f"{tag}_unsqueeze")]
        return nodes

    inits = [_weight("weight_ih", 4 * hidden, features), _weight("weight_hh", 4 * hidden, hidden),
             numpy_helper.from_array(np.array([0], np.int64), "zero")]
    body = reorder("weight_ih", "W") + reorder("weight_hh", "R")
    body.append(helper.make_node("LSTM", ["x", "W_onnx", "R_onnx"], ["lstm_y"], name="lstm", hidden_size=hidden))
    then_out = helper.make_tensor_value_info("lstm_y", TensorProto.FLOAT, [5, 1, 1, hidden])
    then_graph = helper.make_graph(body, "then", [], [then_out], initializer=inits)
    else_out = helper.make_tensor_value_info("zeros", TensorProto.FLOAT, [5, 1, 1, hidden])
    else_graph = helper.make_graph([], "else", [], [else_out], initializer=[
        numpy_helper.from_array(np.zeros((5, 1, 1, hidden), np.float32), "zeros")])
    nodes = [helper.make_node("If", ["flag"], ["y"], name="branch", then_branch=then_graph, else_branch=else_graph)]
    return _model(nodes, [x, flag], [y])


def half_precision():
    """conv_gemm with every float tensor in fp16, as a model exported for a GPU."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 3, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["N", 4])
    nodes = [helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "gw", "gb"], ["y"], name="gemm", transB=1)]
    inits = [numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)
             for t in (_weight("cw", 8, 3, 3, 3), _weight("cb", 8), _weight("gw", 4, 288), _weight("gb", 4))]
    return _model(nodes, [x], [y], inits)


def weights_as_inputs():
    """conv_gemm as IR-3 exporters wrote it: every weight is also listed as a graph input."""
    model = conv_gemm()
    for tensor in model.graph.initializer:
        model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    onnx.checker.check_model(model)
    return model


def opset7_ir3():
    """A Gemm classifier at opset 7 and IR version 3, weights listed as inputs, as 2018 exporters wrote."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 12])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    inits = [_weight("w1", 12, 16), _weight("b1", 16), _weight("w2", 16, 3), _weight("b2", 3)]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], name="fc2")]
    inputs = [x] + [helper.make_tensor_value_info(t.name, TensorProto.FLOAT, list(t.dims)) for t in inits]
    graph = helper.make_graph(nodes, "old", inputs, [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 7)])
    model.ir_version = 3
    onnx.checker.check_model(model)
    return model


def contrib_matmul():
    """A weight read by onnxruntime's contrib FusedMatMul, which qevo does not rewrite, next to a plain MatMul."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    nodes = [helper.make_node("FusedMatMul", ["x", "wf"], ["h"], name="fused", domain="com.microsoft", alpha=1.0),
             helper.make_node("MatMul", ["h", "w"], ["y"], name="plain")]
    return _model(nodes, [x], [y], [_weight("wf", 6, 8), _weight("w", 8, 4)],
                  extra_opsets=[helper.make_opsetid("com.microsoft", 1)])


def residual_concat():
    """Conv, Relu, a second Conv added back to the first (residual), a Concat of the sum with the first,
    a third Conv, pooling and a Gemm head: the tensors a fully quantized runtime encodes beyond layer inputs."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["a"], name="relu1"),
             helper.make_node("Conv", ["a", "w2"], ["b"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a", "b"], ["sum"], name="residual"),
             helper.make_node("Concat", ["sum", "a"], ["cat"], name="concat", axis=1),
             helper.make_node("Conv", ["cat", "w3"], ["c3"], name="conv3"),
             helper.make_node("GlobalAveragePool", ["c3"], ["pool"], name="pool"),
             helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "w4"], ["y"], name="head", transB=1)]
    inits = [_weight("w1", 4, 3, 3, 3), _weight("b1", 4), _weight("w2", 4, 4, 3, 3), _weight("w3", 6, 8, 1, 1),
             _weight("w4", 5, 6)]
    return _model(nodes, [x], [y], inits)


def fully_quantized_ops():
    """The ops a fully quantized runtime encodes beyond its layers: a Conv with a bias, a BatchNormalization,
    a Clip folded into the range of its output, a Mul by a constant, a Reshape (which keeps its input's
    encoding), a MatMul whose bias is an Add of a constant, and a Softmax (a fixed output range) returned by the
    graph."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 7])
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"], name="norm"),
             helper.make_node("Clip", ["n1", "lo", "hi"], ["a1"], name="clip"),
             helper.make_node("Mul", ["a1", "half"], ["m1"], name="scale"),
             helper.make_node("Reshape", ["m1", "shape"], ["flat"], name="reshape"),
             helper.make_node("MatMul", ["flat", "w2"], ["mm"], name="fc"),
             helper.make_node("Add", ["mm", "b2"], ["logits"], name="fc_bias"),
             helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=-1)]
    inits = [_weight("w1", 4, 3, 3, 3), _weight("b1", 4),
             numpy_helper.from_array((1 + 0.3 * RNG.standard_normal(4)).astype(np.float32), "gamma"),
             _weight("beta", 4), _weight("mean", 4),
             numpy_helper.from_array((0.5 + RNG.random(4)).astype(np.float32), "var"),
             numpy_helper.from_array(np.array(0.0, np.float32), "lo"),
             numpy_helper.from_array(np.array(6.0, np.float32), "hi"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half"),
             numpy_helper.from_array(np.array([-1, 144], np.int64), "shape"),
             _weight("w2", 144, 7), _weight("b2", 7)]
    return _model(nodes, [x], [y], inits)


def float_island():
    """A Conv, then Tanh and Erf (ops onnxruntime has no integer kernel for), whose result a Mul gates with
    the Conv's output before a second Conv: the tensor between Tanh and Erf is quantized on a runtime that
    quantizes every tensor, and stays float on onnxruntime's CPU execution provider."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 6, 6])
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Tanh", ["c"], ["h"], name="tanh"),
             helper.make_node("Erf", ["h"], ["e"], name="erf"),
             helper.make_node("Mul", ["e", "c"], ["m"], name="gate"),
             helper.make_node("Add", ["m", "shift"], ["s"], name="shift"),
             helper.make_node("Conv", ["s", "w2"], ["y"], name="conv2")]
    small = numpy_helper.from_array((0.1 * RNG.standard_normal((4, 3, 3, 3))).astype(np.float32), "w1")  # Tanh
    inits = [small, _weight("b1", 4), _weight("w2", 2, 4, 1, 1), _weight("shift", 1, 4, 1, 1)]   # not saturated
    return _model(nodes, [x], [y], inits)


def residual_block():
    """Conv, BatchNormalization, Relu, a second Conv added back (a residual), a depthwise Conv, a Mul by a
    per-channel constant, a 1x1 Conv, global pooling, Flatten and a Gemm head: the channels of the first two
    Convs prune together, those of the 1x1 Conv alone."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["n1"], name="norm"),
             helper.make_node("Relu", ["n1"], ["a"], name="relu1"),
             helper.make_node("Conv", ["a", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["a", "c2"], ["sum"], name="residual"),
             helper.make_node("Conv", ["sum", "wd", "bd"], ["d"], name="depthwise", pads=[1, 1, 1, 1], group=8),
             helper.make_node("Mul", ["d", "scale"], ["m"], name="scale"),
             helper.make_node("Conv", ["m", "w3"], ["c3"], name="conv3"),
             helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
             helper.make_node("GlobalAveragePool", ["r3"], ["pool"], name="pool"),
             helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "w4", "b4"], ["y"], name="head", transB=1)]
    rng = np.random.default_rng(1)   # its own: the shared RNG's draws would change the models built after it

    def weight(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name=name)

    inits = [weight("w1", 8, 3, 3, 3), weight("b1", 8),
             numpy_helper.from_array((1 + 0.3 * rng.standard_normal(8)).astype(np.float32), "gamma"),
             weight("beta", 8), weight("mean", 8),
             numpy_helper.from_array((0.5 + rng.random(8)).astype(np.float32), "var"),
             weight("w2", 8, 8, 3, 3), weight("b2", 8), weight("wd", 8, 1, 3, 3), weight("bd", 8),
             weight("scale", 8, 1, 1), weight("w3", 12, 8, 1, 1), weight("w4", 5, 12), weight("b4", 5)]
    return _model(nodes, [x], [y], inits)
