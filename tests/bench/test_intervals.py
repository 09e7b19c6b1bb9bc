"""Bootstrap intervals (bench/report/intervals.py): coverage on data with a known mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.report import intervals


def test_mean_intervals_cover_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(1)
    reps, n, mean = 400, 30, 3.0
    hits = sum(intervals.bootstrap(rng.normal(mean, 1.0, n), resamples=1000, seed=i)
               .contains(mean) for i in range(reps))
    # nominal 95%; the percentile bootstrap of a mean of 30 is slightly narrow (~93-94%);
    # the binomial sd of the rate over 400 repetitions is ~1.1 points
    assert 0.90 <= hits / reps <= 0.98


def test_few_seeds_give_narrower_than_nominal_intervals():
    # why reports say how many seeds an interval rests on: with 5 values coverage falls to ~88%
    rng = np.random.default_rng(2)
    reps = 400
    hits = sum(intervals.bootstrap(rng.normal(0.0, 1.0, 5), resamples=1000, seed=i)
               .contains(0.0) for i in range(reps))
    assert 0.80 <= hits / reps <= 0.93


def test_an_interval_is_reproducible_and_holds_its_value():
    values = [2.3, 2.5, 2.4, 2.8, 2.2]
    a, b = intervals.bootstrap(values), intervals.bootstrap(values)
    assert a == b
    assert a.low <= a.value <= a.high and a.n == 5
    assert a.value == pytest.approx(np.mean(values))


def test_one_value_has_no_spread_and_none_has_no_interval():
    assert intervals.bootstrap([4.0]) == intervals.Interval(4.0, 4.0, 4.0, 1)
    assert intervals.bootstrap([]) is None


def test_median_with_values_never_reached():
    v = np.array([[1.0, 2.0, math.inf], [1.0, math.inf, math.inf], [1.0, 3.0, 2.0, 4.0][:3]])
    assert intervals.median(v).tolist() == [2.0, math.inf, 2.0]
    assert intervals.median(np.array([1.0, 3.0, math.inf, math.inf])) == math.inf
    assert intervals.median(np.array([1.0, 3.0, 5.0, math.inf])) == 4.0


def test_intervals_of_costs_may_end_at_infinity_but_never_at_nan():
    i = intervals.bootstrap([10.0, 12.0, math.inf, 11.0, math.inf], intervals.median)
    assert i.value == 12.0 and i.high == math.inf and not math.isnan(i.low)


def test_ratio_of_medians_resamples_pairs():
    search = [40.0, 44.0, 36.0, 42.0, 38.0]
    tower = [10.0, 11.0, 9.0, 10.5, 9.5]  # each search cost is exactly 4x its pair
    r = intervals.ratio_of_medians(search, tower)
    assert r.value == pytest.approx(4.0)
    assert r.low == pytest.approx(4.0) and r.high == pytest.approx(4.0)  # paired: no spread
    with pytest.raises(ValueError, match="differ in length"):
        intervals.ratio_of_medians([1.0], [1.0, 2.0])
