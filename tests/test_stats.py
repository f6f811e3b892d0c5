"""The comparison statistics: exact tests, two-level intervals, Holm, speed ratios, and calibration by simulation."""

from math import comb

import numpy as np
import pytest

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


def identical_runs(seeds=3, n=500, accuracy=0.9, seed=0):
    rng = np.random.default_rng(seed)
    correct = rng.random((seeds, n)) < accuracy
    return correct, correct.copy()


def compared(a, b, names=("a", "b")):
    return stats.accuracy_comparisons({names[0]: a, names[1]: b})[f"{names[0]}_vs_{names[1]}"]


def test_identical_predictions_give_no_difference_never_p_zero():
    a, b = identical_runs()
    result = compared(a, b, ("keras", "tensorflow"))
    assert result["diff"] == 0.0 and not result["significant"]
    assert result["verdict"].startswith("no difference between keras and tensorflow: identical predictions")
    assert "p = 0" not in result["verdict"]


def test_discordances_that_cancel_across_seeds_are_not_identical_predictions():
    """Seed 0: A right, B wrong on image 0; seed 1 the reverse: the per-image means cancel, the models differ."""
    a, b = identical_runs()
    a[0, 0], b[0, 0] = True, False
    a[1, 0], b[1, 0] = False, True
    result = compared(a, b)
    assert result["diff"] == 0.0 and "identical predictions" not in result["verdict"]
    assert result["verdict"].startswith("no significant difference")


def test_one_test_image_decides_nothing():
    """Was: 'a more accurate than b by 100.00 points … p < 1e-300'."""
    a = np.ones((3, 1), dtype=bool)
    b = np.zeros((3, 1), dtype=bool)
    result = compared(a, b)
    assert not result["significant"] and "not decidable with 1 test image" in result["verdict"]


def test_a_difference_without_variance_is_not_testable_rather_than_p_zero():
    a = np.ones((3, 50), dtype=bool)
    b = np.zeros((3, 50), dtype=bool)  # A right and B wrong on every image and seed: no spread to estimate noise from
    result = compared(a, b)
    assert np.isnan(result["p"]) and not result["significant"] and "not testable" in result["verdict"]


def test_holm_ranks_an_untestable_pair_last_instead_of_spoiling_the_others():
    """A NaN sorted first made Holm return 1 for every pair."""
    adjusted = stats.holm({"nan": float("nan"), "small": 0.001, "mid": 0.02})
    assert np.isnan(adjusted["nan"])
    assert adjusted["small"] == pytest.approx(0.003) and adjusted["mid"] == pytest.approx(0.04)


def test_holm_matches_its_definition():
    adjusted = stats.holm({"x": 0.01, "y": 0.04, "z": 0.03})
    assert adjusted == {"x": 0.03, "z": 0.06, "y": 0.06}  # 3 * 0.01, max(2 * 0.03, 0.03), max(1 * 0.04, 0.06)


def test_a_claimed_verdict_prints_the_interval_at_the_level_holm_tested_it():
    from dlcompare.simulate import FITTED

    rng = np.random.default_rng(11)
    runs = FITTED.runs(rng, ["a", "b", "c", "d"], 5, {"a": 0.04})
    results = stats.accuracy_comparisons(runs)
    claimed = [r for r in results.values() if r["significant"]]
    assert claimed
    for result in claimed:
        low, high = result["ci_holm"]
        assert result["holm_level"] > 0.95 and low < result["ci95"][0] and high > result["ci95"][1]
        assert f"{100 * result['holm_level']:.2f} % CI [{100 * min(abs(low), abs(high)):.2f}" in result["verdict"]


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
    low, high = result["ci95"]
    # The seed term is floored at each seed's own image noise, so the evidence is that of six discordant images
    # all in A's favour (exact sign test p = 0.031), not of a zero spread.
    assert high - low > 0.001 and 0.005 < result["p"] < 0.1


def test_image_noise_is_counted_once():
    """The image term is MS_images − MS_residual: with seed-specific noise only (no image effect), it vanishes."""
    rng = np.random.default_rng(3)
    x = (rng.random((5, 4000)) < 0.05).astype(float) - (rng.random((5, 4000)) < 0.05)
    ms_images, _, ms_residual, _ = stats.image_components(x)
    assert ms_images == pytest.approx(ms_residual, rel=0.1)
    shared = np.tile(x[:1], (5, 1))  # the same per-image differences on every seed: all image effect
    ms_images, _, ms_residual, _ = stats.image_components(shared)
    assert ms_residual == pytest.approx(0.0, abs=1e-12) and ms_images > 0


def test_fewer_than_three_seeds_never_make_a_framework_claim():
    rng = np.random.default_rng(2)
    a = rng.random((2, 2000)) < 0.95
    b = rng.random((2, 2000)) < 0.80  # a 15-point gap: these models clearly differ
    result = compared(a, b)
    assert not result["framework_level"] and not result["significant"] and result["p"] < 1e-10
    assert "not decidable with 2 seed(s)" in result["verdict"] and "at least 3" in result["verdict"]


def test_no_significant_difference_states_what_the_design_could_detect():
    from dlcompare.simulate import FITTED

    runs = FITTED.runs(np.random.default_rng(5), ["a", "b", "c", "d", "e", "f"], 3)
    results = stats.accuracy_comparisons(runs)
    quiet = [r for r in results.values() if not r["significant"]]
    assert quiet
    for result in quiet:
        assert 0.003 < result["detectable"] < 0.05
        assert f"detects gaps of {100 * result['detectable']:.2f} points or more with 80 % power" in result["verdict"]


def test_accuracy_intervals_stay_inside_zero_and_one_and_never_have_zero_width():
    for accuracy in (0.0, 1.0, 0.999, 0.5):
        correct = np.zeros((2, 400), dtype=bool)
        correct[:, : int(accuracy * 400)] = True
        for seeds in (1, 2, 3):
            low, high = stats.accuracy_interval(correct[:1].repeat(seeds, axis=0))
            assert 0.0 <= low <= correct.mean() <= high <= 1.0 and high > low
    wild = np.array([[True] * 380 + [False] * 20, [True] * 200 + [False] * 200])  # two seeds far apart
    low, high = stats.accuracy_interval(wild)
    assert 0.0 <= low < high <= 1.0


def test_per_framework_interval_covers_the_true_accuracy_at_its_level():
    """New seeds and a new test set every trial: the 95 % interval covers the population accuracy ~95 % of the time."""
    from dlcompare.simulate import RunModel

    model = RunModel(n=1000)
    rng = np.random.default_rng(8)
    truth = np.mean([model.runs(rng, ["a"], 1)["a"].mean() for _ in range(400)])
    covered = []
    for _ in range(300):
        low, high = stats.accuracy_interval(model.runs(rng, ["a"], 3)["a"])
        covered.append(low <= truth <= high)
    assert 0.90 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_speed_from_rounds_claims_only_when_the_holm_interval_excludes_one():
    rng = np.random.default_rng(3)
    drift = rng.normal(0, 0.05, 6)  # the machine's state, shared by both frameworks within a round
    fast = 100 * np.exp(drift + rng.normal(0, 0.01, 6))
    slow = 60 * np.exp(drift + rng.normal(0, 0.01, 6))
    result = stats.round_ratios({"a": fast, "b": slow}, higher_is_better=True)["a_vs_b"]
    assert result["significant"] and result["ci_holm"][0] > 1
    sentence = stats.speed_sentence("training", "a", "b", result, 1)
    assert sentence.startswith("a is faster than b in training: 1.6") and "6 interleaved rounds" in sentence
    latency = stats.round_ratios({"a": fast, "b": slow}, higher_is_better=False)["a_vs_b"]
    assert latency["significant"] and stats.speed_sentence("latency", "a", "b", latency, 1).startswith("b is faster")
    same = stats.round_ratios({"a": 100 * np.exp(rng.normal(0, 0.05, 6)), "b": 100 * np.exp(rng.normal(0, 0.05, 6))}, True)
    text = stats.speed_sentence("training", "a", "b", same["a_vs_b"], 1)
    assert "cannot be told apart" in text and "detects ratios of" in text


def test_speed_never_gives_an_interval_of_zero_width():
    """Was: one steady epoch each gave 'keras is faster than pytorch: 11.34×, 95 % CI [11.34, 11.34]'."""
    one_round = stats.round_ratios({"a": [500.0], "b": [44.0]}, True)["a_vs_b"]
    assert one_round["ci95"] is None and not one_round["significant"]
    assert "cannot be compared" in stats.speed_sentence("training", "a", "b", one_round, 1)
    assert stats.rounds_summary([5.0])["ci95"] is None and stats.rounds_summary([5.0, 5.0])["ci95"] is None
    low, high = stats.rounds_summary([5.0, 6.0, 5.5])["ci95"]
    assert low < high


def test_speed_aa_rounds_give_at_most_five_percent_false_claims():
    """A/A: one framework as A and B in interleaved rounds with drift, autocorrelation and order effects."""
    from dlcompare.simulate import aa_false_claims

    rate = aa_false_claims(np.random.default_rng(12), rounds=6, trials=2000)
    assert rate <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 2000), rate


def test_vectorised_auc_bootstrap_brackets_the_auc():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    actual = rng.random(1000) < 0.5
    probability = np.clip(actual * 0.3 + rng.random(1000) * 0.7, 0, 1)
    low, high = stats.bootstrap_auc_ci(actual, probability, 500, 0)
    assert low < roc_auc_score(actual, probability) < high and high - low < 0.1


# ---------------------------------------------------------------- calibration by simulation

def test_the_simulator_matches_the_reference_runs():
    """Fitted to reference/comparison.json (six frameworks × 3 seeds): 81–128 (mean 102.5) images disagree between
    frameworks on one seed, framework × seed interaction SD 0.43 points (10 df)."""
    import json

    from conftest import ROOT
    from dlcompare.simulate import FITTED, discordant_per_seed_pair, interaction_sd

    reference = json.loads((ROOT / "reference" / "comparison.json").read_text())
    observed = [e["b"] + e["c"] for pair in reference["pairs"].values() for e in pair["per_seed"].values()]
    rng = np.random.default_rng(0)
    assert abs(discordant_per_seed_pair(FITTED, rng, 100) - np.mean(observed)) < 5
    accuracies = np.array([f["accuracy_per_seed"] for f in reference["frameworks"].values()])
    observed_sd = np.sqrt(stats.interaction(accuracies)[0])
    assert 0.6 < interaction_sd(FITTED, rng, trials=200) / observed_sd < 1.5


def test_six_frameworks_three_seeds_family_wise_false_positives_and_power():
    """No effect: at most 5 % of comparisons claim any pair (measured 1.6 %); a 2-point gap: power ≥ 0.8 (0.895)."""
    from dlcompare.simulate import FITTED, verdict_rates

    rng = np.random.default_rng(21)
    null = verdict_rates(FITTED, rng, 6, 3, 0.0, 300)
    assert null["family_false_positive"] <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 300), null
    assert null["noisy_pair_false_positive"] <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / 300), null
    found = verdict_rates(FITTED, rng, 6, 3, 0.02, 300)
    assert found["power"] >= 0.8, found


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


def test_two_noisy_rounds_over_many_pairs_give_unbounded_intervals_not_a_crash():
    """Two rounds (1 df), Holm over 15 pairs and round-to-round noise as on a loaded machine: the quantiles are
    in the hundreds, and exp of them overflowed (a dvc repro failed on it)."""
    rng = np.random.default_rng(0)
    values = {f"f{i}": list(100.0 * np.exp(rng.normal(0.0, 8.0, size=2))) for i in range(6)}
    results = stats.round_ratios(values, higher_is_better=True)
    assert len(results) == 15
    for result in results.values():
        assert not result["significant"]
        assert result["detectable_ratio"] == float("inf") or result["detectable_ratio"] > 10
    sentence = stats.speed_sentence("training", "f0", "f1", results["f0_vs_f1"], 15)
    assert "cannot detect even a 10× ratio" in sentence
