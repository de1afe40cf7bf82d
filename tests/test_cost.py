"""The cost model against rooflines computed by hand from the numbers in each profile's YAML.

Each target family gets a compute-bound and a memory-bound case: CPUs (arm-neon, arm-dot,
intel-vnni), NPUs (hexagon, apple-ane) and the GPU (nvidia-trt).
"""
from __future__ import annotations


import pytest

from qevo_cli.cost import activation_bytes, layer_cost, model_cost, node_bytes, scale_count, weight_bytes
from qevo_cli.errors import QevoError
from qevo_cli.layers import Layer
from qevo_cli.policy import FP32, LayerChoice, Policy
from qevo_cli.profiles import load_profile

# conv5 of the default model: 64 -> 64 channels, 3x3, on 4x4 pixels
CONV5 = Layer("conv5", "Conv", "conv", "x", "y", "conv5.weight", (64, 64, 3, 3), 36864, 589824, 1024, 1024, 0, 1)
# a depthwise 3x3 over 32 channels of 8x8
DEPTHWISE = Layer("dw", "Conv", "depthwise", "x", "y", "dw.weight", (32, 1, 3, 3), 288, 18432, 2048, 2048, 0, 1)
# MatMul with a constant [K=1024, N=64] weight at batch 1
MATMUL = Layer("fc", "MatMul", "gemm", "x", "y", "fc.weight", (1024, 64), 65536, 65536, 1024, 64, 1, 0)
# a ResNet-sized 256 -> 256 3x3 conv on 56x56: 1.85 GMAC
BIG_CONV = Layer("big", "Conv", "conv", "x", "y", "big.weight", (256, 256, 3, 3), 589824, 589824 * 3136,
                 256 * 3136, 256 * 3136, 0, 1)
ATTENTION = Layer("scores", "MatMul", "act_matmul", "q", "s", None, (), 0, 64 * 64 * 32, 2 * 64 * 32, 64 * 64)

W8A8 = LayerChoice(weight="int8", activation="int8")


def check(cost, *, compute_s, memory_s, per_op_s, bound, moved):
    assert cost.compute_s == pytest.approx(compute_s, rel=1e-9)
    assert cost.memory_s == pytest.approx(memory_s, rel=1e-9)
    assert cost.bytes == moved
    assert cost.bound == bound
    assert cost.latency_s == pytest.approx(max(compute_s, memory_s) + per_op_s, rel=1e-9)


# ---------------------------------------------------------------- CPUs

def test_arm_neon_conv_w8a8_is_compute_bound():
    cost = layer_cost(CONV5, W8A8, load_profile("arm-neon"))
    moved = 36864 + 64 * 4 + 2048                      # int8 weights, 64 fp32 scales, int8 in and out
    check(cost, compute_s=589824 / (44.8e9 * 0.5), memory_s=moved / 2.49e9, per_op_s=5e-6,
          bound="compute", moved=moved)
    assert cost.energy_j == pytest.approx(589824 * 0.203e-12 + moved * 162.5e-12, rel=1e-9)


def test_arm_neon_depthwise_fp32_is_memory_bound():
    cost = layer_cost(DEPTHWISE, FP32, load_profile("arm-neon"))
    moved = 288 * 4 + (2048 + 2048) * 4
    check(cost, compute_s=18432 / (11.2e9 * 0.25), memory_s=moved / 2.49e9, per_op_s=5e-6,
          bound="memory", moved=moved)
    assert cost.energy_j == pytest.approx(18432 * 4.6e-12 + moved * 162.5e-12, rel=1e-9)


def test_arm_neon_int4_saves_bytes_not_compute():
    neon = load_profile("arm-neon")
    w4 = layer_cost(MATMUL, LayerChoice(weight="int4", granularity="per-group-32"), neon)
    w8 = layer_cost(MATMUL, W8A8, neon)
    # 4-bit weights plus one fp32 scale per 32 inputs: 64 x (1024 / 32) scales
    moved = 65536 * 4 // 8 + 64 * 32 * 4 + 1024 + 64
    check(w4, compute_s=65536 / (44.8e9 * 0.6), memory_s=moved / 2.49e9, per_op_s=5e-6, bound="memory", moved=moved)
    assert w4.compute == "int8/int8" and not w4.native
    assert w4.compute_s == w8.compute_s and w4.latency_s < w8.latency_s


def test_arm_dot_depthwise_uses_its_own_efficiency_and_is_compute_bound():
    cost = layer_cost(DEPTHWISE, W8A8, load_profile("arm-dot"))
    moved = 288 + 32 * 4 + 4096
    check(cost, compute_s=18432 / (716.8e9 * 0.1), memory_s=moved / 40e9, per_op_s=2e-6, bound="compute", moved=moved)


def test_arm_dot_matmul_w8a8_is_memory_bound():
    cost = layer_cost(MATMUL, W8A8, load_profile("arm-dot"))
    moved = 65536 + 64 * 4 + 1088                     # per-channel scales along the output axis (64)
    check(cost, compute_s=65536 / (716.8e9 * 0.6), memory_s=moved / 40e9, per_op_s=2e-6, bound="memory", moved=moved)


def test_intel_big_conv_fp32_is_compute_bound():
    cost = layer_cost(BIG_CONV, FP32, load_profile("intel-vnni"))
    moved = (589824 + 2 * 256 * 3136) * 4
    check(cost, compute_s=589824 * 3136 / (6.51e12 * 0.2), memory_s=moved / 307e9, per_op_s=3e-6,
          bound="compute", moved=moved)
    assert cost.energy_j == pytest.approx(589824 * 3136 * 53.8e-12 + moved * 162.5e-12, rel=1e-9)


def test_intel_matmul_dynamic_int8_is_memory_bound_and_moves_float_activations():
    cost = layer_cost(MATMUL, LayerChoice(activation="dynamic-int8"), load_profile("intel-vnni"))
    moved = 65536 + 64 * 4 + (1024 + 64) * 4
    check(cost, compute_s=65536 / (208.92e12 * 0.25), memory_s=moved / 307e9, per_op_s=3e-6,
          bound="memory", moved=moved)


# ---------------------------------------------------------------- NPUs

def test_hexagon_big_conv_w8a16_is_compute_bound():
    cost = layer_cost(BIG_CONV, LayerChoice(activation="int16"), load_profile("hexagon"))
    moved = 589824 + 256 * 4 + 2 * 256 * 3136 * 2
    check(cost, compute_s=589824 * 3136 / (11.25e12 * 0.5), memory_s=moved / 136e9, per_op_s=2e-6,
          bound="compute", moved=moved)
    assert cost.energy_j == pytest.approx(589824 * 3136 * 0.603e-12 + moved * 162.5e-12, rel=1e-9)


def test_hexagon_matmul_w4a8_is_memory_bound():
    cost = layer_cost(MATMUL, LayerChoice(weight="int4"), load_profile("hexagon"))
    moved = 65536 // 2 + 64 * 4 + 1088
    check(cost, compute_s=65536 / (22.5e12 * 0.3), memory_s=moved / 136e9, per_op_s=2e-6, bound="memory", moved=moved)


def test_ane_big_conv_fp32_runs_as_fp16_and_is_compute_bound():
    cost = layer_cost(BIG_CONV, FP32, load_profile("apple-ane"))
    moved = (589824 + 2 * 256 * 3136) * 4
    check(cost, compute_s=589824 * 3136 / (3.75e12 * 0.75), memory_s=moved / 120e9, per_op_s=1e-6,
          bound="compute", moved=moved)
    assert cost.compute == "fp16/fp16" and not cost.native


def test_ane_matmul_w8a8_is_memory_bound():
    cost = layer_cost(MATMUL, W8A8, load_profile("apple-ane"))
    moved = 65536 + 64 * 4 + 1088
    check(cost, compute_s=65536 / (7.5e12 * 0.4), memory_s=moved / 120e9, per_op_s=1e-6, bound="memory", moved=moved)


# ---------------------------------------------------------------- GPU

def test_nvidia_big_conv_w8a8_is_compute_bound():
    cost = layer_cost(BIG_CONV, W8A8, load_profile("nvidia-trt"))
    moved = 589824 + 256 * 4 + 2 * 256 * 3136
    check(cost, compute_s=589824 * 3136 / (989.5e12 * 0.5), memory_s=moved / 3.35e12, per_op_s=5e-6,
          bound="compute", moved=moved)
    assert cost.energy_j == pytest.approx(589824 * 3136 * 0.71e-12 + moved * 162.5e-12, rel=1e-9)


def test_nvidia_matmul_w4a16_is_memory_bound_and_computes_in_fp16():
    cost = layer_cost(MATMUL, LayerChoice(weight="int4", activation="fp16"), load_profile("nvidia-trt"))
    moved = 65536 // 2 + 64 * 4 + 1088 * 2
    check(cost, compute_s=65536 / (494.5e12 * 0.6), memory_s=moved / 3.35e12, per_op_s=5e-6,
          bound="memory", moved=moved)
    assert cost.compute == "fp16/fp16"


# ---------------------------------------------------------------- bytes

def test_scale_counts():
    assert scale_count(CONV5, "per-tensor") == 1
    assert scale_count(CONV5, "per-channel") == 64
    assert scale_count(CONV5, "per-group-32") == 64 * 18     # along input channels and kernel, flattened
    narrow = Layer("n", "Conv", "conv", "x", "y", "n.weight", (8, 16, 3, 3), 1152, 1152, 1, 1, 0, 1)
    assert scale_count(narrow, "per-group-32") == 8 * 5      # 144 weights a channel: 5 groups, as stored
    assert scale_count(MATMUL, "per-channel") == 64                  # output axis is 1 for MatMul
    assert scale_count(MATMUL, "per-group-128") == 64 * 8
    assert scale_count(ATTENTION, "per-channel") == 0
    vector = Layer("v", "Einsum", "gemm", "x", "y", "v.weight", (64,), 64, 64, 64, 1, None, 0)
    assert scale_count(vector, "per-channel") == scale_count(vector, "per-group-32") == 1   # stored per-tensor


def test_asymmetric_weights_store_zero_points_and_floats_store_no_scales():
    asym = LayerChoice(weight="int4", granularity="per-tensor", symmetric=False)
    assert weight_bytes(CONV5, asym) == -(-(36864 * 4 + 32 + 4) // 8)
    assert weight_bytes(CONV5, LayerChoice(weight="fp16", activation="fp16")) == 36864 * 2
    assert weight_bytes(ATTENTION, W8A8) == 0
    assert activation_bytes(ATTENTION, W8A8) == 2 * 64 * 32 + 64 * 64


def test_activation_matmul_has_no_weight_bytes():
    cost = layer_cost(ATTENTION, W8A8, load_profile("arm-neon"))
    assert cost.weight_bytes == 0 and cost.compute == "int8/int8"
    assert cost.compute_s == pytest.approx(64 * 64 * 32 / (44.8e9 * 0.5))


# ---------------------------------------------------------------- model totals and refusals

def test_model_cost_adds_layers_graph_overhead_and_other_parameters():
    profile = load_profile("hexagon")
    layers = [CONV5, DEPTHWISE, MATMUL]
    policy = Policy.uniform([layer.name for layer in layers], W8A8).with_layer("dw", FP32)
    total = model_cost(layers, policy, profile, other_bytes=400)
    parts = [layer_cost(layer, policy.choice(layer.name), profile) for layer in layers]
    assert total.latency_s == pytest.approx(sum(p.latency_s for p in parts) + 300e-6)
    assert total.energy_j == pytest.approx(sum(p.energy_j for p in parts))
    assert total.bytes == sum(p.bytes for p in parts)
    added = sum(node_bytes(layer, policy.choice(layer.name)) for layer in layers)
    assert added == 2 * (55 + 150)     # conv5 and fc: a DequantizeLinear and a Q/DQ pair each; dw is fp32
    assert total.weight_bytes == sum(p.weight_bytes for p in parts) + 400 + added
    assert [c.layer for c in total.layers] == ["conv5", "dw", "fc"]
    unnamed = model_cost(layers, Policy(), profile)
    assert unnamed.weight_bytes == (36864 + 288 + 65536) * 4


def test_refuses_a_choice_the_target_does_not_offer():
    with pytest.raises(QevoError, match="layers.conv5: hexagon offers int2 weights only for gemm layers"):
        layer_cost(CONV5, LayerChoice(weight="int2"), load_profile("hexagon"))
    with pytest.raises(QevoError, match="layers.fc: nvidia-trt does not offer int3 weights"):
        layer_cost(MATMUL, LayerChoice(weight="int3"), load_profile("nvidia-trt"))




# ---------------------------------------------------------------- host: what onnxruntime's CPU provider runs
# a 30522 x 384 word embedding table read for 128 tokens
EMBEDDING = Layer("word", "Gather", "embedding", "ids", "e", "word.weight", (30522, 384), 30522 * 384, 0, 128,
                  128 * 384, 1, None)


def test_host_dequantizes_integer_weights_where_no_integer_kernel_reads_them():
    """On host a MatMul with int8 weights and float activations runs onnxruntime's weight-only kernel; a Conv
    and an embedding table are dequantized at every run, at the profile's rate for the stored format (int2 is
    unpacked to int8 at load), and the Conv's float kernel runs at dequantized_efficiency of its rate."""
    host = load_profile("host")
    weight_only = LayerChoice(weight="int8", activation="fp32")
    matmul = layer_cost(MATMUL, weight_only, host)
    assert matmul.compute == "int8/fp32" and not matmul.dequantized
    conv, fp32_conv = layer_cost(CONV5, weight_only, host), layer_cost(CONV5, FP32, host)
    assert conv.compute == "fp32/fp32" and conv.dequantized and not fp32_conv.dequantized
    assert conv.compute_s == pytest.approx(fp32_conv.compute_s / host.dequantized_efficiency, rel=1e-9)
    assert host.dequantized_efficiency < 1
    per_element = {"int8": host.spec.conversion.weight, "int2": host.spec.conversion.weight,
                   "int4": host.spec.conversion.weight_by_format["int4"]}
    assert per_element["int4"] > per_element["int8"]
    fp32_table = layer_cost(EMBEDDING, FP32, host)
    for weight, rate in per_element.items():
        table = layer_cost(EMBEDDING, LayerChoice(weight=weight, activation="fp32"), host)
        # the whole table converted at every run, and one op more than fp32's lookup
        extra = EMBEDDING.params * rate + host.per_op_s
        assert table.latency_s - fp32_table.latency_s == pytest.approx(extra, rel=0.02), weight
    # a profile may give the kernel to embedding tables too: then nothing is converted
    data = host.spec.to_dict()
    data["compute"]["int8/fp32"]["kinds"] = ["gemm", "embedding"]
    from qevo_cli.profiles import profile_from_dict

    with_gather = profile_from_dict(data)
    table = layer_cost(EMBEDDING, weight_only, with_gather)
    assert table.compute == "int8/fp32" and not table.dequantized
    assert table.latency_s < layer_cost(EMBEDDING, weight_only, host).latency_s / 100


def test_conversion_terms_are_validated_like_every_other_value(tmp_path):
    from qevo_cli.profiles import profile_from_dict

    data = load_profile("host").spec.to_dict()
    data["conversion"]["dequantized_efficiency"] = 1.5
    with pytest.raises(QevoError, match="conversion.dequantized_efficiency: got 1.5, expected a share of peak"):
        profile_from_dict(data)
    data["conversion"]["dequantized_efficiency"] = 0.5
    data["conversion"]["weight_by_format"] = {"int9": "1 ns"}
    with pytest.raises(QevoError, match="conversion.weight_by_format"):
        profile_from_dict(data)
    data["conversion"]["weight_by_format"] = {"int4": "1 ns"}
    data["compute"]["int4/fp32"]["kinds"] = ["gemm", "attention"]
    with pytest.raises(QevoError, match="compute.int4/fp32.kinds"):
        profile_from_dict(data)
