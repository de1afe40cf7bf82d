"""AIMET (aimet-onnx 2.42) Automatic Mixed Precision on a qevo zoo model, for comparison with qevo.

Runs in a venv of its own (aimet-onnx pins its own onnx / onnxruntime / torch):
    python3.11 -m venv aimet-venv && aimet-venv/bin/pip install aimet-onnx==2.42.0
    aimet-venv/bin/python benchmarks/aimet_amp.py MODEL [--budget-min 20] [--phase1-samples N]
                                                  [--zoo zoo-data] [--out docs/benchmarks/aimet]
  MODEL: magika | orientation | ppocr-cls | minilm | ppocr-det | ppocr-rec | silero-vad

What it does (CPUExecutionProvider only, 2 intra-op threads):
 1. fp32 metric (plain onnxruntime) on search.npz and test.npz.
 2. QuantizationSimModel(param_type=int8, activation_type=int8, quant_scheme=min_max,
    config_file="htp_v81")  -- AIMET's HTP config: every op output quantized (except Gather/Cast/...),
    weights symmetric, per-channel for Conv/Gemm/MatMul; BatchNorm folded first
    (aimet_onnx.batch_norm_fold.fold_all_batch_norms_to_weight), compute_encodings on calib.npz.
    Uniform W8A8 metric on search (sim) and test (exported QDQ model run by plain onnxruntime).
 3. choose_mixed_precision(sim, candidates=[A8W8, A16W8, A8W4, A16W4], phase-1 callback = metric on an
    evenly spaced subset of search.npz, phase-2 callback = metric on all of search.npz,
    allowed_accuracy_drop=None (=> whole Pareto list), amp_search_algo=AMPSearchAlgo.BruteForce,
    forward_pass_callback = calibration on calib.npz, phase1_optimize=True (default), clean_start=True).
    Every callback call is counted (baseline / phase 1 / phase 2) and timed. A wall-clock budget guard
    stops phase 2 when --budget-min is exceeded (the explored part of the Pareto list is kept).
 4. Pareto points are re-applied (AIMET's own cumulative order), exported with sim.export (encodings)
    and sim.to_onnx_qdq (QDQ model), and the QDQ model is scored on test.npz with plain onnxruntime.
Results: OUT/results_MODEL.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import onnx

class Deadline(Exception):
    pass


from peer_data import THREADS, Split, load_metric, plain_session, run_outputs  # noqa: E402


# ------------------------------------------------------------------------------------------ helpers

def normalise_with_qevo(src: Path, dst: Path) -> None:
    code = ("from qevo_cli.model import load_model; import onnx, sys; "
            "onnx.save(load_model(sys.argv[1]).proto, sys.argv[2])")
    # qevo's own interpreter (QEVO_PYTHON, default: python3 on PATH) with the repository on its path
    subprocess.run([os.environ.get("QEVO_PYTHON", "python3"), "-c", code, str(src), str(dst)], check=True,
                   cwd=str(Path(__file__).resolve().parents[1]))


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:300] if text else ''}"


def param_numels(sim) -> dict[str, int]:
    sizes = {}
    graphs = [sim.model.model.graph]
    for g in graphs:
        for t in g.initializer:
            sizes[t.name] = int(np.prod(t.dims)) if len(t.dims) else 1
    return sizes


def weight_bytes_now(sim, numels) -> dict:
    """Quantized weight bytes at the sim's current param bitwidths (params*bits/8, enabled param quantizers),
    plus float32 bytes of params that stay unquantized (biases etc.)."""
    qbytes, fbytes, bits_hist = 0.0, 0, {}
    for name in sim.param_names:
        q = sim.qc_quantize_op_dict.get(name)
        n = numels.get(name, 0)
        if q is not None and q.enabled:
            qbytes += n * q.bitwidth / 8
            bits_hist[q.bitwidth] = bits_hist.get(q.bitwidth, 0) + n
        else:
            fbytes += 4 * n
    return {"quantized_weight_bytes": qbytes, "unquantized_param_bytes_fp32": fbytes,
            "param_count_by_bits": {str(k): v for k, v in sorted(bits_hist.items())}}


def cand_str(c) -> str:
    (ab, _), (pb, _) = c
    return f"A{ab}W{pb}"


# --------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--zoo", type=Path, default=Path(__file__).resolve().parents[1] / "zoo-data")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "aimet")
    ap.add_argument("--budget-min", type=float, default=20.0, help="wall-clock cap for the AMP run")
    ap.add_argument("--phase1-samples", type=int, default=None,
                    help="phase-1 subset size (default: chosen so phase 1 takes <= ~35%% of the budget)")
    ap.add_argument("--drops", type=str, default="0.5,1,2,5",
                    help="allowed drops (metric points) whose AIMET pick is exported and tested")
    ap.add_argument("--export-max", type=int, default=5)
    ap.add_argument("--export-point", type=int, default=None,
                    help="only re-apply Pareto point K from a finished run's cache (OUT/amp_MODEL/.cache), "
                         "export it and test it; adds it to results_MODEL.json['extra_exports']")
    args = ap.parse_args(argv)
    if args.export_point is not None:
        return export_point(args)

    from aimet_onnx.common.defs import QuantizationDataType, CallbackFunc
    from aimet_onnx.common.amp.utils import AMPSearchAlgo
    from aimet_onnx.quantsim import QuantizationSimModel
    from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
    from aimet_onnx.amp.quantizer_groups import find_quantizer_group
    import aimet_onnx.mixed_precision as amp_mod
    from aimet_onnx.amp.mixed_precision_algo import GreedyMixedPrecisionAlgo

    name = args.model
    folder = args.zoo / name
    info = json.loads((folder / "info.json").read_text())
    work = args.out / f"work_{name}"
    work.mkdir(parents=True, exist_ok=True)
    results_dir = args.out / f"amp_{name}"
    out_json = args.out / f"results_{name}.json"
    res: dict = {"model": name, "metric": info["metric"], "aimet_onnx": "2.42.0", "config_file": "htp_v81",
                 "threads": THREADS, "problems": []}

    def save():
        out_json.write_text(json.dumps(res, indent=1, default=str))

    metric = load_metric(info["metric"])
    src = folder / "model.onnx"
    model_path = src
    fp_sess = plain_session(str(src))
    input_names = [i.name for i in fp_sess.get_inputs()]
    search = Split(folder / "search.npz", input_names)
    test = Split(folder / "test.npz", input_names, search.batch)
    calib = Split(folder / "calib.npz", input_names, search.batch)
    res["sizes"] = {"search": search.n, "test": test.n, "calib": calib.n, "batch": search.batch}

    t = time.time()
    res["fp32_search"] = metric(run_outputs(fp_sess, search), search.labels)
    res["fp32_test"] = metric(run_outputs(fp_sess, test), test.labels)
    res["fp32_eval_s"] = round(time.time() - t, 1)
    print(f"[{name}] fp32 search {res['fp32_search']:.3f} test {res['fp32_test']:.3f}", flush=True)
    save()

    # ---- build the sim (fall back to qevo's normalised model if AIMET refuses the original)
    def build_sim(path: Path):
        model = onnx.load(str(path))
        folded = fold_all_batch_norms_to_weight(model)
        n_bn = len(folded[0]) if folded else 0
        sim = QuantizationSimModel(model, param_type="int8", activation_type="int8", quant_scheme="min_max",
                                   config_file="htp_v81", providers=["CPUExecutionProvider"],
                                   path=str(work / "sim"),
                                   session_options_kwargs={"intra_op_num_threads": THREADS,
                                                           "inter_op_num_threads": 1})
        return sim, n_bn

    calib_batches = list(calib.batches())
    amp_start = time.time()
    try:
        sim, n_bn = build_sim(model_path)
        sim.compute_encodings(calib_batches)
        run_outputs(sim.session, search.subset(2))   # smoke run
    except Exception as err:  # noqa: BLE001
        res["problems"].append({"stage": "QuantizationSimModel on original model", "error": first_line(err),
                                "trace": traceback.format_exc()[-2000:]})
        print(f"[{name}] AIMET refused the original model: {first_line(err)}; trying qevo-normalised", flush=True)
        model_path = work / "normalised.onnx"
        normalise_with_qevo(src, model_path)
        res["model_used"] = "qevo-normalised (opset upgrade etc.)"
        amp_start = time.time()
        sim, n_bn = build_sim(model_path)
        sim.compute_encodings(calib_batches)
    res.setdefault("model_used", "original zoo model.onnx")
    res["batchnorms_folded"] = n_bn
    build_s = time.time() - amp_start

    _, groups = find_quantizer_group(sim)
    numels = param_numels(sim)
    res["quantizers"] = {"groups": len(groups), "param_quantizers": len(sim.param_names),
                         "activation_quantizers": len(sim.activation_names),
                         "enabled": sum(q.enabled for q in sim.qc_quantize_op_dict.values())}

    def sim_metric(session, split: Split) -> float:
        return float(metric(run_outputs(session, split), split.labels))

    # ---- uniform W8A8 (all activations quantized by the HTP config)
    t = time.time()
    res["w8a8_search_sim"] = sim_metric(sim.session, search)
    t_full = time.time() - t
    res["w8a8_weight"] = weight_bytes_now(sim, numels)
    print(f"[{name}] groups {len(groups)}  W8A8 search (sim) {res['w8a8_search_sim']:.3f}  "
          f"full-search eval {t_full:.1f}s", flush=True)

    def export_and_test(tag: str) -> dict:
        d = work / "export"
        d.mkdir(exist_ok=True)
        out = {}
        try:
            sim.export(str(d), f"{name}_{tag}")          # float model + AIMET encodings (.encodings)
            out["aimet_export"] = str(d / f"{name}_{tag}.encodings")
        except Exception as err:  # noqa: BLE001
            out["aimet_export_error"] = first_line(err)
        try:
            qdq = sim.to_onnx_qdq()
            qpath = d / f"{name}_{tag}_qdq.onnx"
            onnx.save(qdq, str(qpath))
            out["qdq_model"] = str(qpath)
            out["qdq_file_bytes"] = qpath.stat().st_size
            s = plain_session(str(qpath))
            out["test_metric_qdq_ort"] = float(metric(run_outputs(s, test), test.labels))
        except Exception as err:  # noqa: BLE001
            out["qdq_error"] = first_line(err)
            res["problems"].append({"stage": f"QDQ export/test {tag}", "error": first_line(err)})
        out["test_metric_sim"] = sim_metric(sim.session, test)
        out.update(weight_bytes_now(sim, numels))
        return out

    t = time.time()
    res["w8a8_export"] = export_and_test("w8a8")
    res["w8a8_test"] = res["w8a8_export"].get("test_metric_qdq_ort")
    export_w8a8_s = time.time() - t
    print(f"[{name}] W8A8 test: qdq/ort {res['w8a8_test']}  sim {res['w8a8_export']['test_metric_sim']:.3f}",
          flush=True)
    save()

    # ---- AMP settings
    INT = QuantizationDataType.int
    candidates = [((8, INT), (8, INT)), ((16, INT), (8, INT)), ((8, INT), (4, INT)), ((16, INT), (4, INT))]
    budget_s = args.budget_min * 60
    n_p1_upper = len(groups) * (len(candidates) - 1)
    t_calib = 0.0
    t = time.time()
    sim.compute_encodings(calib_batches)
    t_calib = time.time() - t
    per_sample = t_full / search.n
    if args.phase1_samples:
        n_sub = min(search.n, args.phase1_samples)
    else:
        # AIMET: phase 1 "can use a relatively smaller dataset"; keep phase 1 within ~35% of the budget
        fit = int((0.35 * budget_s / max(n_p1_upper, 1)) / per_sample)
        n_sub = max(16, min(search.n // 4, fit))
    sub = search.subset(n_sub)
    est_p1 = n_p1_upper * per_sample * sub.n + 3 * t_calib * 2
    est_p2 = n_p1_upper * (t_calib + t_full)
    res["plan"] = {"budget_min": args.budget_min, "phase1_samples": sub.n, "phase1_evals_upper_bound":
                   n_p1_upper, "full_eval_s": round(t_full, 2), "calib_s": round(t_calib, 2),
                   "est_phase1_min": round(est_p1 / 60, 1), "est_phase2_full_list_min": round(est_p2 / 60, 1),
                   "subset_rule": "evenly spaced rows of search.npz; size = min(25% of search, what keeps "
                                  "phase 1 <= 35% of budget), at least 16"}
    print(f"[{name}] plan: {res['plan']}", flush=True)
    save()

    counts = {"baseline_phase2cb": 0, "phase1": 0, "phase2": 0, "forward_pass(compute_encodings)": 0}
    stamps = {}
    deadline = amp_start + budget_s
    state = {"phase1_started": False}

    def p1_eval(session, data):
        if time.time() > deadline:
            raise Deadline("budget exceeded in phase 1")
        if not state["phase1_started"]:
            state["phase1_started"] = True
            stamps["phase1_start"] = time.time()
        counts["phase1"] += 1
        return sim_metric(session, data)

    def p2_eval(session, data):
        if state["phase1_started"]:
            if "phase2_start" not in stamps:
                stamps["phase2_start"] = time.time()
            if time.time() > deadline:
                raise Deadline("budget exceeded in phase 2")
            counts["phase2"] += 1
        else:
            counts["baseline_phase2cb"] += 1
        return sim_metric(session, data)

    def forward_pass(session, _):
        counts["forward_pass(compute_encodings)"] += 1
        for b in calib_batches:
            session.run(None, b)

    # AMP counts MACs by running the model once on random inputs (aimet_onnx.amp.utils.get_activation_shapes):
    # random integers index outside a token-type table (minilm) and a dynamic length of 1 breaks a reflect Pad
    # (silero-vad). One real calibration row stands in, as a user would make it do.
    import aimet_onnx.utils as aimet_utils
    row = {k: (v[:1] if v.ndim else v) for k, v in calib_batches[0].items()}
    aimet_utils.make_dummy_input = lambda model, dynamic_size=1: dict(row)

    holder = {}

    class RecordingAlgo(GreedyMixedPrecisionAlgo):   # only records the instance; behaviour unchanged
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            holder["algo"] = self

    amp_mod.GreedyMixedPrecisionAlgo = RecordingAlgo

    res["amp_call"] = ("choose_mixed_precision(sim, candidates=[A8W8, A16W8, A8W4, A16W4], "
                       "eval_callback_for_phase1=CallbackFunc(metric, search_subset), "
                       "eval_callback_for_phase2=CallbackFunc(metric, search), allowed_accuracy_drop=None, "
                       f"results_dir='{results_dir}', clean_start=True, "
                       "forward_pass_callback=CallbackFunc(calibrate, None), use_all_amp_candidates=False, "
                       "phase1_optimize=True, amp_search_algo=AMPSearchAlgo.BruteForce)")
    truncated = None
    t_amp = time.time()
    try:
        pareto = amp_mod.choose_mixed_precision(
            sim, candidates,
            eval_callback_for_phase1=CallbackFunc(p1_eval, sub),
            eval_callback_for_phase2=CallbackFunc(p2_eval, search),
            allowed_accuracy_drop=None,
            results_dir=str(results_dir),
            clean_start=True,
            forward_pass_callback=CallbackFunc(forward_pass, None),
            use_all_amp_candidates=False,
            phase1_optimize=True,
            amp_search_algo=AMPSearchAlgo.BruteForce,
        )
    except Deadline as err:
        truncated = str(err)
        pareto = None
        print(f"[{name}] {truncated}", flush=True)
    t_end = time.time()
    algo = holder["algo"]
    res["amp_wall_s"] = round(t_end - amp_start, 1)   # sim build + compute_encodings + W8A8 eval/export + AMP
    res["amp_wall_s_excluding_w8a8_eval_export"] = round(t_end - amp_start - t_full - export_w8a8_s, 1)
    res["choose_mixed_precision_s"] = round(t_end - t_amp, 1)
    res["sim_build_and_first_calib_s"] = round(build_s, 1)
    res["phase1_s"] = round(stamps.get("phase2_start", t_end) - stamps["phase1_start"], 1) \
        if "phase1_start" in stamps else None
    res["phase2_s"] = round(t_end - stamps["phase2_start"], 1) if "phase2_start" in stamps else None
    res["eval_counts"] = dict(counts)
    res["truncated"] = truncated
    res["amp_fp32_search"] = algo.fp32_accuracy
    res["baseline_candidate"] = cand_str(algo.baseline_candidate) if algo.baseline_candidate else None
    res["uniform_candidates_search"] = {cand_str(c): s for s, c in algo._eval_scores}
    acc_list = algo.accuracy_list
    if acc_list is None:
        res["problems"].append({"stage": "phase 1", "error": truncated or "no accuracy list"})
        save()
        return 1
    res["accuracy_list_len"] = len(acc_list)
    if pareto is None:   # truncated: AIMET writes the explored points after each evaluation
        with open(results_dir / ".cache" / "pareto_list.pkl", "rb") as f:
            pareto = pickle.load(f)
    res["pareto_points_explored"] = len(pareto)

    # analytic weight bytes per Pareto point (cumulative AIMET order)
    name_to_q = sim.qc_quantize_op_dict
    base_pbw = algo.baseline_candidate[1][0]
    grouped_params = {p for g in groups for p in g.parameter_quantizers}
    bits = {p: (base_pbw if p in grouped_params else name_to_q[p].bitwidth)
            for p in sim.param_names if name_to_q.get(p) is not None and name_to_q[p].enabled}

    points = []
    for k, (rel_bitops, score, qg, cand) in enumerate(pareto):
        aq, wq = acc_list[k][0], acc_list[k][1]
        assert aq == qg and wq == cand
        for p in qg.parameter_quantizers:
            if p in bits:
                bits[p] = cand[1][0]
        wbytes = sum(numels.get(p, 0) * b / 8 for p, b in bits.items())
        points.append({"index": k, "group": [q for _, q in qg.to_list()], "candidate": cand_str(cand),
                       "phase1_score": acc_list[k][2], "search_metric": score,
                       "relative_bitops": rel_bitops, "weight_bytes": wbytes})
    res["pareto"] = points
    res["aimet_final_eval_search"] = algo._final_eval_score
    save()

    # ---- which points to export: AIMET's pick (brute-force rule) for several allowed drops + the final one
    def brute_pick(drop: float) -> int:
        target = algo.fp32_accuracy - drop
        for i, p in enumerate(points):
            if p["search_metric"] < target:
                return i - 1   # -1: even the first point misses the target -> baseline candidate
        return len(points) - 1

    picks = {}
    for d in [float(x) for x in args.drops.split(",") if x]:
        picks.setdefault(brute_pick(d), []).append(f"drop<={d:g}")
    for d in [float(x) for x in args.drops.split(",") if x]:
        ok = [p for p in points if p["search_metric"] >= algo.fp32_accuracy - d]
        if ok:
            best = min(ok, key=lambda p: (p["weight_bytes"], p["relative_bitops"], -p["search_metric"]))
            picks.setdefault(best["index"], []).append(f"min_weight_bytes_within_drop<={d:g}")
    if not truncated:
        picks.setdefault(len(points) - 1, []).append("aimet_final(allowed_accuracy_drop=None)")
    res["picks"] = {str(k): v for k, v in picks.items()}

    def apply_point(k: int):
        algo._set_all_quantizer_groups_to_candidate(algo.baseline_candidate)
        for qg, cand, _, _ in acc_list[:k + 1]:
            algo._set_quantizer_group_to_candidate(qg, cand)
        sim._apply_exception_rules()  # pylint: disable=protected-access
        sim.compute_encodings(calib_batches)

    exports = []
    for k in sorted(picks, reverse=True)[:args.export_max]:
        t = time.time()
        if k < 0:
            algo._set_all_quantizer_groups_to_candidate(algo.baseline_candidate)
            tag = "baseline"
        else:
            apply_point(k)
            tag = f"p{k}"
        e = {"point": k, "why": picks[k], "search_metric_reapplied": sim_metric(sim.session, search),
             "search_metric_amp": points[k]["search_metric"] if k >= 0 else None,
             "relative_bitops": points[k]["relative_bitops"] if k >= 0 else 1.0}
        e.update(export_and_test(tag))
        e["seconds"] = round(time.time() - t, 1)
        exports.append(e)
        print(f"[{name}] export {tag} {picks[k]}: search {e['search_metric_reapplied']:.3f} "
              f"test(qdq) {e.get('test_metric_qdq_ort')} wbytes {e['quantized_weight_bytes']:.0f}", flush=True)
        res["exports"] = exports
        save()
    chosen = next((e for e in exports if any("drop<=1" == w for w in e["why"])), None)
    res["chosen"] = {"rule": "AIMET brute-force pick for allowed_accuracy_drop=1 metric point",
                     **({k: chosen[k] for k in ("point", "search_metric_reapplied", "test_metric_qdq_ort",
                                                  "test_metric_sim", "quantized_weight_bytes",
                                                  "relative_bitops") if k in chosen} if chosen else {})}
    res["total_script_s"] = round(time.time() - amp_start, 1)
    save()
    print(json.dumps({k: res[k] for k in ("fp32_search", "w8a8_search_sim", "w8a8_test", "eval_counts",
                                          "amp_wall_s", "pareto_points_explored", "truncated", "chosen")},
                     default=str), flush=True)
    return 0


def export_point(args) -> int:
    """Re-apply Pareto point K (AIMET's cumulative order from accuracy_list.pkl) on a fresh sim and test it."""
    from aimet_onnx.quantsim import QuantizationSimModel
    from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
    from aimet_onnx.amp.quantizer_groups import find_quantizer_group
    from aimet_onnx.common.defs import QuantizationDataType
    name, k = args.model, args.export_point
    folder = args.zoo / name
    out_json = args.out / f"results_{name}.json"
    res = json.loads(out_json.read_text())
    info = json.loads((folder / "info.json").read_text())
    metric = load_metric(info["metric"])
    work = args.out / f"work_{name}"
    path = work / "normalised.onnx" if res.get("model_used", "").startswith("qevo") else folder / "model.onnx"
    model = onnx.load(str(path))
    fold_all_batch_norms_to_weight(model)
    sim = QuantizationSimModel(model, param_type="int8", activation_type="int8", quant_scheme="min_max",
                               config_file="htp_v81", providers=["CPUExecutionProvider"], path=str(work / "sim2"),
                               session_options_kwargs={"intra_op_num_threads": THREADS, "inter_op_num_threads": 1})
    names = [i.name for i in sim.session.get_inputs()]
    search = Split(folder / "search.npz", names)
    test = Split(folder / "test.npz", names, search.batch)
    calib = list(Split(folder / "calib.npz", names, search.batch).batches())
    with open(args.out / f"amp_{name}" / ".cache" / "accuracy_list.pkl", "rb") as f:
        acc_list = pickle.load(f)
    name_to_q, groups = find_quantizer_group(sim)
    INT = QuantizationDataType.int
    ab, wb = {"A16W8": (16, 8), "A8W8": (8, 8), "A16W4": (16, 4), "A8W4": (8, 4)}[res["baseline_candidate"]]
    base = ((ab, INT), (wb, INT))
    for g in groups:
        g.set_quantizers_to_candidate(name_to_q, base)
    for qg, cand, _, _ in acc_list[:k + 1]:
        qg.set_quantizers_to_candidate(name_to_q, cand)
    sim._apply_exception_rules()  # pylint: disable=protected-access
    sim.compute_encodings(calib)
    e = {"point": k, "search_metric_reapplied": float(metric(run_outputs(sim.session, search), search.labels)),
         "search_metric_amp": res["pareto"][k]["search_metric"] if k < len(res["pareto"]) else None}
    d = work / "export"
    d.mkdir(exist_ok=True)
    sim.export(str(d), f"{name}_p{k}")
    qpath = d / f"{name}_p{k}_qdq.onnx"
    onnx.save(sim.to_onnx_qdq(), str(qpath))
    e["qdq_model"] = str(qpath)
    e["test_metric_qdq_ort"] = float(metric(run_outputs(plain_session(str(qpath)), test), test.labels))
    e.update(weight_bytes_now(sim, param_numels(sim)))
    res.setdefault("extra_exports", []).append(e)
    out_json.write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps(e), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
