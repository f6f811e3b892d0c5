"""Statistics for comparing frameworks (pure functions, no I/O).

A framework comparison has two sources of noise: which images happen to be
in the test set, and which seed a run happened to get (initial weights,
batch order, dropout). Every run is scored on the same test images, so the
image noise is shared by all seeds: averaging more seeds does not remove it.

The accuracy difference of two frameworks over S seeds and n test images,
x[s, i] = correct_A[s, i] − correct_B[s, i], gets a two-level variance:

    Var(mean x) ≈ Var_i(mean_s x[:, i]) / n  +  Var_s(mean_i x[s, :]) / S

the first term for the (shared) test images, the second for the seeds (it
also holds each seed's own image noise once more, which errs on the safe
side), and a Student t reference with S − 1 degrees of freedom for the
seed-level estimate. A claim about frameworks needs S ≥ 3 seeds. Simulated
under no framework effect with correlated errors, the verdict's false-
positive rate stays under 5 % (tests/test_stats.py measures it).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps
from scipy.special import logsumexp

ALPHA = 0.05
MIN_SEEDS_FOR_FRAMEWORK_CLAIM = 3
LOG10 = math.log(10.0)


def mcnemar_exact(b: int, c: int) -> tuple[float, float]:
    """Two-sided exact McNemar test from the discordant counts: (p, log10 p), the tail summed in log space.

    b: images only the first model got right; c: only the second. Under the
    null hypothesis each discordant image is a fair coin flip.
    """
    n = b + c
    if n == 0 or b == c:
        return 1.0, 0.0
    tail = sps.binom.logpmf(np.arange(min(b, c) + 1), n, 0.5)  # scipy's logcdf underflows to -inf; logpmf does not
    log_p = min(0.0, math.log(2.0) + float(logsumexp(tail)))
    return math.exp(log_p), log_p / LOG10


def discordant(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(b, c): images right only under A, right only under B."""
    return int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))


def two_level(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, variance of the mean from images, variance of the mean from seeds) of values[seed, image]."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    seeds, n = values.shape
    image_var = values.mean(axis=0).var(ddof=1) / n if n > 1 else 0.0
    seed_var = values.mean(axis=1).var(ddof=1) / seeds if seeds > 1 else 0.0
    return float(values.mean()), float(image_var), float(seed_var)


def _t_test(mean: float, variance: float, df: float) -> tuple[float, float]:
    """Two-sided (p, log10 p) of mean / sqrt(variance) against Student t, in log space so tiny p stays finite."""
    if variance <= 0.0:
        return (1.0, 0.0) if mean == 0.0 else (0.0, -math.inf)
    statistic = abs(mean) / math.sqrt(variance)
    log_p = min(0.0, math.log(2.0) + float(sps.t.logsf(statistic, df) if math.isfinite(df) else sps.norm.logsf(statistic)))
    return math.exp(log_p), log_p / LOG10


def accuracy_difference(correct_a: np.ndarray, correct_b: np.ndarray, level: float = 0.95) -> dict:
    """A − B in accuracy over seeds (rows, paired by seed) and the same test images (columns).

    With S ≥ 3 seeds: a framework-level interval and test (both noise sources,
    t with S − 1 df). With fewer: an interval for these trained models over
    the test images only, and `framework_level` False.
    """
    x = np.atleast_2d(correct_a).astype(np.float64) - np.atleast_2d(correct_b).astype(np.float64)
    seeds = x.shape[0]
    mean, image_var, seed_var = two_level(x)
    framework_level = seeds >= MIN_SEEDS_FOR_FRAMEWORK_CLAIM
    variance, df = (image_var + seed_var, seeds - 1) if framework_level else (image_var, math.inf)
    p, log10_p = _t_test(mean, variance, df)
    quantile = sps.t.ppf(0.5 + level / 2, df) if math.isfinite(df) else sps.norm.ppf(0.5 + level / 2)
    half = quantile * math.sqrt(variance)
    return {
        "diff": mean, "ci95": [max(-1.0, mean - half), min(1.0, mean + half)], "p": p, "log10_p": log10_p,
        "seeds": seeds, "framework_level": framework_level,
        "se_images": math.sqrt(image_var), "se_seeds": math.sqrt(seed_var),
        "method": (f"two-level (seeds × test images), t with {seeds - 1} df" if framework_level
                   else "test images only (these trained models), normal approximation"),
    }


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (family-wise error across all pairs)."""
    order = sorted(p_values, key=p_values.get)
    adjusted, running = {}, 0.0
    for rank, key in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p_values[key]))
        adjusted[key] = running
    return adjusted


def accuracy_interval(correct: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Interval for a framework's accuracy from correct[seed, image], always inside [0, 1].

    A Wilson interval whose sample size is the effective one implied by the
    two-level variance (seeds and test images), with a t quantile (seeds − 1
    df) for the seed-level part; with one seed it is the ordinary Wilson
    interval (test images only).
    """
    correct = np.atleast_2d(correct).astype(np.float64)
    seeds, n = correct.shape
    mean, image_var, seed_var = two_level(correct)
    variance = image_var + seed_var
    binomial_var = mean * (1.0 - mean)
    n_eff = seeds * n if variance <= 0.0 or binomial_var == 0.0 else binomial_var / variance
    z = sps.t.ppf(0.5 + level / 2, seeds - 1) if seeds > 1 else sps.norm.ppf(0.5 + level / 2)
    centre = (mean + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(binomial_var / n_eff + z * z / (4 * n_eff * n_eff))
    return float(max(0.0, min(mean, centre - half))), float(min(1.0, max(mean, centre + half)))


def binomial_ci(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson interval of a single run's accuracy: test-set sampling error only."""
    interval = sps.binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def is_claim(result: dict, adjusted_p: float) -> bool:
    """A framework-level difference: enough seeds, a corrected p below 5 % and an interval that excludes zero."""
    low, high = result["ci95"]
    return result["framework_level"] and adjusted_p < ALPHA and not low <= 0.0 <= high


def verdict(name_a: str, name_b: str, result: dict, adjusted_p: float, pairs: int) -> str:
    """One sentence, computed from the numbers, saying what the data show about A vs B's accuracy."""
    low, high = result["ci95"]
    points = f"{name_a} − {name_b} = {100 * result['diff']:+.2f} points, 95 % CI [{100 * low:+.2f}, {100 * high:+.2f}]"
    correction = f"Holm-adjusted over {pairs} pairs p = {format_p(adjusted_p)}" if pairs > 1 else f"p = {format_p(adjusted_p)}"
    if result["diff"] == 0.0 and result["se_images"] == 0.0:
        return (f"no difference between {name_a} and {name_b}: identical predictions on every test image "
                f"for each of the {result['seeds']} seed(s)")
    if not result["framework_level"]:
        return (f"{name_a} vs {name_b}: not decidable with {result['seeds']} seed(s), a framework-level answer needs "
                f"at least {MIN_SEEDS_FOR_FRAMEWORK_CLAIM}; these trained models: {points} over the test images")
    if not is_claim(result, adjusted_p):
        return (f"no significant difference between {name_a} and {name_b} over {result['seeds']} seeds "
                f"({points}; {correction})")
    better, worse = (name_a, name_b) if result["diff"] > 0 else (name_b, name_a)
    small, large = sorted((abs(100 * low), abs(100 * high)))
    return (f"{better} more accurate than {worse} by {abs(100 * result['diff']):.2f} points over {result['seeds']} seeds, "
            f"95 % CI [{small:.2f}, {large:.2f}] ({correction})")


def format_p(p: float) -> str:
    return "< 1e-300" if p < 1e-300 else f"{p:.3g}"


def median_interval(samples, resamples: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high): percentile bootstrap interval of the median of repeated measurements."""
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) < 2 or np.ptp(samples) == 0.0:
        value = float(np.median(samples))
        return value, value, value
    result = sps.bootstrap((samples,), np.median, n_resamples=resamples, confidence_level=level,
                           method="percentile", random_state=np.random.default_rng(seed))
    interval = result.confidence_interval
    return float(np.median(samples)), float(interval.low), float(interval.high)


def ratio_interval(a, b, resamples: int, seed: int, level: float = 0.95) -> tuple[float, float, float]:
    """(median(a) / median(b), low, high): bootstrap over both sets of repeated measurements."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ratio = float(np.median(a) / np.median(b))
    if len(a) < 2 or len(b) < 2:
        return ratio, ratio, ratio

    def statistic(x, y, axis=-1):
        return np.median(x, axis=axis) / np.median(y, axis=axis)

    result = sps.bootstrap((a, b), statistic, n_resamples=resamples, confidence_level=level, method="percentile",
                           vectorized=True, random_state=np.random.default_rng(seed))
    interval = result.confidence_interval
    return ratio, float(interval.low), float(interval.high)


def speed_sentence(what: str, names: tuple[str, str], ratio: tuple[float, float, float], unit_faster: str) -> str:
    """'A is 1.7× faster than B (95 % CI …)' only when the ratio's interval excludes 1; otherwise says it cannot tell."""
    value, low, high = ratio
    a, b = names
    if low > 1.0:
        return f"{a} {unit_faster} than {b} in {what}: {value:.2f}×, 95 % CI [{low:.2f}, {high:.2f}]"
    if high < 1.0:
        return f"{b} {unit_faster} than {a} in {what}: {1 / value:.2f}×, 95 % CI [{1 / high:.2f}, {1 / low:.2f}]"
    return f"{a} and {b} cannot be told apart in {what}: ratio {value:.2f}, 95 % CI [{low:.2f}, {high:.2f}] includes 1"


def bootstrap_auc_ci(actual: np.ndarray, probability: np.ndarray, samples: int, seed: int,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of the ROC AUC (averaged over seeds) under resampling of the test images.

    probability is (n,) for one run or (seeds, n); every seed is scored on the
    same resampled images. AUC is the Mann–Whitney statistic, computed for all
    resamples at once from ranks.
    """
    rng = np.random.default_rng(seed)
    actual = np.asarray(actual, dtype=bool)
    chosen = rng.integers(0, len(actual), size=(samples, len(actual)))
    labels = actual[chosen]
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    usable = (positives > 0) & (negatives > 0)
    aucs = []
    for run in np.atleast_2d(np.asarray(probability, dtype=np.float64)):
        ranks = sps.rankdata(run[chosen], axis=1)
        rank_sum = np.where(labels, ranks, 0.0).sum(axis=1)
        aucs.append((rank_sum - positives * (positives + 1) / 2)[usable] / (positives * negatives)[usable])
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(np.mean(aucs, axis=0), [tail, 100.0 - tail])
    return float(low), float(high)
