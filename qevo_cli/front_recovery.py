"""Recovering the front: evolve on the formats with weights rounded to nearest, then measure the front's policies
again with their weights recovered.

Recovery offered as per-layer genes (--rounding, --bias-correction, --weight-range) makes every (layer, format)
the search tries for the first time pay for its gptq codes and output-mse range when it is measured, so on a
large model the first generations eat the time limit. With --recover-front the evolution runs on rounding to
nearest for all but SHARE of --time-limit; the rest measures each front policy with each recipe of
recovery.RECIPES applied to every layer it applies to: one evaluation per front policy and recipe, and
recovered weights only for the (layer, format) pairs the front uses. A recovered policy competes with the
others on the front (SearchSpace.encode(..., recovered=True) admits it) and dominates its source where
recovery pays; where it does not, the source stays.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from .front import Solution
from .genome import SearchSpace
from .policy import Policy
from .recovery import RECIPES, recovered_choice

SHARE = 0.3   # of --time-limit, kept for recovering the front


def recovered_policy(space: SearchSpace, policy: Policy, recipe: str) -> Policy:
    """`policy` with `recipe` applied to every layer it applies to (formats and tensors unchanged)."""
    layers = {layer.name: layer for layer in space.layers}
    return replace(policy, layers={name: recovered_choice(layers[name], choice, recipe) if name in layers else choice
                                   for name, choice in policy.layers.items()})


def spread(solutions: Sequence[Solution], axis: str) -> list[Solution]:
    """`solutions` sorted along objective `axis`, in an order that covers them evenly wherever it is cut short:
    the middle one, then the middles of the two halves, and so on. Middle first, unlike the seeding's
    coarse_to_fine (ends first): a front's ends, near int8 or collapsed, gain least from recovery."""
    ordered = sorted(solutions, key=lambda solution: solution.objectives[axis])
    picked: list[int] = []
    spans = [(0, len(ordered))]
    while spans:
        next_spans = []
        for low, high in spans:
            if low >= high:
                continue
            middle = (low + high) // 2
            picked.append(middle)
            next_spans += [(low, middle), (middle + 1, high)]
        spans = next_spans
    return [ordered[i] for i in picked]


def recovery_batches(space: SearchSpace, solutions: Sequence[Solution], axis: str) -> list[list[Policy]]:
    """Per recipe, the recovered policies of the front's `solutions`, spread along `axis`; each policy once,
    and none that recovery leaves unchanged."""
    policies = [solution.policy for solution in spread(solutions, axis)]
    seen = {policy.key() for policy in policies}
    batches = []
    for recipe in RECIPES:
        batch = []
        for policy in policies:
            variant = recovered_policy(space, policy, recipe)
            if variant.key() not in seen:
                seen.add(variant.key())
                batch.append(variant)
        batches.append(batch)
    return batches
