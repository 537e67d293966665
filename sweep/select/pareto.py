"""Non-dominated sets, front ranks, hypervolume, knee and constraint picks over minimised columns.

Plain numpy; nothing here knows about Optuna, Ray or trials. Conventions shared by every function:

- ``points`` is an ``(n, k)`` array-like, one row per candidate, one column per objective; every column
  is minimised (negate a column to maximise it).
- A row that holds a NaN in any column is missing: it is never on a front, dominates nothing and gets
  rank ``-1``. ``inf`` is an ordinary (very bad) value.
- Row ``a`` dominates row ``b`` when ``a <= b`` in every column and ``a < b`` in at least one. Equal rows
  do not dominate each other, so duplicates of a non-dominated row are all on the front.
- Indices returned refer to rows of the array as passed in.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "dominates",
    "front_ranks",
    "hypervolume",
    "knee_index",
    "pareto_mask",
    "pick_max_error",
    "pick_max_size",
]


def _as_points(points: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(points, dtype=float)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1) if arr.size else arr.reshape(0, 1)
    if arr.ndim != 2:
        raise ValueError(f"points must be an (n, k) array, got shape {arr.shape}")
    return arr


def dominates(a: ArrayLike, b: ArrayLike) -> bool:
    """True when ``a`` is no worse than ``b`` in every column and strictly better in one (minimising)."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(a_arr <= b_arr) and np.any(a_arr < b_arr))


def _domination_matrix(arr: NDArray[np.float64]) -> NDArray[np.bool_]:
    """``d[i, j]`` is True when row i dominates row j; rows with NaN take part in nothing."""
    le = np.all(arr[:, None, :] <= arr[None, :, :], axis=2)
    lt = np.any(arr[:, None, :] < arr[None, :, :], axis=2)
    valid = ~np.isnan(arr).any(axis=1)
    return le & lt & valid[:, None] & valid[None, :]


def pareto_mask(points: ArrayLike) -> NDArray[np.bool_]:
    """Boolean mask of the rows on the first (non-dominated) front.

    Works for any number of columns (2 and 3 are the usual). Equal rows are all on the front when none
    dominates them; NaN rows are never on it. An empty input gives an empty mask.
    """
    arr = _as_points(points)
    valid = ~np.isnan(arr).any(axis=1)
    mask = valid.copy()
    others = arr[valid]
    # Row-by-row against all rows keeps memory at O(n) while staying vectorised.
    for i in np.flatnonzero(valid):
        if np.any(np.all(others <= arr[i], axis=1) & np.any(others < arr[i], axis=1)):
            mask[i] = False
    return mask


def front_ranks(points: ArrayLike) -> NDArray[np.int64]:
    """Rank of every row: 0 for the first front, 1 for the front left once that is removed, and so on.

    NaN rows get -1. Non-dominated sorting by counting dominators (O(n^2) time and memory).
    """
    arr = _as_points(points)
    n = len(arr)
    ranks = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return ranks
    dom = _domination_matrix(arr)
    remaining = ~np.isnan(arr).any(axis=1)
    dominator_count = dom.sum(axis=0)
    rank = 0
    while remaining.any():
        current = remaining & (dominator_count == 0)
        ranks[current] = rank
        remaining &= ~current
        dominator_count = dominator_count - dom[current].sum(axis=0)
        rank += 1
    return ranks


def _hypervolume_2d(arr: NDArray[np.float64], ref: NDArray[np.float64]) -> float:
    order = np.lexsort((arr[:, 1], arr[:, 0]))
    area, best_y = 0.0, ref[1]
    xs, ys = arr[order, 0], arr[order, 1]
    # Sweep left to right; each point adds the strip between its y and the lowest y seen so far,
    # from its x to the reference x.
    for x, y in zip(xs, ys, strict=True):
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(area)


def _hypervolume_3d(arr: NDArray[np.float64], ref: NDArray[np.float64]) -> float:
    order = np.argsort(arr[:, 2], kind="stable")
    arr = arr[order]
    volume = 0.0
    # Slice along z: between consecutive z values the dominated region is a fixed 2-D area.
    for i in range(len(arr)):
        z_next = arr[i + 1, 2] if i + 1 < len(arr) else ref[2]
        depth = z_next - arr[i, 2]
        if depth > 0:
            volume += depth * _hypervolume_2d(arr[: i + 1, :2], ref[:2])
    return float(volume)


def hypervolume(points: ArrayLike, ref: ArrayLike) -> float:
    """Volume of the region dominated by ``points`` and bounded by the reference point ``ref``.

    2 or 3 columns. Points that are not strictly better than ``ref`` in every column (including those
    beyond it) contribute nothing; NaN rows are ignored; no points gives 0.0. Dominated points do not
    change the result, so the whole set can be passed, not only its front.
    """
    arr = _as_points(points)
    ref_arr = np.asarray(ref, dtype=float).reshape(-1)
    k = arr.shape[1]
    if k not in (2, 3):
        raise ValueError(f"hypervolume takes 2 or 3 columns, got {k}")
    if ref_arr.shape != (k,) or np.isnan(ref_arr).any():
        raise ValueError(f"ref must be {k} numbers without NaN, got {ref_arr.tolist()}")
    inside = ~np.isnan(arr).any(axis=1) & np.all(arr < ref_arr, axis=1)
    arr = arr[inside]
    if len(arr) == 0:
        return 0.0
    return _hypervolume_2d(arr, ref_arr) if k == 2 else _hypervolume_3d(arr, ref_arr)


def knee_index(points: ArrayLike) -> int | None:
    """Index of the knee of the 2-D front of ``points``; None when no row is usable.

    The front is computed here (dominated and NaN rows are skipped), each axis is normalised to [0, 1]
    over the front, and the knee is the front point farthest from the straight line joining the
    front's two ends, measured towards the ideal corner (0, 0): points bulging away from it count as
    negative. When no point lies inside that line (one point, two points, a straight or concave
    front), the knee is the point with the smallest sum of normalised values. Remaining ties go to the
    smaller first column, then the smaller second, then the lower index. Duplicates count once.
    """
    arr = _as_points(points)
    if arr.shape[1] != 2:
        raise ValueError(f"knee_index takes 2 columns, got {arr.shape[1]}")
    on_front = np.flatnonzero(pareto_mask(arr))
    if len(on_front) == 0:
        return None
    front = arr[on_front]
    low, high = front.min(axis=0), front.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    norm = (front - low) / span
    # Ends of a 2-D front after normalising: (0, 1) and (1, 0); the line between is x + y = 1.
    distance = (1.0 - norm[:, 0] - norm[:, 1]) / np.sqrt(2.0)
    tol = 1e-12
    score = distance if distance.max() > tol else -(norm[:, 0] + norm[:, 1])
    best = score.max()
    candidates = np.flatnonzero(score >= best - tol)
    # Tie-break: smaller first column, then second, then lower original index.
    chosen = min(candidates, key=lambda c: (front[c, 0], front[c, 1], on_front[c]))
    return int(on_front[chosen])


def _valid_pairs(errors: ArrayLike, sizes: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    err = np.asarray(errors, dtype=float).reshape(-1)
    size = np.asarray(sizes, dtype=float).reshape(-1)
    if err.shape != size.shape:
        raise ValueError(f"errors and sizes differ in length: {err.size} and {size.size}")
    return err, size


def pick_max_error(errors: ArrayLike, sizes: ArrayLike, max_error: float) -> int | None:
    """Index of the smallest network whose error is at most ``max_error``.

    Ties in size go to the lower error, then to the lower index. NaN rows never qualify. None when no
    row qualifies.
    """
    err, size = _valid_pairs(errors, sizes)
    ok = np.flatnonzero(~np.isnan(err) & ~np.isnan(size) & (err <= max_error))
    if len(ok) == 0:
        return None
    return int(min(ok, key=lambda i: (size[i], err[i], i)))


def pick_max_size(errors: ArrayLike, sizes: ArrayLike, max_size: float) -> int | None:
    """Index of the lowest-error network whose size is at most ``max_size``.

    Ties in error go to the smaller size, then to the lower index. NaN rows never qualify. None when no
    row qualifies.
    """
    err, size = _valid_pairs(errors, sizes)
    ok = np.flatnonzero(~np.isnan(err) & ~np.isnan(size) & (size <= max_size))
    if len(ok) == 0:
        return None
    return int(min(ok, key=lambda i: (err[i], size[i], i)))
