"""Racing: a data subset first, the rest only for policies that could reach the front."""
import numpy as np

from qevo_cli.config import SearchConfig
from qevo_cli.fidelity import MIN_PAIRS, Race, calibrate, race_rows
from qevo_cli.policy import Policy
from qevo_cli.search import run_search
from qevo_cli.store import RunStore

SETTINGS = dict(target="arm-neon", objectives=("metric", "size"), weight_formats=("int2", "int4", "int8"),
                act_formats=("int8",), pop=16, generations=8, seed=3)


def _race(front, costs=(1.0,), learning=False, shift=0.0, margin=0.0):
    return Race(np.arange(4), 90.0, shift, margin, np.array(front, dtype=float), costs, learning)


def test_a_policy_goes_on_unless_even_its_optimistic_prediction_is_dominated():
    front = [[1.0, 0.5], [0.2, 2.0]]                         # (drop, size) of measured policies
    assert not _race(front, costs=(1.0,)).worth_full(85.0)  # drop 5 at size 1: dominated by (1.0, 0.5)
    assert _race(front, costs=(1.0,)).worth_full(89.5)      # drop 0.5 at size 1: not dominated
    assert _race(front, costs=(1.0,), margin=4.5).worth_full(85.0)   # a wide margin keeps it
    assert _race(front, costs=(1.0,), shift=4.5).worth_full(85.0)    # subsets that read low are corrected
    assert _race(front, costs=(1.0,), learning=True).worth_full(0.0)
    assert _race([], costs=(1.0,)).worth_full(0.0)


def test_calibration_waits_for_enough_pairs():
    assert calibrate([(90.0, 91.0)] * (MIN_PAIRS - 1))[2]
    shift, margin, learning = calibrate([(90.0, 91.0), (90.0, 93.0)] * MIN_PAIRS)
    assert not learning and shift == 2.0 and margin > 0


def test_small_data_is_not_raced(default_workspace):
    assert race_rows(default_workspace.data.subset(40)) is None
    rows = race_rows(default_workspace.data)
    assert len(rows) == round(0.25 * default_workspace.data.size)


def test_only_full_measurements_reach_the_store_and_the_front(tmp_path, default_evaluator):
    result = run_search(SearchConfig(out=str(tmp_path / "run"), **SETTINGS))
    assert result.progress.estimated > 0
    store = RunStore(result.run_dir, create=False)
    stored = store.evaluations()
    store.close()
    assert len(stored) == result.progress.measured   # the cut-short ones are not stored
    by_key = {Policy.from_dict(row["policy"]).key(): row["metric"] for row in stored}
    for solution in result.front.solutions[:6]:
        policy = solution.policy
        assert solution.metric == by_key[policy.key()] == default_evaluator.evaluate(policy)


def test_racing_and_full_fronts_agree_on_the_best_policies(tmp_path):
    raced = run_search(SearchConfig(out=str(tmp_path / "raced"), **SETTINGS))
    full = run_search(SearchConfig(out=str(tmp_path / "full"), racing=False, **SETTINGS))
    assert raced.progress.estimated > 0 and full.progress.estimated == 0
    assert raced.front.hypervolume >= 0.97 * full.front.hypervolume
