"""Stands in for a device reached over adb or ssh, for `qevo search --latency-cmd`.

    qevo search --target arm-neon --latency-cmd 'python configs/remote_device.py {model}'

A real command copies the model to the device and runs its benchmark tool there, for example
    adb push {model} /data/local/tmp/m.onnx && adb shell /data/local/tmp/onnxruntime_perf_test ... | parse
and prints one number, the latency in ms, as its last line. This script runs the model in onnxruntime on
this machine instead (one thread, a warm-up, the median of repeated runs on zero-filled inputs), and can
pretend to be a slower device with --slowdown. Exit codes other than 0, and runs past qevo's
--latency-timeout, fail that policy only.
"""
import argparse
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort

TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
         "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--slowdown", type=float, default=1.0, help="multiply the measured latency")
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    feed = {i.name: np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in i.shape], TYPES.get(i.type, np.float32))
            for i in session.get_inputs()}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    print(f"runs: {args.runs}", file=sys.stderr)
    print(f"{statistics.median(times) * 1e3 * args.slowdown:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
