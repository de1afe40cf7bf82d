"""The pymoo problem's objectives and constraints, and the seeding's first population."""
import numpy as np
import pytest

from qevo_cli.genome import Allowed, build_space
from qevo_cli.policy import LayerChoice, Policy
from qevo_cli.problem import UNTIMED, Costing
from qevo_cli.profiles import load_profile
from qevo_cli.seeding import coarse_to_fine, initial_population


@pytest.fixture(scope="module")
def space(default_workspace):
    return build_space(default_workspace.model.layers, load_profile("arm-dot"), Allowed(("int2", "int4", "int8"),
                                                                                          ("int8",)))


def test_objectives_and_budget_violations(space, default_workspace):
    costing = Costing(space, load_profile("arm-dot"), default_workspace.model.other_bytes, fp32_metric=98.0,
                      objectives=("metric", "size"), budgets={"metric": 1.0, "size": 0.005})
    small = space.decode(np.zeros(space.n_var, dtype=int))
    large = space.decode(space.upper)
    small_values, large_values = costing.values(small, 90.0), costing.values(large, 97.5)
    assert small_values["metric"] == pytest.approx(8.0) and large_values["metric"] == pytest.approx(0.5)
    assert small_values["size"] < large_values["size"]
    over = costing.constraints(small_values)   # 7 points over the drop budget
    assert over[0] == pytest.approx(7.0) and costing.n_constraints == 2
    assert costing.constraints(large_values)[1] == pytest.approx(large_values["size"] - 0.005)


class _NoTimer:
    """A measured latency that could not time anything (a failing --latency-cmd)."""

    def __call__(self, policy):
        return None

    def known(self, policy):
        return None


def test_an_untimed_policy_breaks_a_constraint_of_its_own(space, default_workspace):
    costing = Costing(space, load_profile("arm-dot"), default_workspace.model.other_bytes, fp32_metric=98.0,
                      objectives=("metric", "latency"), budgets={}, latency=_NoTimer())
    policy = Policy({layer.name: LayerChoice("int8", "int8") for layer in space.layers})
    values = costing.values(policy, 97.0)
    assert values["latency"] == UNTIMED and costing.constraints(values) == [1.0]
    predicted = costing.values(policy, 97.0, timed=False)   # before measuring: the profile's model places it
    assert predicted["latency"] < UNTIMED


def test_initial_population_is_distinct_within_bounds_and_reproducible(space):
    score = lambda gene, option: 4.0 ** -option * (gene + 1)  # noqa: E731  (fewer bits, more distortion)
    first = initial_population(space, 16, score, load_profile("arm-dot"), seed=1)
    again = initial_population(space, 16, score, load_profile("arm-dot"), seed=1)
    assert np.array_equal(first, again) and len(first) >= 16
    assert len({tuple(row) for row in first}) == len(first)
    assert (first >= 0).all() and (first <= space.upper).all()
    without_proxy = initial_population(space, 16, None, load_profile("arm-dot"), seed=1)
    assert any((row == 0).all() for row in without_proxy) and any((row == space.upper).all() for row in without_proxy)


def test_coarse_to_fine_spans_the_list_in_every_prefix():
    order = coarse_to_fine(list(range(9)))
    assert sorted(order) == list(range(9)) and order[:3] == [0, 8, 4]
