"""Pure cost functions: latency, energy and bytes of a layer or a model on a target.

Per layer (the roofline):
    compute_s = MACs / (throughput of the compute path x efficiency of the op kind)
    memory_s  = bytes moved / bandwidth
    latency   = max(compute_s, memory_s) + per-op overhead
                + conversions (profiles with a `conversion` block: integer weights dequantized at every
                  run, activations converted into and out of a float kernel, each one more op)
    energy    = MACs x energy per MAC (compute path) + bytes moved x energy per byte
Bytes moved are the weights at their stored bit width (with their scales) plus the input
and output activations at the layer's activation bit width; an embedding moves only the rows
it looks up. A model adds up its layers and one per-graph overhead; on a target that quantizes
every tensor, also the bytes the other ops move at each tensor's format. The size of a model is its
weights as stored plus everything else the file holds (graph, biases, norms), as loaded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

from .errors import QevoError
from .layers import KIND_EMBEDDING, Layer
from .policy import LayerChoice, Policy, activation_bits, group_size
from .profiles import Profile
from .sparsity import parse as sparse_pattern

SCALE_BITS = 32          # each scale is stored as fp32


class LayerCost(NamedTuple):
    """Cost of one layer; a named tuple because a search builds millions of them."""

    layer: str
    latency_s: float
    energy_j: float
    bytes: int                 # moved per inference: weights + activations in and out
    weight_bytes: int          # stored size of the weights, scales included
    activation_bytes: int
    compute_s: float
    memory_s: float
    bound: str                 # "compute" or "memory", whichever term is slower
    compute: str               # compute entry that runs it, e.g. "int8/int8"
    native: bool               # False when the formats are unpacked or dequantized to run
    # (weight elements dequantized at every run, activation elements converted, conversion ops), on profiles
    # that model conversions (conversion_elements)
    conversions: tuple[int, int, int] = (0, 0, 0)

    @property
    def dequantized(self) -> bool:
        """Whether its kernel reads weights dequantized at every run."""
        return self.conversions[0] > 0

    def to_dict(self) -> dict:
        return self._asdict()


@dataclass(frozen=True, slots=True)
class ModelCost:
    latency_s: float
    energy_j: float
    bytes: int                 # moved per inference by the costed layers
    weight_bytes: int          # size of the model file: quantizable weights as stored, plus everything else
    layers: list[LayerCost]

    def to_dict(self) -> dict:
        return {"latency_s": self.latency_s, "energy_j": self.energy_j, "bytes": self.bytes,
                "weight_bytes": self.weight_bytes, "layers": [cost.to_dict() for cost in self.layers]}


def scale_count(layer: Layer, granularity: str) -> int:
    """How many scales a weight tensor stores at this granularity."""
    shape = layer.weight_shape
    if not shape or layer.params == 0:
        return 0
    if granularity == "per-tensor" or layer.channel_axis is None or len(shape) < 2:
        return 1   # a weight without a channel axis is quantized per-tensor, whatever the granularity asked
    channels = shape[layer.channel_axis]
    if granularity == "per-channel":
        return channels
    # Groups run along everything but the channel axis, flattened (a conv's input channels and kernel
    # together), as the weight is quantized and stored.
    per_channel = layer.params // channels
    return channels * -(-per_channel // group_size(granularity))


def weight_bytes(layer: Layer, choice: LayerChoice, compressed: bool = False) -> int:
    """Stored size of the layer's weights: packed elements plus scales and zero points. With `compressed`,
    an N:M sparse weight as a runtime that compresses it keeps it: the N values of every block of M, each
    with an index of log2(M) bits."""
    if layer.weight is None:
        return 0
    bits = choice.weight_bits
    total_bits = layer.params * bits
    if compressed and choice.sparsity != "dense":
        n, m = sparse_pattern(choice.sparsity)
        total_bits = layer.params * n // m * (bits + max(1, math.ceil(math.log2(m))))
    if choice.weight_is_int:
        scales = scale_count(layer, choice.granularity)
        total_bits += scales * (SCALE_BITS if choice.symmetric else SCALE_BITS + bits)
    return -(-total_bits // 8)


# Bytes an exported file spends on the nodes and small constants that store a quantized layer (measured
# on exports; names are short, so they hardly vary): a DequantizeLinear, the unpacking of 2-bit codes,
# a Cast for fp16, a Q/DQ pair or a DynamicQuantizeLinear in front of an activation.
NODE_BYTES = {"int": 55, "int2": 665, "fp16": 18, "int8": 150, "int16": 180, "dynamic-int8": 120, "fp16-activation": 60}


BIAS_OVERHEAD_BYTES = 24   # a float initializer's name, shape and framing in the file


def node_bytes(layer: Layer, choice: LayerChoice, tensors: Mapping[str, str] = {}) -> int:
    """What the exported file adds for the layer besides its weight values and scales (an input that
    `tensors` quantizes where it is produced gets no nodes of the layer's own)."""
    added = 0
    if layer.weight is not None and choice.weight != "fp32":
        added += NODE_BYTES["int2" if choice.weight == "int2" else "int" if choice.weight_is_int else "fp16"]
    if choice.bias_correction and choice.weight_is_int and layer.bias is None and layer.channel_axis is not None:
        # bias correction gives a Conv without a bias a float one, a value per output channel
        added += 4 * layer.weight_shape[layer.channel_axis] + BIAS_OVERHEAD_BYTES
    if not layer.weight_only and choice.activation != "fp32":
        own = [name for name in layer.activation_inputs if tensors.get(name, "fp32") == "fp32"]
        added += _activation_node_bytes(choice.activation) * len(own)
    return added


def _activation_node_bytes(fmt: str) -> int:
    return NODE_BYTES["fp16-activation" if fmt == "fp16" else fmt]


def tensor_node_bytes(fmt: str) -> int:
    """What the exported file adds for one tensor quantized where it is produced."""
    return 0 if fmt == "fp32" else _activation_node_bytes(fmt)


def activation_bytes(layer: Layer, choice: LayerChoice) -> int:
    # Dynamic quantization reads and writes float tensors; the range is found at run time.
    bits = 32 if choice.activation == "dynamic-int8" else choice.activation_bits
    return -(-(layer.input_elems + layer.output_elems) * bits // 8)


def layer_cost(layer: Layer, choice: LayerChoice, profile: Profile, output_format: str | None = None) -> LayerCost:
    """Latency, energy and bytes of one layer at one choice on one target. `output_format`: the format of the
    tensor the layer writes, where the target quantizes it (a tensor gene); on a profile that models
    conversions, an integer kernel needs its output quantized too, else it runs unfused in float."""
    path = profile.compute_path(layer, choice)
    if path is None or (profile.has_limits and not profile.offers(layer, choice)):
        raise QevoError(f"{profile.why_not(layer, choice)}, expected a choice the target offers "
                        f"(see qevo profiles show {profile.name})", field=f"layers.{layer.name}")
    left_unfused = unfused(path, output_format, profile)
    run = profile.compute_path_for(FLOAT_RUN, FLOAT_RUN, kind=layer.kind) if left_unfused else path
    w_bytes = weight_bytes(layer, choice)
    a_bytes = activation_bytes(layer, choice)
    moved = w_bytes + a_bytes
    if layer.kind == KIND_EMBEDDING:   # a lookup reads the rows it is asked for, not the table
        rows = max(layer.weight_shape[0], 1)
        moved = a_bytes + w_bytes * min(layer.input_elems, rows) // rows
    sparse = profile.sparse_run(choice.sparsity, run.label) if choice.sparsity != "dense" else None
    if sparse is not None and sparse.stored == "compressed":
        w_bytes = weight_bytes(layer, choice, compressed=True)
        moved = w_bytes + a_bytes
    compute_s = layer.macs / run.rate[layer.cost_kind] / (sparse.speedup if sparse is not None else 1.0)
    conversions = conversion_elements(layer, choice, path, left_unfused) if profile.models_conversions else NONE
    if conversions[0]:   # a float kernel on weights dequantized at every run
        compute_s /= profile.dequantized_efficiency
    memory_s = moved / profile.bandwidth
    slower = compute_s if compute_s >= memory_s else memory_s
    return LayerCost(
        layer=layer.name,
        latency_s=slower + profile.per_op_s + conversion_latency(conversions, choice, profile),
        energy_j=layer.macs * run.joules_per_mac + moved * profile.joules_per_byte,
        bytes=moved,
        weight_bytes=w_bytes,
        activation_bytes=a_bytes,
        compute_s=compute_s,
        memory_s=memory_s,
        bound="compute" if compute_s >= memory_s else "memory",
        compute=run.label,
        native=run.native,
        conversions=conversions,
    )


FLOAT_RUN = "fp32"   # what an integer kernel left unfused computes in
NONE = (0, 0, 0)     # conversion_elements on a profile that models no conversions


def unfused(run, output_format: str | None, profile: Profile) -> bool:
    """An integer kernel whose output tensor stays float: onnxruntime fuses DequantizeLinear -> op ->
    QuantizeLinear only, so the op runs in float on dequantized inputs (profiles that model conversions)."""
    return (output_format is not None and output_format not in ("int8", "int16") and profile.models_conversions
            and not run.float_weights and not run.float_activations)


def output_format(layer: Layer, policy: Policy, outputs: Mapping[str, str]) -> str | None:
    """The format `policy` holds the tensor `layer` writes in, where the target quantizes it (`outputs`:
    TensorGenes.outputs), else None."""
    return policy.tensors.get(outputs[layer.name], "fp32") if layer.name in outputs else None


def conversion_elements(layer: Layer, choice: LayerChoice, path, left_unfused: bool = False) -> tuple[int, int, int]:
    """(weight elements dequantized at every run, activation elements converted into or out of a float kernel,
    conversion ops) for one layer at `choice`, whose formats run as `path` (profile.compute_path), or, when
    the kernel is `left_unfused` (see `unfused`), in float on its dequantized inputs."""
    if left_unfused:
        weights = layer.params if layer.weight is not None and choice.weight_is_int else 0
        return weights, layer.input_elems, (1 if weights else 0) + 1
    weights = layer.params if layer.weight is not None and choice.weight_is_int and path.float_weights else 0
    static = choice.activation_is_static_int and not layer.weight_only
    activations = layer.input_elems + layer.output_elems if static and path.float_activations else 0
    return weights, activations, (1 if weights else 0) + (2 if activations else 0)


def tensor_conversions(policy: Policy, converted: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
    """(elements converted, conversion ops) of the tensors `policy` holds as integers, each converted once per
    float op that reads or writes it (`converted`: TensorGenes.converted)."""
    elements = ops = 0
    for name, (size, accesses) in converted.items():
        if policy.tensors.get(name, "fp32") in ("int8", "int16"):
            elements += size * accesses
            ops += accesses
    return elements, ops


def conversion_latency(conversions: tuple[int, int, int], choice: LayerChoice, profile: Profile) -> float:
    """What a layer's `conversion_elements` cost on the profile."""
    weights, activations, ops = conversions
    if not (weights or activations or ops):
        return 0.0
    return (weights * profile.weight_conversion(choice.weight) + activations * profile.activation_conversion_s
            + ops * profile.per_op_s)


def glue_bytes(accessed_elements: int, fmt: str, profile: Profile) -> int:
    """Bytes that ops other than the quantizable layers (adds, concats, norms, pooling) move for one tensor
    they touch `accessed_elements` times, held in `fmt` on the target."""
    return -(-accessed_elements * activation_bits(profile.stored_activation(fmt)) // 8)


def model_cost(layers: Sequence[Layer], policy: Policy, profile: Profile, other_bytes: int = 0,
               glue: Mapping[str, int] = {}, outputs: Mapping[str, str] = {},
               converted: Mapping[str, tuple[int, int]] = {}) -> ModelCost:
    """Totals over the layers at the policy's choices, plus the per-graph overhead.

    `other_bytes` is what the model file holds besides the quantizable weights (LoadedModel.other_bytes);
    given it, the size is the exported file's: the nodes each quantized layer adds are counted too.
    `glue` maps the tensors of a target that quantizes every tensor to the elements the other ops read and
    write in them; those ops are memory-bound, so they add the bytes they move at the tensor's format.
    `outputs` maps a layer to the tensor its output is quantized as (TensorGenes.outputs), for `layer_cost`;
    `converted` a tensor to its elements and the float ops around it (TensorGenes.converted), each of which
    converts it when it is held as integers (profiles that model conversions).
    """
    costs = [layer_cost(layer, policy.choice(layer.name), profile, output_format(layer, policy, outputs))
             for layer in layers]
    added = 0
    if other_bytes:
        added = sum(node_bytes(layer, policy.choice(layer.name), policy.tensors) for layer in layers)
        added += sum(tensor_node_bytes(fmt) for fmt in policy.tensors.values())
    moved = sum(glue_bytes(elements, policy.tensors.get(name, "fp32"), profile) for name, elements in glue.items())
    converting = 0.0
    if profile.models_conversions and converted:
        elements, ops = tensor_conversions(policy, converted)
        converting = elements * profile.activation_conversion_s + ops * profile.per_op_s
    return ModelCost(
        latency_s=sum(cost.latency_s for cost in costs) + profile.per_graph_s + moved / profile.bandwidth + converting,
        energy_j=sum(cost.energy_j for cost in costs) + moved * profile.joules_per_byte,
        bytes=sum(cost.bytes for cost in costs) + moved,
        weight_bytes=sum(cost.weight_bytes for cost in costs) + other_bytes + added,
        layers=costs,
    )


def roofline_latency(macs: float, moved_bytes: float, rate: float, bandwidth: float, per_op_s: float) -> float:
    """The roofline on raw numbers, for measurements that give bytes directly (fitting)."""
    return max(macs / rate, moved_bytes / bandwidth) + per_op_s
