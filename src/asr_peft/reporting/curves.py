"""Trade-off curves compared where both are defined: one curve's y against another's at the same x.

A curve is a few configurations' points (x: target WER, y: source WER, say), joined in order of x by
straight lines. Two curves are compared on the x range both cover (the larger of the two smallest x to
the smaller of the two largest), at `GRID` evenly spaced x there: the statistic is the mean over those x
of y_A(x) − y_B(x), i.e. the mean vertical gap between the curves over their common range. The same
grid serves every bootstrap replicate (each replicate's points moved by the resampling; a replicate's
curve is held flat beyond its ends, as `numpy.interp` does).
"""

from __future__ import annotations

import numpy as np

GRID = 11
ROWS = 50_000


def common_range(x_a: np.ndarray, x_b: np.ndarray) -> tuple[float, float] | None:
    """The x range both curves cover, or None when they cover no common stretch."""
    low, high = max(x_a.min(), x_b.min()), min(x_a.max(), x_b.max())
    return (float(low), float(high)) if high > low else None


def interpolate_rows(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(R, G): each row's piecewise-linear curve through its points (x[r], y[r]), each (R, k), evaluated at
    `grid`, flat beyond the row's smallest and largest x (`numpy.interp` row by row, vectorised)."""
    order = np.argsort(x, axis=1, kind="stable")
    x, y = np.take_along_axis(x, order, axis=1), np.take_along_axis(y, order, axis=1)
    count = x.shape[1]
    segment = np.clip((x[:, :, None] <= grid[None, None, :]).sum(axis=1) - 1, 0, count - 2)  # (R, G)
    x0, x1 = np.take_along_axis(x, segment, axis=1), np.take_along_axis(x, segment + 1, axis=1)
    y0, y1 = np.take_along_axis(y, segment, axis=1), np.take_along_axis(y, segment + 1, axis=1)
    span = x1 - x0
    weight = np.divide(grid[None, :] - x0, span, out=np.zeros_like(span), where=span > 0)
    values = y0 + np.clip(weight, 0.0, 1.0) * (y1 - y0)
    values = np.where(grid[None, :] < x[:, :1], y[:, :1], values)
    return np.where(grid[None, :] > x[:, -1:], y[:, -1:], values)


def mean_gap(grid: np.ndarray, curve_a: tuple[np.ndarray, np.ndarray], curve_b: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(R,): the mean over `grid` of y_A − y_B, each curve given as (x, y) arrays of shape (R, k); `ROWS` rows at a
    time (the intermediate (rows, k, G) arrays of a million replicates would take gigabytes)."""
    count = len(curve_a[0])
    gaps = np.empty(count)
    for start in range(0, count, ROWS):
        rows = slice(start, start + ROWS)
        a = interpolate_rows(grid, curve_a[0][rows], curve_a[1][rows])
        gaps[rows] = (a - interpolate_rows(grid, curve_b[0][rows], curve_b[1][rows])).mean(axis=1)
    return gaps
