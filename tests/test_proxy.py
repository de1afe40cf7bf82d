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
    from qevo_cli.search import Search, prepare_resume

    settings = SearchConfig(target="arm-neon", weight_formats=("int2", "int4", "int8"), act_formats=("int8", "int16"),
                            out=str(tmp_path / "run"))
    first = Search(settings)
    first._proxy()
    first.close()
    assert first.progress.probes == 3 * 7
    monkeypatch.setenv("QEVO_CACHE_DIR", str(tmp_path / "another-cache"))
    resumed, algorithm = prepare_resume(tmp_path / "run")
    assert algorithm is None      # no checkpoint yet: it starts over, from the run's own probes
    resumed._proxy()
    resumed.close()
    assert resumed.progress.probes == 0
