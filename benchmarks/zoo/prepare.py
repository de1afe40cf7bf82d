"""Prepare the real-model zoo: install the model packages, write each model and its data splits.

    python benchmarks/zoo/prepare.py                 # every model, full sizes, into zoo-data/
    python benchmarks/zoo/prepare.py ppocr-rec --small --out /tmp/zoo
Each model gets a folder with model.onnx, search.npz (choose on it), test.npz (report on it),
calib.npz and info.json (what it is, its metric, and how to run qevo on it).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# benchmarks/ on the path for `zoo`; this folder off it, so zoo/silero_vad.py cannot hide the silero_vad package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo import available  # noqa: E402
from zoo.common import ZOO_DIR, ensure_packages, save_json  # noqa: E402


def metric_spec(module) -> str:
    """What to pass to qevo --metric: a built-in name, or this module's file and function."""
    if ":" not in module.METRIC:
        return module.METRIC
    return f"{Path(module.__file__).resolve()}:{module.METRIC.split(':', 1)[1]}"


def prepare_one(module, out: Path, small: bool) -> dict:
    ensure_packages(list(module.PACKAGES))
    sizes = getattr(module, "SIZES_SMALL", module.SIZES) if small else module.SIZES
    start = time.perf_counter()
    details = module.prepare(out, dict(sizes)) or {}
    info = {"name": module.NAME, "family": module.FAMILY, "packages": list(module.PACKAGES),
            "metric": metric_spec(module), "sizes": dict(sizes), "small": small,
            "prepare_seconds": round(time.perf_counter() - start, 1), **details}
    save_json(out / "info.json", info)
    return info


def main(argv=None) -> int:
    models = available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"models to prepare (default all: {', '.join(models)})")
    parser.add_argument("--out", type=Path, default=ZOO_DIR)
    parser.add_argument("--small", action="store_true", help="small splits, for CI")
    args = parser.parse_args(argv)
    for name in args.names or list(models):
        if name not in models:
            parser.error(f"unknown model {name!r}; expected one of {', '.join(models)}")
        info = prepare_one(models[name], args.out / name, args.small)
        print(f"{name}: {info['family']}, prepared in {info['prepare_seconds']} s -> {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
