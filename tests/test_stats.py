"""The comparison statistics: exact tests, two-level intervals, Holm, speed ratios, and calibration by simulation."""

from math import comb

import numpy as np
import pytest
from scipy import stats as sps

from dlcompare import stats


def mcnemar_by_hand(b: int, c: int) -> float:
    n = b + c
    tail = sum(comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


@pytest.mark.parametrize("b, c", [(0, 0), (3, 3), (10, 2), (2, 10), (40, 25), (0, 7)])
def test_mcnemar_matches_the_binomial_distribution(b, c):
    p, log10_p = stats.mcnemar_exact(b, c)
    assert p == pytest.approx(mcnemar_by_hand(b, c), rel=1e-9)
    assert 10**log10_p == pytest.approx(p, rel=1e-9)


def test_mcnemar_tail_that_underflows_stays_finite_in_log_space():
    p, log10_p = stats.mcnemar_exact(0, 2000)  # 2 * 0.5**2000 = 10**-601.7: no float holds it
    assert p == 0.0 and log10_p == pytest.approx(np.log10(2) - 2000 * np.log10(2), abs=1e-6)
    assert stats.format_p(p) == "< 1e-300"


def test_discordant_counts():
    a = np.array([True, True, False, False, True])
    b = np.array([True, False, True, False, False])
    assert stats.discordant(a, b) == (2, 1)


def test_holm_matches_its_definition():
    adjusted = stats.holm({"x": 0.01, "y": 0.04, "z": 0.03})
    assert adjusted == {"x": 0.03, "z": 0.06, "y": 0.06}  # 3 * 0.01, max(2 * 0.03, 0.03), max(1 * 0.04, 0.06)


def identical_runs(seeds=3, n=500, accuracy=0.9, seed=0):
    rng = np.random.default_rng(seed)
    correct = rng.random((seeds, n)) < accuracy
    return correct, correct.copy()


def test_identical_predictions_give_no_difference_never_p_zero():
    a, b = identical_runs()
    result = stats.accuracy_difference(a, b)
    assert result["diff"] == 0.0 and result["p"] == 1.0 and result["ci95"] == [0.0, 0.0]
    text = stats.verdict("keras", "tensorflow", result, stats.holm({"k": result["p"]})["k"], 1)
    assert text.startswith("no difference between keras and tensorflow: identical predictions") and "p = 0" not in text


def test_equal_per_seed_differences_do_not_give_a_zero_width_interval():
    """Zero spread across seeds: the test-image variance still counts (the old seed-level t-test said p = 0)."""
    rng = np.random.default_rng(1)
    base = rng.random((3, 2000)) < 0.88
    other = base.copy()
    for row in other:  # the same net 2-image difference on every seed, on different images
        flipped = rng.choice(np.flatnonzero(row), 2, replace=False)
        row[flipped] = False
    result = stats.accuracy_difference(base, other)
    assert result["diff"] == pytest.approx(0.001)
    assert result["ci95"][0] < 0 < result["ci95"][1] and result["p"] > 0.05


def test_fewer_than_three_seeds_never_make_a_framework_claim():
    rng = np.random.default_rng(2)
    a = rng.random((2, 2000)) < 0.95
    b = rng.random((2, 2000)) < 0.80  # a 15-point gap: these models clearly differ
    result = stats.accuracy_difference(a, b)
    assert not result["framework_level"] and result["p"] < 1e-10
    text = stats.verdict("a", "b", result, result["p"], 1)
    assert "not decidable with 2 seed(s)" in text and "at least 3" in text and "these trained models" in text


def test_accuracy_intervals_stay_inside_zero_and_one():
    for accuracy in (0.0, 1.0, 0.999, 0.5):
        correct = np.zeros((2, 400), dtype=bool)
        correct[:, : int(accuracy * 400)] = True
        for seeds in (1, 2, 3):
            low, high = stats.accuracy_interval(correct[:1].repeat(seeds, axis=0))
            assert 0.0 <= low <= correct.mean() <= high <= 1.0
    wild = np.array([[True] * 380 + [False] * 20, [True] * 200 + [False] * 200])  # two seeds far apart
    low, high = stats.accuracy_interval(wild)
    assert 0.0 <= low < high <= 1.0


def test_speed_ratio_is_a_difference_only_when_its_interval_excludes_one():
    rng = np.random.default_rng(3)
    fast, slow = rng.normal(100, 3, 20), rng.normal(60, 3, 20)
    ratio = stats.ratio_interval(fast, slow, 2000, 0)
    assert ratio[1] > 1 and "faster than" in stats.speed_sentence("training", ("a", "b"), ratio, "is faster")
    same = stats.ratio_interval(rng.normal(100, 20, 5), rng.normal(100, 20, 5), 2000, 0)
    assert same[1] < 1 < same[2]
    assert "cannot be told apart" in stats.speed_sentence("training", ("a", "b"), same, "is faster")
    assert stats.median_interval([5.0, 5.0, 5.0], 100, 0) == (5.0, 5.0, 5.0)


def test_vectorised_auc_bootstrap_brackets_the_auc():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    actual = rng.random(1000) < 0.5
    probability = np.clip(actual * 0.3 + rng.random(1000) * 0.7, 0, 1)
    low, high = stats.bootstrap_auc_ci(actual, probability, 500, 0)
    assert low < roc_auc_score(actual, probability) < high and high - low < 0.1


# ---------------------------------------------------------------- calibration by simulation

def simulate(rng, seeds: int, effect: float, n=2000, accuracy=0.88, seed_sd=0.004, shared=0.8):
    """Correctness of two frameworks' runs on the same n test images.

    Each image has a difficulty every model shares (errors correlated across seeds and frameworks, weight
    `shared`); each run's skill moves by seed_sd (0.4 points of accuracy, as seen between seeds here), and
    the frameworks differ by `effect` in accuracy. Calibrated to the README's runs: 88 %, ~70 discordant
    images per seed pair.
    """
    difficulty = rng.normal(size=n)
    threshold = sps.norm.ppf(accuracy)
    runs = []
    for shift in (effect / 2, -effect / 2):
        skill = threshold + (shift + rng.normal(0, seed_sd, size=(seeds, 1))) / sps.norm.pdf(threshold)
        latent = np.sqrt(shared) * difficulty + np.sqrt(1 - shared) * rng.normal(size=(seeds, n))
        runs.append(latent < skill)
    return runs


def claims(a, b) -> bool:
    result = stats.accuracy_difference(a, b)
    text = stats.verdict("a", "b", result, result["p"], 1)
    return text.startswith(("a more accurate", "b more accurate"))


@pytest.mark.parametrize("seeds", [1, 2, 3, 5])
def test_no_framework_effect_gives_at_most_five_percent_false_verdicts(seeds):
    rng = np.random.default_rng(100 + seeds)
    trials = 500
    false_positives = sum(claims(*simulate(rng, seeds, 0.0)) for _ in range(trials))
    # 5 % plus two simulation standard errors (measured: 0 of 500 for 1 and 2 seeds, which never claim; ~0-1 % for 3 and 5)
    assert false_positives / trials <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / trials)
    discordant = np.mean([sum(stats.discordant(*(r[0] for r in simulate(rng, 1, 0.0)))) for _ in range(20)])
    assert 40 < discordant < 250, "the simulation must stay near the real runs' discordance"


def test_a_two_point_effect_with_five_seeds_is_found_most_of_the_time():
    rng = np.random.default_rng(7)
    trials = 300
    power = sum(claims(*simulate(rng, 5, 0.02)) for _ in range(trials)) / trials
    assert power >= 0.7, power  # measured: about 0.9


def test_a_diverged_model_gets_defined_metrics_not_a_crash():
    from dlcompare.evaluate import classification_metrics

    actual = np.array([0, 1, 0, 1, 1, 0])
    probability = np.array([0.1, 0.9, np.nan, 0.8, np.nan, 0.4])
    result = classification_metrics(actual, probability, 0.5)
    assert result["invalid_predictions"] == 2
    assert result["accuracy"] == pytest.approx(4 / 6)  # the two NaN images count as wrong
    assert 0.0 <= result["roc_auc"] <= 1.0 and np.isfinite(result["log_loss"])
    everything_wrong = classification_metrics(actual, np.full(6, np.nan), 0.5)
    assert everything_wrong["accuracy"] == 0.0 and everything_wrong["roc_auc"] == 0.5


def test_auc_bootstrap_over_several_seeds_averages_them_on_the_same_images():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    actual = rng.random(800) < 0.5
    runs = np.stack([np.clip(actual * 0.4 + rng.random(800) * 0.6, 0, 1) for _ in range(3)])
    low, high = stats.bootstrap_auc_ci(actual, runs, 400, 0)
    mean_auc = np.mean([roc_auc_score(actual, run) for run in runs])
    assert low < mean_auc < high
    assert stats.bootstrap_auc_ci(actual, runs, 400, 0) == (low, high)  # seeded: reproducible
