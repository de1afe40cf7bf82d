"""The sensitivity proxy: probes on a data subset, extrapolation across formats, storage, deadline, and how
well it orders layers against the full measured table."""
import time

import numpy as np
import pytest

from qevo_cli.policy import LayerChoice
from qevo_cli.proxy import (WORST, ProbeStore, activation_noise, default_subset, measure_proxy, output_distortion,
                            spearman)
from qevo_cli.sensitivity import measure_sensitivity
from qevo_cli.store import EvaluationCache


def test_output_distortion_is_relative_squared_error_and_worst_for_non_finite():
    want = [np.array([[3.0, 4.0]]), np.array([1, 2])]          # the integer output is ignored
    assert output_distortion([np.array([[3.0, 4.0]]), np.array([0, 0])], want) == 0.0
    assert output_distortion([np.array([[3.0, 3.0]]), None], want) == pytest.approx(1 / 25)
    assert output_distortion([np.array([[np.nan, 4.0]]), None], want) == WORST


def test_activation_noise_falls_with_bits():
    assert activation_noise("int8") == 1.0 == activation_noise("dynamic-int8")
    assert activation_noise("int16") < activation_noise("fp16") < 1.0
    assert activation_noise("fp32") == 0.0


def test_subset_size_depends_on_data_alone():
    assert default_subset(899) == 32 and default_subset(120) == 12 and default_subset(5) == 5


def test_probes_are_stored_as_measured_and_reused(default_evaluator, isolated_cache):
    cache = EvaluationCache.for_evaluator(default_evaluator)
    first = measure_proxy(default_evaluator, ("int2", "int4", "int8"), ("int8",), store=ProbeStore(cache))
    layers = default_evaluator.model.layers
    assert first.probes == 3 * len(layers) and first.complete   # W4, A8, then W2 below the probe
    again = measure_proxy(default_evaluator, ("int2", "int4", "int8"), ("int8",),
                          store=ProbeStore(EvaluationCache.for_evaluator(default_evaluator)))
    assert again.probes == 0 and again.measured == first.measured
    for layer in layers:   # fewer bits, more distortion
        costs = [first.cost(layer, LayerChoice(weight=w, activation="fp32")) for w in ("int8", "int6", "int3")]
        assert costs[0] < costs[1] < costs[2]
        assert first.cost(layer, LayerChoice(weight="fp32", activation="int16")) < \
            first.cost(layer, LayerChoice(weight="fp32", activation="int8"))


def test_deadline_stops_probing_and_fills_gains(default_evaluator):
    table = measure_proxy(default_evaluator, ("int4",), ("int8",), deadline=time.perf_counter() - 1)
    assert table.probes == 0 and not table.complete
    assert set(table.weight_gain) == {layer.name for layer in default_evaluator.model.layers}


def test_proxy_orders_layers_like_the_full_table(default_evaluator):
    """On the bundled model the proxy's weight cells rank like the measured accuracy drops."""
    full = measure_sensitivity(default_evaluator, ("int2", "int4"), (), use_cache=False)
    proxy = measure_proxy(default_evaluator, ("int2", "int4"), ())
    layers = default_evaluator.model.layers
    predicted, measured = [], []
    for column in ("W:int2", "W:int4"):
        costs = proxy.column(layers, column)
        for layer in layers:
            predicted.append(costs[layer.name])
            measured.append(full.drops[layer.name][column])
    assert spearman(predicted, measured) > 0.6


def test_a_run_keeps_its_probes_so_a_resume_repeats_none(tmp_path, monkeypatch):
    """Killed during the sensitivity phase, then resumed with the shared cache gone: no probe is repeated."""
    from qevo_cli.config import SearchConfig
    from qevo_cli.resume import prepare_resume
    from qevo_cli.search import Search

    settings = SearchConfig(target="arm-neon", weight_formats=("int2", "int4", "int8"), act_formats=("int8", "int16"),
                            out=str(tmp_path / "run"))
    first = Search.new(settings)
    first._proxy()
    first.close()
    # int4 and int2 weights per layer, int8 per tensor gene (arm-neon's layers read the tensors' formats)
    assert first.progress.probes == 2 * 7 + len(first.space.tensors.genes) and first.space.tensors.genes
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "another-cache"))
    resumed, algorithm = prepare_resume(tmp_path / "run")
    assert algorithm is None      # no checkpoint yet: it starts over, from the run's own probes
    resumed._proxy()
    resumed.close()
    assert resumed.progress.probes == 0


def test_tensors_are_probed_alone_and_far_distorting_ones_at_their_other_formats(tmp_path, monkeypatch):
    """On a target that quantizes every tensor: one probe per tensor at int8, predicted at int16 by the step
    size, unless int8 already distorts beyond the threshold, where int16 is measured instead; the layers whose
    inputs are tensors get no activation probe of their own."""
    import tiny_models
    from qevo_cli import proxy
    from qevo_cli.data import load_data
    from qevo_cli.evaluate import Evaluator
    from qevo_cli.metrics import resolve_metric
    from qevo_cli.model import load_model
    from qevo_cli.scope import activation_groups

    loaded = load_model(tiny_models.save(tiny_models.residual_concat(), tmp_path / "r.onnx"))
    np.savez(tmp_path / "d.npz", x=np.random.default_rng(3).standard_normal((24, 3, 8, 8)).astype(np.float32))
    evaluator = Evaluator(loaded, load_data(tmp_path / "d.npz", loaded), resolve_metric("sqnr"))
    tensors = [g.tensor for g in activation_groups(loaded, "all-tensors")]
    covered = [layer.name for layer in loaded.layers]
    table = measure_proxy(evaluator, ("int4", "int8"), ("int8", "int16"), tensors=tensors, covered=covered,
                          tensor_formats=("int8", "int16"))
    assert table.probes == len(loaded.layers) + len(tensors)          # W:int4 per layer, A:int8 per tensor
    assert all(set(table.measured[f"T:{t}"]) == {"A:int8"} for t in tensors)
    assert all(table.cost(layer, LayerChoice("fp32", "int8")) == 0.0 for layer in loaded.layers)
    predicted = table.tensor_cost("sum", "int16")
    assert 0 < predicted < table.tensor_cost("sum", "int8")

    monkeypatch.setattr(proxy, "TENSOR_REFINE_ABOVE", 0.0)
    refined = measure_proxy(evaluator, ("int4", "int8"), ("int8", "int16"), tensors=tensors, covered=covered,
                            tensor_formats=("int8", "int16"))
    assert all(set(refined.measured[f"T:{t}"]) == {"A:int8", "A:int16"} for t in tensors)
    assert refined.tensor_cost("sum", "int16") == refined.measured["T:sum"]["A:int16"]
