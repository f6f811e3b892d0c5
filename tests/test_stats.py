"""The comparison statistics against independent computations."""

from math import comb

import numpy as np
import pytest

from dlcompare import stats


def mcnemar_by_hand(b: int, c: int) -> float:
    """Two-sided exact test: double the smaller tail of Binomial(b + c, 1/2), computed from scratch."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(0, min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("b, c", [(0, 0), (1, 0), (0, 5), (5, 5), (10, 3), (3, 10), (25, 40), (100, 130), (7, 0)])
def test_mcnemar_matches_the_binomial_distribution(b, c):
    assert stats.mcnemar_exact(b, c) == pytest.approx(mcnemar_by_hand(b, c), rel=1e-12, abs=1e-15)


def test_mcnemar_known_values():
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # 2 * (1/2)^6
    assert stats.mcnemar_exact(10, 10) == 1.0


def test_discordant_counts():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 0], bool)
    assert stats.discordant(a, b) == (2, 1)


def correct_pairs(n, accuracy_a, accuracy_b, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(n) < accuracy_a, rng.random(n) < accuracy_b


def test_bootstrap_is_deterministic_contains_the_difference_and_shrinks_with_n():
    a, b = correct_pairs(2000, 0.88, 0.85)
    first = stats.paired_bootstrap_ci(a, b, 1000, seed=3)
    assert first == stats.paired_bootstrap_ci(a, b, 1000, seed=3)
    assert first != stats.paired_bootstrap_ci(a, b, 1000, seed=4)
    observed = a.mean() - b.mean()
    assert first[0] < observed < first[1]
    big_a, big_b = correct_pairs(20000, 0.88, 0.85)
    wide, narrow = first[1] - first[0], np.subtract(*stats.paired_bootstrap_ci(big_a, big_b, 1000, seed=3)[::-1])
    assert narrow < wide / 2  # ~1/sqrt(10) as wide


def test_bootstrap_over_several_seeds_averages_their_differences():
    a = np.array([[1, 1, 1, 1], [1, 1, 1, 1]], bool)
    b = np.array([[0, 0, 0, 0], [1, 1, 1, 1]], bool)
    assert stats.paired_bootstrap_ci(a, b, 200, seed=0) == (0.5, 0.5)


def test_intervals():
    low, high = stats.mean_ci([0.88, 0.90, 0.89])
    assert low < 0.89 < high and high - low == pytest.approx(2 * 4.302653 * 0.01 / np.sqrt(3), rel=1e-5)
    low, high = stats.binomial_ci(1780, 2000)
    assert low < 0.89 < high and 0.02 < high - low < 0.03
    with pytest.raises(ValueError):
        stats.mean_ci([0.9])


def test_verdict_for_identical_and_for_clearly_different_predictions():
    same_a, _ = correct_pairs(2000, 0.88, 0.88)
    b, c = stats.discordant(same_a, same_a)
    p = stats.mcnemar_exact(b, c)
    ci = stats.paired_bootstrap_ci(same_a, same_a, 500, seed=0)
    text = stats.verdict("keras", "tensorflow", 0.0, ci, p, "McNemar")
    assert text.startswith("no significant difference at 5 %")

    good, bad = correct_pairs(2000, 0.92, 0.80)
    p = stats.mcnemar_exact(*stats.discordant(good, bad))
    ci = stats.paired_bootstrap_ci(good, bad, 500, seed=0)
    text = stats.verdict("keras", "tensorflow", good.mean() - bad.mean(), ci, p, "McNemar")
    assert text.startswith("keras more accurate than tensorflow by")
    text = stats.verdict("tensorflow", "keras", bad.mean() - good.mean(), (-ci[1], -ci[0]), p, "McNemar")
    assert text.startswith("keras more accurate than tensorflow by")


def test_seed_level_test():
    assert stats.seed_level_p([0.9, 0.91, 0.92], [0.9, 0.91, 0.92]) == 1.0
    assert stats.seed_level_p([0.90, 0.91, 0.92, 0.915], [0.85, 0.86, 0.855, 0.86]) < 0.01
