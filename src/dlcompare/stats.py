"""Statistics for comparing frameworks (pure functions, no I/O).

A framework comparison has two sources of noise: which images happen to be
in the test set (about +/-1 point of accuracy on 2,000 images), and which
seed a run happened to get (initial weights, batch order, dropout). Paired
tests on the same test images remove most of the first; several seeds are
the only way to see the second.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

ALPHA = 0.05


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    b: images only the first model got right; c: only the second. Under the
    null hypothesis each discordant image is a fair coin flip.
    """
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * sps.binom.cdf(min(b, c), n, 0.5)))


def discordant(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(b, c): images right only under A, right only under B."""
    return int(np.sum(correct_a & ~correct_b)), int(np.sum(~correct_a & correct_b))


def paired_bootstrap_ci(correct_a: np.ndarray, correct_b: np.ndarray, samples: int, seed: int,
                        level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of accuracy(A) - accuracy(B), resampling test images.

    Arrays may be (n,) for one seed or (seeds, n) for several; the same
    resampled images are used for every seed and the seeds' differences are
    averaged, so the interval is for the mean difference over the seeds run.
    """
    diff = np.atleast_2d(correct_a.astype(np.float64) - correct_b.astype(np.float64)).mean(axis=0)
    rng = np.random.default_rng(seed)
    n = diff.shape[0]
    means = np.empty(samples)
    for start in range(0, samples, 256):  # bounded memory: 256 x n indices at a time
        count = min(256, samples - start)
        means[start : start + count] = diff[rng.integers(0, n, size=(count, n))].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean across seeds (needs at least two values)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        raise ValueError("a confidence interval across seeds needs at least two seeds")
    half = sps.t.ppf(0.5 + level / 2.0, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def binomial_ci(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson interval of a single run's accuracy: test-set sampling error only."""
    interval = sps.binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def seed_level_p(per_seed_a: list[float], per_seed_b: list[float]) -> float:
    """Paired t-test across seeds of the two frameworks' accuracies."""
    differences = np.asarray(per_seed_a) - np.asarray(per_seed_b)
    if np.allclose(differences, differences[0]):  # no spread: t is undefined
        return 1.0 if abs(differences[0]) < 1e-12 else 0.0
    return float(sps.ttest_rel(per_seed_a, per_seed_b).pvalue)


def verdict(name_a: str, name_b: str, difference: float, ci: tuple[float, float], p_value: float, test: str) -> str:
    """One sentence, computed from the numbers, saying whether A and B differ in accuracy."""
    points = f"{100 * difference:+.2f} points, 95 % CI [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
    if p_value >= ALPHA or ci[0] <= 0.0 <= ci[1]:
        return f"no significant difference at 5 % between {name_a} and {name_b} ({name_a} − {name_b}: {points}; {test} p = {p_value:.3g})"
    better, worse = (name_a, name_b) if difference > 0 else (name_b, name_a)
    size = abs(100 * difference)
    low, high = sorted((abs(100 * ci[0]), abs(100 * ci[1])))
    return f"{better} more accurate than {worse} by {size:.2f} points, 95 % CI [{low:.2f}, {high:.2f}] ({test} p = {p_value:.3g})"


def bootstrap_auc_ci(actual: np.ndarray, probability: np.ndarray, samples: int, seed: int,
                     level: float = 0.95) -> tuple[float, float]:
    """Percentile CI of one run's ROC AUC, resampling test images."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n, values = len(actual), []
    for _ in range(samples):
        chosen = rng.integers(0, n, size=n)
        if actual[chosen].min() != actual[chosen].max():  # both classes needed for an AUC
            values.append(roc_auc_score(actual[chosen], probability[chosen]))
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)
