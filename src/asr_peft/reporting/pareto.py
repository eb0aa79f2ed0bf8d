"""The Pareto frontier of WER against trainable parameters (fewer parameters and lower WER dominate)."""

from __future__ import annotations

from typing import Sequence


def pareto_frontier(parameters: Sequence[float], errors: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points, ordered by parameter count.

    A point is dominated when another has no more parameters and no higher error, and is strictly
    better in one of the two. Ties (identical points) are all kept.
    """
    order = sorted(range(len(parameters)), key=lambda i: (parameters[i], errors[i]))
    frontier: list[int] = []
    best = float("inf")
    for index in order:
        if errors[index] < best:
            frontier.append(index)
            best = errors[index]
        elif frontier and (parameters[index], errors[index]) == (parameters[frontier[-1]], errors[frontier[-1]]):
            frontier.append(index)
    return frontier
