"""The quantizable layer: what the rest of qevo knows about one Conv / Gemm / MatMul."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# Op kinds the cost model distinguishes.
KIND_CONV = "conv"            # Conv and ConvTranspose with group < channels
KIND_DEPTHWISE = "depthwise"  # Conv with group == input channels
KIND_GEMM = "gemm"            # Gemm, or MatMul with a constant weight
KIND_ACT_MATMUL = "act_matmul"  # MatMul of two activations: no weight, activations only
KINDS = (KIND_CONV, KIND_DEPTHWISE, KIND_GEMM, KIND_ACT_MATMUL)


@dataclass(frozen=True)
class Layer:
    """One quantizable layer of a model.

    Counts are for one inference with every dynamic dimension fixed (batch 1 unless
    the user says otherwise with --dim).
    """

    name: str                        # node name, unique in the model
    op_type: str                     # Conv, ConvTranspose, Gemm, MatMul
    kind: str                        # one of KINDS
    input: str                       # activation tensor the layer reads
    output: str                      # tensor the layer writes
    weight: str | None               # initializer holding the weight (None for act_matmul)
    weight_shape: tuple[int, ...]    # () when there is no weight
    params: int                      # weight elements (bias excluded)
    macs: int                        # multiply-accumulates per inference
    input_elems: int                 # activation elements read per inference
    output_elems: int                # activation elements written per inference
    channel_axis: int | None = None  # weight axis of output channels (per-channel scales)
    reduce_axis: int | None = None   # weight axis summed over (per-group scales run along it)
    subgraph: str | None = None      # path of the If/Loop body holding the layer, None at top level

    @property
    def has_weight(self) -> bool:
        return self.weight is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["weight_shape"] = list(self.weight_shape)
        return data
