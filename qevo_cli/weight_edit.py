"""How the graph editor writes weights and constants: simulated or stored weights, bias correction, and the
float constants a fully quantized runtime quantizes too.

`WeightWriter` is the part of `graph_edit.GraphEditor` that handles constants; it works on the editor's
caches (`_initializers`, `_simulated`, `_constants`, `_corrected`, `_tags`, `_prefix`) and asks it for a
layer's weight as the policy transforms it (`layer_weight`), its input statistics and its tensors' grids.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .errors import QevoError
from .fullgraph import INT8, INT32, NORMS, RULES, UINT8, QuantizedConstants, bias_codes, constant_codes
from .layers import Layer
from .policy import LayerChoice, Policy
from .quantize import quantize_weight, weight_codes
from .recovery import corrects_bias, output_shift
from .scope import placement
from .stored import dequantize_nodes, fits_matmul_nbits, matmul_nbits, shared_unpack_constants, storable

FLOAT, FLOAT16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16


class WeightWriter:
    """Weights and constants of the models GraphEditor builds."""

    # -- constants of a graph quantized beyond its layers' inputs --------------------------------
    def _quantize_constants(self, graph: onnx.GraphProto, policy: Policy, store: bool) -> list[onnx.NodeProto]:
        """The float constants the runtime quantizes too, where onnxruntime's quantizer places them
        (fullgraph.py): uint8 over their range, int8 symmetric (a weight with `quantize_static`'s defaults),
        or int32 for the biases of Conv / Gemm and of norms. Only ops that read a tensor quantized to
        integers are concerned. Returns the DequantizeLinear nodes of stored constants, which go first in
        the graph."""
        tensors, min_range = policy.tensors, RULES[policy.scope].min_real_range
        placed = placement(self.model, policy.scope).constants
        integer = {name for name, fmt in tensors.items() if fmt in ("int8", "int16")}
        layers = {layer.node_name: layer for layer in self.model.layers if not layer.subgraph and layer.weight}
        constants = QuantizedConstants(graph, self._prefix, store)
        for node in graph.node:
            if not any(name in integer for name in node.input):
                continue
            layer = layers.get(node.name)
            inputs = list(node.input)   # as read before any is replaced
            for position, name in enumerate(inputs):
                kind = self._constant_type(name)
                if kind not in (FLOAT, FLOAT16) or (layer is not None and name == layer.weight) or \
                        not self._finite(name):
                    continue
                role = placed.get((node.name, position))   # as onnxruntime's quantizer placed it
                if role is None and name in self._corrected and node.op_type in ("Conv", "Gemm") and position == 2:
                    role = "bias"   # one bias correction added: the runtime stores it as any other bias
                if role == "bias":   # it needs its input's scale
                    role = ("norm-bias" if node.op_type in NORMS else role) if inputs[0] in integer else None
                half = kind == FLOAT16
                if role in ("constant", "weight"):
                    signed = role == "weight"
                    node.input[position] = constants.add(name, *self._constant_codes(name, signed, min_range),
                                                         INT8 if signed else UINT8, half)
                    continue
                if role == "norm-bias":
                    signed = placed.get((node.name, 1)) == "weight"
                    other = self._constant_codes(inputs[1], signed, min_range)[1]
                elif role == "bias" and layer is not None:
                    other = self._weight_scale(layer, policy.choice(layer.name))
                else:
                    continue
                if other is not None:
                    scale = np.asarray(self._input_scale(node, tensors, policy.scope) * other, np.float32)
                    node.input[position] = constants.add(None, bias_codes(self._float_values(name), scale), scale, 0,
                                                         INT32, half)
        return constants.nodes

    def _constant_type(self, name: str) -> int | None:
        """The element type of a constant of the model being built (a corrected bias included), else None."""
        if name in self._corrected:
            return FLOAT16 if self._corrected[name].dtype == np.float16 else FLOAT
        return self._initializers[name].data_type if name in self._initializers else None

    def _finite(self, name: str) -> bool:
        """A constant holding inf or NaN (a mask's -inf) stays float: onnxruntime's helper gives it an infinite
        scale, and its model then computes NaN there."""
        if name in self._corrected:
            return bool(np.isfinite(self._float_values(name)).all())
        if name not in self._finite_constants:
            self._finite_constants[name] = bool(np.isfinite(self._float_values(name)).all())
        return self._finite_constants[name]

    def _constant_codes(self, name: str, signed: bool, min_range: float | None):
        if name in self._corrected:   # its values depend on the policy
            return constant_codes(self._float_values(name), signed, min_range)
        key = (name, signed, min_range)
        if key not in self._constants:
            self._constants[key] = constant_codes(self._float_values(name), signed, min_range)
        return self._constants[key]

    def _input_scale(self, node: onnx.NodeProto, tensors: dict[str, str], scope: str) -> np.float32:
        return self.tensor_qparams(node.input[0], tensors[node.input[0]], tensors, scope)[0]   # never replaced

    def _weight_scale(self, layer: Layer, choice: LayerChoice) -> np.ndarray | None:
        """One scale per output channel of the layer's integer weight (a grouped channel takes its largest)."""
        if not choice.weight_is_int:
            return None
        # the grid does not depend on how weights are rounded onto it
        _, scale, _ = weight_codes(self.layer_weight(layer, choice), replace(choice, rounding="nearest"),
                                   layer.channel_axis, self._gram(layer, choice))
        scale = np.asarray(scale, np.float32).reshape(-1)
        channels = layer.weight_shape[layer.channel_axis] if layer.channel_axis is not None else 1
        if scale.size > channels and scale.size % channels == 0:
            scale = scale.reshape(channels, -1).max(axis=1)
        return scale if scale.size > 1 else scale.reshape(())

    # -- weights ---------------------------------------------------------------------------------
    def weight_values(self, layer: Layer) -> np.ndarray:
        """The layer's float weight as float32."""
        return self._float_values(layer.weight)

    def _correct_bias(self, graph: onnx.GraphProto, node: onnx.NodeProto, layer: Layer, choice: LayerChoice) -> None:
        """Subtract the mean output shift of the layer's rounded weights from its bias (recovery.py), in a new
        constant per layer (a bias may be shared); a Conv without a bias gets one."""
        if not corrects_bias(layer):
            raise QevoError(f"layer {layer.name!r}: bias correction applies to Conv layers and to MatMul and Gemm "
                            "layers with a bias", field="bias_correction")
        rounded = numpy_helper.to_array(self.simulated_weight(layer, choice)).astype(np.float32)
        shift = output_shift(rounded, self.layer_weight(layer, choice), layer.channel_axis,
                             self.input_statistics(layer, choice)[1])
        name = f"{self._tags[layer.name]}.b"
        if layer.bias is None:   # a Conv without a bias
            values, dtype, target = -shift, numpy_helper.to_array(self._initializers[layer.weight]).dtype, node
            node.input.extend([""] * (2 - len(node.input)) + [name])
        else:
            original = numpy_helper.to_array(self._initializers[layer.bias])
            values, dtype = original.astype(np.float64) - shift.reshape(original.shape), original.dtype
            target = node if layer.op_type != "MatMul" else \
                next(n for n in graph.node if layer.bias in n.input and node.output[0] in n.input)
            target.input[list(target.input).index(layer.bias)] = name
        stored = np.asarray(values).astype(dtype)
        graph.initializer.append(numpy_helper.from_array(stored, name))
        self._corrected[name] = stored   # in its own type; read as float32 (_float_values)

    def _gram(self, layer: Layer, choice: LayerChoice):
        """The Gram matrices of the layer's inputs when its weights are rounded second-order or clipped for the
        least output error, else None."""
        needed = choice.rounding == "gptq" or choice.weight_range == "output-mse"
        return self.input_statistics(layer, choice)[0] if needed and choice.weight_is_int else None

    def _float_values(self, name: str) -> np.ndarray:
        if name in self._corrected:
            return self._corrected[name].astype(np.float32)
        return numpy_helper.to_array(self._initializers[name]).astype(np.float32)

    def simulated_weight(self, layer: Layer, choice: LayerChoice) -> onnx.TensorProto:
        """The layer's weight rounded to the choice's levels, in the model's own float type (cached)."""
        key = (layer.name, layer.weight_shape, choice.weight, choice.granularity, choice.symmetric,
               choice.weight_range, choice.rounding, choice.smoothed and choice.smoothing, choice.sparsity)
        if choice.weight in ("fp32", "fp16"):   # rounding is only how a sparse float weight is pruned
            key = (layer.name, layer.weight_shape, choice.weight, choice.sparsity,
                   choice.sparsity != "dense" and choice.rounding)
        tensor = self._simulated.get(key)
        if tensor is None:
            dtype = numpy_helper.to_array(self._initializers[layer.weight]).dtype
            values = quantize_weight(self.layer_weight(layer, choice), choice, layer.channel_axis,
                                     self._gram(layer, choice))
            tensor = numpy_helper.from_array(values.astype(dtype), name=f"{self._tags[layer.name]}.w")
            self._simulated[key] = tensor
        return tensor

    @staticmethod
    def _replace_weight(node, layer: Layer, tensor: onnx.TensorProto | None, graph, name: str | None = None) -> None:
        # A new initializer per layer: a weight shared by two layers can take two formats.
        if tensor is not None:
            graph.initializer.append(tensor)
        for position, used in enumerate(node.input):
            if used == layer.weight:
                node.input[position] = name or tensor.name

    def _store_weight(self, graph, node, layer: Layer, choice: LayerChoice, added: list) -> None:
        original = self._initializers[layer.weight]
        name = f"{self._tags[layer.name]}.w"
        if choice.weight == "fp32":   # a sparse float weight: its zeros in place, in the model's own type
            self._replace_weight(node, layer, self.simulated_weight(layer, choice), graph)
        elif choice.weight == "fp16":
            if original.data_type == FLOAT16 and choice.sparsity == "dense":
                return   # already stored in half precision
            half = numpy_helper.from_array(self.layer_weight(layer, choice).astype(np.float16), f"{name}.h")
            added.append(helper.make_node("Cast", [half.name], [name], to=FLOAT))
            self._replace_weight(node, layer, half, graph, name)
        elif not storable(choice):   # the caller allowed it: levels kept, held in float
            self._replace_weight(node, layer, self.simulated_weight(layer, choice), graph)
        elif fits_matmul_nbits(layer, choice, original.data_type):
            codes = weight_codes(self.layer_weight(layer, choice), choice, 1, self._gram(layer, choice))
            graph.initializer.extend(matmul_nbits(node, layer, choice, name, *codes))
        else:
            values = self.layer_weight(layer, choice)
            codes = weight_codes(values, choice, layer.channel_axis, self._gram(layer, choice))
            nodes, initializers = dequantize_nodes(values.shape, *codes, choice, layer.channel_axis, name,
                                                   original.data_type, self._prefix)
            if choice.weight_bits == 2:
                shared_unpack_constants(graph, self._prefix)
            added.extend(nodes)
            graph.initializer.extend(initializers)
            self._replace_weight(node, layer, None, graph, name)
