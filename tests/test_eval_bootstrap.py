"""Paired seed x identity bootstrap against hand-computed resampling distributions."""

import numpy as np
import pytest

from reidlab.eval.bootstrap import bootstrap_mean_ci, paired_delta_ci


def test_two_identities_one_query_each_matches_hand_enumeration():
    # resamples of {0, 1} of size 2: means 0 (1/4), 0.5 (1/2), 1 (1/4)
    ci = bootstrap_mean_ci([0.0, 1.0], [7, 9], n_boot=20000, seed=1)
    assert ci.estimate == 0.5
    assert (ci.lo, ci.hi) == (0.0, 1.0)
    assert ci.half_width == 0.5
    assert ci.prob_positive == pytest.approx(0.75, abs=0.01)  # P(mean > 0) = 1 - 1/4
    assert not ci.excludes_zero


def test_identity_with_two_queries_weighs_by_queries():
    # identity A: queries 0, 0; identity B: one query 3. Draws AA -> 0, AB -> (0+0+3)/3 = 1, BB -> 3
    ci = bootstrap_mean_ci([0.0, 0.0, 3.0], ["A", "A", "B"], n_boot=20000, level=0.4, seed=2)
    assert ci.estimate == 1.0
    # central 40 %: the 30th and 70th percentiles both fall on the middle atom (1/4 .. 3/4)
    assert (ci.lo, ci.hi) == (1.0, 1.0)
    assert ci.n_groups == 2 and ci.n_queries == 3


def test_seed_resampling_one_identity():
    # one identity (query resampling is a no-op), seeds with mean delta 0 and 2: 0 (1/4), 1 (1/2), 2 (1/4)
    ci = paired_delta_ci([[1.0], [3.0]], [[1.0], [1.0]], [5], n_boot=20000, seed=3)
    assert ci.estimate == 1.0
    assert (ci.lo, ci.hi) == (0.0, 2.0)
    assert ci.n_seeds == 2


def test_identical_systems_give_exact_zero():
    rng = np.random.default_rng(0)
    a = rng.random((3, 50))
    ci = paired_delta_ci(a, a.copy(), np.arange(50) // 2)
    assert (ci.estimate, ci.lo, ci.hi, ci.prob_positive) == (0.0, 0.0, 0.0, 0.0)


def test_constant_shift_is_recovered_exactly():
    a = np.full((2, 10), 0.7)
    ci = paired_delta_ci(a, a - 0.25, np.arange(10))
    assert ci.estimate == pytest.approx(0.25)
    assert ci.lo == pytest.approx(0.25) and ci.hi == pytest.approx(0.25)
    assert ci.excludes_zero


def test_same_seed_same_resamples():
    rng = np.random.default_rng(1)
    v, g = rng.normal(size=(3, 40)), np.arange(40) // 4
    assert bootstrap_mean_ci(v, g, seed=5) == bootstrap_mean_ci(v, g, seed=5)


def test_interval_shrinks_with_more_queries():
    rng = np.random.default_rng(2)
    small = bootstrap_mean_ci(rng.normal(size=40), np.arange(40))
    large = bootstrap_mean_ci(rng.normal(size=4000), np.arange(4000))
    assert large.half_width < small.half_width / 5


@pytest.mark.parametrize("values, groups, match", [
    ([np.nan, 1.0], [0, 1], "NaN"),
    ([], [], "shape"),
    ([1.0, 2.0], [0], "one entry per query"),
])
def test_bad_input_is_named(values, groups, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_mean_ci(values, groups)


def test_paired_shapes_must_match():
    with pytest.raises(ValueError, match="same shape"):
        paired_delta_ci(np.zeros((2, 3)), np.zeros((1, 3)), [0, 1, 2])
