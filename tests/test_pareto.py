"""Non-dominated sets, ranks, hypervolume, knee and picks on hand-made points with known answers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from sweep.select import (
    dominates,
    front_ranks,
    hypervolume,
    knee_index,
    pareto_mask,
    pick_max_error,
    pick_max_size,
)

NAN = math.nan


def test_front_of_known_points() -> None:
    points = [(1, 5), (2, 3), (3, 4), (4, 1), (5, 5)]
    assert pareto_mask(points).tolist() == [True, True, False, True, False]


def test_equal_points_are_all_on_the_front() -> None:
    assert pareto_mask([(1, 2), (1, 2), (2, 1)]).tolist() == [True, True, True]
    # Same x, worse y: dominated.
    assert pareto_mask([(1, 2), (1, 3)]).tolist() == [True, False]


def test_dominated_duplicates_stay_off_the_front() -> None:
    assert pareto_mask([(0, 0), (1, 1), (1, 1)]).tolist() == [True, False, False]


def test_one_point_and_no_points() -> None:
    assert pareto_mask([(3.0, 3.0)]).tolist() == [True]
    assert pareto_mask(np.empty((0, 2))).tolist() == []
    assert front_ranks(np.empty((0, 2))).tolist() == []


def test_nan_rows_are_never_on_the_front_and_dominate_nothing() -> None:
    assert pareto_mask([(NAN, 1), (1, NAN), (2, 2), (0, 0)]).tolist() == [False, False, False, True]
    assert pareto_mask([(NAN, 0), (1, 1)]).tolist() == [False, True]
    assert pareto_mask([(NAN, NAN)]).tolist() == [False]


def test_three_objectives() -> None:
    points = [(1, 2, 3), (2, 1, 3), (3, 3, 0), (2, 2, 3), (1, 2, 4)]
    assert pareto_mask(points).tolist() == [True, True, True, False, False]


def test_front_ranks_peel_fronts() -> None:
    points = [(1, 1), (2, 2), (3, 3), (2, 1), (NAN, 0)]
    assert front_ranks(points).tolist() == [0, 2, 3, 1, -1]


@pytest.mark.parametrize("k", [2, 3])
def test_ranks_agree_with_domination(k: int) -> None:
    rng = np.random.default_rng(k)
    points = rng.integers(0, 6, size=(60, k)).astype(float)
    points[::13, 0] = NAN
    ranks = front_ranks(points)
    assert (ranks == 0).tolist() == pareto_mask(points).tolist()
    for i, j in itertools.permutations(range(len(points)), 2):
        if ranks[i] >= 0 and ranks[j] >= 0 and dominates(points[i], points[j]):
            assert ranks[i] < ranks[j]
    for i in np.flatnonzero(ranks > 0):
        assert any(dominates(points[j], points[i]) for j in np.flatnonzero(ranks == ranks[i] - 1))


def test_hypervolume_2d_by_hand() -> None:
    # Boxes to (4, 4): the union is 3 + 2 + 1 unit strips = 6.
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (4, 4)) == pytest.approx(6.0)
    # A dominated point, points beyond the reference and on its edge, and NaN rows add nothing.
    more = [(1, 3), (2, 2), (3, 1), (3, 3), (5, 0), (0, 5), (4, 0), (NAN, 0)]
    assert hypervolume(more, (4, 4)) == pytest.approx(6.0)
    assert hypervolume([(0.5, 0.25)], (1, 1)) == pytest.approx(0.375)
    assert hypervolume([(5, 5)], (4, 4)) == 0.0
    assert hypervolume(np.empty((0, 2)), (1, 1)) == 0.0


def test_hypervolume_3d_by_hand() -> None:
    assert hypervolume([(1, 1, 1)], (2, 2, 2)) == pytest.approx(1.0)
    # Two boxes of 4 and 2 sharing a unit cube.
    assert hypervolume([(0, 0, 1), (1, 1, 0)], (2, 2, 2)) == pytest.approx(5.0)
    # Three boxes of 4: 12 - 3 * 2 + 1 by inclusion-exclusion.
    assert hypervolume([(1, 0, 0), (0, 1, 0), (0, 0, 1)], (2, 2, 2)) == pytest.approx(7.0)
    assert hypervolume([(1, 0, 0), (0, 1, 0), (0, 0, 1)], (1, 1, 1)) == 0.0


@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_counts_dominated_unit_cells(k: int) -> None:
    rng = np.random.default_rng(10 + k)
    points = rng.integers(0, 6, size=(12, k)).astype(float)
    ref = np.full(k, 6.0)
    cells = sum(
        1
        for corner in itertools.product(range(6), repeat=k)
        if np.any(np.all(points <= np.array(corner), axis=1))
    )
    assert hypervolume(points, ref) == pytest.approx(cells)


def test_hypervolume_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="2 or 3 columns"):
        hypervolume([(1, 2, 3, 4)], (5, 5, 5, 5))
    with pytest.raises(ValueError, match="ref"):
        hypervolume([(1, 2)], (5, 5, 5))


def test_knee_is_the_point_farthest_inside_the_line_between_the_ends() -> None:
    assert knee_index([(0, 10), (1, 1), (5, 0.5), (10, 0)]) == 1
    # Dominated and NaN rows are skipped; the index refers to the input rows.
    assert knee_index([(NAN, 0), (6, 6), (0, 10), (5, 0.5), (1, 1), (10, 0)]) == 4


def test_knee_of_tiny_and_straight_fronts() -> None:
    assert knee_index([(3, 3)]) == 0
    assert knee_index([(3, 3), (4, 4)]) == 0
    # Two ends only, or a straight front: the tie goes to the smaller first column.
    assert knee_index([(1, 0), (0, 1)]) == 1
    assert knee_index([(0, 2), (1, 1), (2, 0)]) == 0
    assert knee_index([(NAN, 1)]) is None
    assert knee_index(np.empty((0, 2))) is None


def test_pick_max_error_takes_the_smallest_network_under_the_limit() -> None:
    errors, sizes = [1.0, 0.9, 2.0, 1.0], [10, 20, 5, 10]
    assert pick_max_error(errors, sizes, 1.0) == 0
    assert pick_max_error(errors, sizes, 0.95) == 1
    assert pick_max_error([1.0, 0.8], [10, 10], 1.0) == 1  # same size: lower error
    assert pick_max_error(errors, sizes, 0.5) is None
    assert pick_max_error([NAN, 1.0], [1, 50], 2.0) == 1


def test_pick_max_size_takes_the_lowest_error_under_the_limit() -> None:
    assert pick_max_size([1.0, 0.5, 0.7], [10, 30, 20], 25) == 2
    assert pick_max_size([0.7, 0.7], [20, 10], 25) == 1  # same error: smaller
    assert pick_max_size([1.0], [10], 5) is None
    assert pick_max_size([1.0, 0.1], [10, NAN], 100) == 0


def test_pareto_asha_keeps_a_rungs_best_fronts_and_matches_asha_on_one_objective() -> None:
    from sweep.search import keeps_going, rung_milestones

    assert rung_milestones(4, 1, 3) == [1, 3]
    assert rung_milestones(11, 2, 3) == [2, 6]
    assert rung_milestones(2, 1, 3) == [1]
    # the unpruned baseline first, then a small network with more error: both on the first front
    assert keeps_going([(2.6, 570)], 3)
    assert keeps_going([(2.6, 570), (4.1, 93)], 3)
    # dominated by a third of the rung or more: stops
    assert not keeps_going([(2.6, 570), (4.1, 93), (4.5, 120)], 3)
    assert not keeps_going([(2.6, 570), (4.1, 93), (3.0, 300), (5.0, 40), (4.5, 120)], 3)
    assert keeps_going([(2.6, 570), (6.0, 600), (7.0, 610), (8.0, 620), (4.5, 120)], 3)
    # one objective: ASHA's rule, go on while within the best third
    rung = [(e,) for e in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)]
    assert keeps_going([*rung, (1.5,)], 3)
    assert not keeps_going([*rung, (5.5,)], 3)
