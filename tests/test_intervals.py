import numpy as np
import pytest

from siblings.intervals import wilson


@pytest.mark.parametrize("k,n,low,high", [
    (15, 100, 0.09306, 0.23284),   # worked by hand with z = 1.959964
    (0, 100, 0.0, 0.03699),        # z^2 / (n + z^2): a zero count still has an upper bound
    (100, 100, 0.96301, 1.0),
    (5, 40, 0.05460, 0.26112),
])
def test_wilson_matches_the_closed_form(k, n, low, high):
    lo, hi = wilson(np.array([k]), np.array([n]))
    assert lo[0] == pytest.approx(low, abs=5e-5) and hi[0] == pytest.approx(high, abs=5e-5)


def test_wilson_brackets_the_rate_narrows_with_n_and_is_nan_without_images():
    k, n = np.array([3, 30, 300, 0]), np.array([10, 100, 1000, 0])
    lo, hi = wilson(k, n)
    rate = k[:3] / n[:3]
    assert np.all(lo[:3] <= rate) and np.all(rate <= hi[:3])
    assert np.all(np.diff(hi[:3] - lo[:3]) < 0)
    assert np.isnan(lo[3]) and np.isnan(hi[3])


def test_an_all_or_nothing_count_keeps_its_rate_inside_the_interval_exactly():
    lo, hi = wilson(np.array([40, 0, 100]), np.array([40, 40, 100]))
    assert hi[0] == 1.0 and lo[1] == 0.0 and hi[2] == 1.0
