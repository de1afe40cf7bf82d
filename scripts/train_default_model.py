"""Train qevo's bundled default model: a small CNN on scikit-learn's digits.

Reproducible: fixed seeds, deterministic torch ops, CPU only. Writes
    qevo_cli/data/default/model.onnx   the fp32 model (input "image" [N, 1, 8, 8], output "logits" [N, 10])
    qevo_cli/data/default/eval.npz     held-out evaluation split: image, labels
    qevo_cli/data/default/calib.npz    calibration split (from the training data): image, labels

Needs torch (CPU build) and scikit-learn; qevo itself needs neither.
    pip install torch==2.13.0 scikit-learn && python scripts/train_default_model.py
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

OUT = Path(__file__).resolve().parents[1] / "qevo_cli" / "data" / "default"
SEED = 0
# Narrow on purpose: little redundancy, so layers differ in how much low-bit weights cost them.
WIDTHS = {"stem": 8, "conv2": 8, "pointwise": 8, "conv5": 16, "fc": 16}


class DigitsNet(nn.Module):
    """Seven quantizable layers of different kinds, so their sensitivities differ:
    a 1-channel stem conv, a dense 3x3 conv, a depthwise 3x3, a pointwise 1x1,
    another dense 3x3, a Gemm (nn.Linear) and a MatMul classifier head. Batch norms are
    folded into the convs at export, which leaves per-channel weight ranges that differ."""

    def __init__(self) -> None:
        super().__init__()
        w = WIDTHS
        self.stem = nn.Conv2d(1, w["stem"], 3, padding=1)
        self.conv2 = nn.Conv2d(w["stem"], w["conv2"], 3, padding=1)
        self.depthwise = nn.Conv2d(w["conv2"], w["conv2"], 3, padding=1, groups=w["conv2"])
        self.pointwise = nn.Conv2d(w["conv2"], w["pointwise"], 1)
        self.conv5 = nn.Conv2d(w["pointwise"], w["conv5"], 3, padding=1)
        self.fc = nn.Linear(w["conv5"] * 4 * 4, w["fc"])
        self.head_weight = nn.Parameter(torch.randn(w["fc"], 10) * 0.1)
        self.head_bias = nn.Parameter(torch.zeros(10))
        self.norms = nn.ModuleList([nn.BatchNorm2d(w[name]) for name in ("stem", "conv2", "conv2", "pointwise",
                                                                          "conv5")])
        self.dropout = nn.Dropout(0.3)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.norms[0](self.stem(image)))
        x = torch.relu(self.norms[1](self.conv2(x)))
        x = torch.relu(self.norms[2](self.depthwise(x)))
        x = torch.relu(self.norms[3](self.pointwise(x)))
        x = torch.max_pool2d(x, 2)
        x = torch.relu(self.norms[4](self.conv5(x)))
        x = self.dropout(torch.relu(self.fc(x.flatten(1))))
        return torch.matmul(x, self.head_weight) + self.head_bias


def load_splits() -> dict[str, np.ndarray]:
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = digits.target.astype(np.int64)
    x_train, x_eval, y_train, y_eval = train_test_split(
        images, labels, test_size=0.5, random_state=SEED, stratify=labels)
    rng = np.random.default_rng(SEED)
    calib = rng.choice(len(x_train), size=256, replace=False)
    return {"x_train": x_train, "y_train": y_train, "x_eval": x_eval, "y_eval": y_eval,
            "x_calib": x_train[calib], "y_calib": y_train[calib]}


def train(splits: dict[str, np.ndarray], epochs: int) -> DigitsNet:
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    x = torch.from_numpy(splits["x_train"])
    y = torch.from_numpy(splits["y_train"])
    generator = torch.Generator().manual_seed(SEED)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), 32):
            batch = order[start:start + 32]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    return model.eval()


def export(model: DigitsNet, path: Path) -> None:
    dummy = torch.zeros(1, 1, 8, 8)
    torch.onnx.export(model, (dummy,), str(path), input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    onnx_model = onnx.load(str(path))
    _readable_names(onnx_model.graph)
    onnx_model.doc_string = "qevo default model: small CNN on scikit-learn digits (8x8, 10 classes)"
    onnx_model.producer_name = "qevo scripts/train_default_model.py"
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))


def _readable_names(graph: onnx.GraphProto) -> None:
    """Name each quantizable node after its module ("stem", "fc", "head") and its
    weight and bias after the node, instead of the exporter's "/stem/Conv" and "onnx::Conv_62"."""
    renamed: dict[str, str] = {}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        node.name = node.name.strip("/").split("/")[0] if node.op_type != "MatMul" else "head"
        for suffix, tensor in zip(("weight", "bias"), node.input[1:]):
            renamed[tensor] = f"{node.name}.{suffix}"
    renamed["head_bias"] = "head.bias"
    for tensor in graph.initializer:
        tensor.name = renamed.get(tensor.name, tensor.name)
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    splits = load_splits()
    model = train(splits, args.epochs)
    with torch.no_grad():
        accuracy = (model(torch.from_numpy(splits["x_eval"])).argmax(1).numpy() == splits["y_eval"]).mean()
    export(model, args.out / "model.onnx")
    np.savez_compressed(args.out / "eval.npz", image=splits["x_eval"], labels=splits["y_eval"])
    np.savez_compressed(args.out / "calib.npz", image=splits["x_calib"], labels=splits["y_calib"])
    print(f"eval accuracy {accuracy:.4f} on {len(splits['y_eval'])} held-out images; wrote {args.out}")


if __name__ == "__main__":
    main()
