"""Statistics for comparing frameworks (pure functions, no I/O).

Accuracy. A framework comparison has two sources of noise: which images
happen to be in the test set, and which seed a run happened to get. Every
framework trains with the same seeds (the same initial weights and batches)
and is scored on the same test images, so for a pair A, B the table
x[s, i] = correct_A[s, i] − correct_B[s, i] is paired both ways, and

    Var(mean x) = (seed term) / S + max(0, MS_images − MS_residual) / (n S)

with MS_images and MS_residual from the two-way ANOVA of x (the images'
own effects, which a new test set would change, counted once), and as seed
term either 2 × the framework × seed interaction of all frameworks' run
accuracies ((F − 1)(S − 1) df) or, when the pair's own seed spread is larger
than the other frameworks' (an F test), the variance of the pair's per-seed
differences (S − 1 df). Satterthwaite degrees of freedom, then Holm over the
pairs. tests/test_stats.py checks the family-wise false-positive rate and the
power on a simulator fitted to the reference runs (docs/statistics.md); benchmarks/calibration.py prints them.

Speed is measured in interleaved rounds (dlcompare.speed); its verdicts
use the rounds as the unit (`round_ratios`).
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
from scipy import stats as sps
from scipy.special import logsumexp

ALPHA = 0.05
MIN_SEEDS_FOR_FRAMEWORK_CLAIM = 3
MIN_FRAMEWORKS_TO_POOL = 4  # the pooled seed noise is checked against the frameworks outside the pair: at least two
SPREAD_CHECK_ALPHA = 0.10  # a pair whose seed-to-seed spread exceeds the others' at this level gets its own estimate
POWER = 0.80
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


def _t_test(mean: float, variance: float, df: float) -> tuple[float, float]:
    """Two-sided (p, log10 p) of mean / sqrt(variance) against Student t, in log space so tiny p stays finite.

    A variance of zero (or less) cannot be tested: p is NaN, never 0.
    """
    if not variance > 0.0 or not df > 0.0:
        return math.nan, math.nan
    statistic = abs(mean) / math.sqrt(variance)
    log_p = min(0.0, math.log(2.0) + float(sps.t.logsf(statistic, df) if math.isfinite(df) else sps.norm.logsf(statistic)))
    return math.exp(log_p), log_p / LOG10


def _quantile(probability: float, df: float) -> float:
    return float(sps.t.ppf(probability, df) if math.isfinite(df) else sps.norm.ppf(probability))


def image_components(values: np.ndarray) -> tuple[float, float, float, float]:
    """(MS_images, df, MS_residual, df) of a seeds × images table: the two-way ANOVA without replication.

    MS_images − MS_residual is S times the variance of the images' own effects (what a new test set would
    change); the residual is each seed's image noise, already inside the seed-level term.
    """
    seeds, n = values.shape
    image_means = values.mean(axis=0)
    ms_images = seeds * image_means.var(ddof=1) if n > 1 else 0.0
    if seeds < 2 or n < 2:
        return ms_images, n - 1, 0.0, 0
    residual = values - image_means - values.mean(axis=1, keepdims=True) + values.mean()
    df_residual = (seeds - 1) * (n - 1)
    return float(ms_images), n - 1, float((residual ** 2).sum() / df_residual), df_residual


def interaction(accuracies: np.ndarray) -> tuple[float, int]:
    """(MS, df) of the framework × seed interaction of run accuracies[framework, seed].

    Every framework trains with the same seeds (the same initial weights and batches), so the seed's main
    effect cancels in a pair; what is left of a run's seed-to-seed variation is this interaction.
    """
    frameworks, seeds = accuracies.shape
    df = (frameworks - 1) * (seeds - 1)
    if df == 0:
        return 0.0, 0
    residual = (accuracies - accuracies.mean(axis=0) - accuracies.mean(axis=1, keepdims=True) + accuracies.mean())
    return float((residual ** 2).sum() / df), df


def _satterthwaite(terms: list[tuple[float, float]]) -> tuple[float, float]:
    """(sum, Satterthwaite df) of a linear combination given as (coefficient × mean square, its df) terms."""
    total = sum(value for value, _ in terms)
    denominator = sum(value * value / df for value, df in terms if df > 0 and value != 0.0)
    return total, (total * total / denominator if denominator > 0 else math.inf)


def mean_variance(values: np.ndarray, seed_ms: float | None = None, seed_df: float | None = None) -> tuple[float, float]:
    """(variance, df) of the mean of values[seed, image] as an estimate for new seeds *and* new test images.

    V = seed term / S + max(0, MS_images − MS_residual) / (n S), Satterthwaite df. The seed term is the
    variance of a seed's mean over these images: the rows' own (S − 1 df) unless a pooled estimate is given,
    and never below MS_residual / n, the part each seed's own image noise alone contributes.
    """
    seeds, n = values.shape
    if seed_ms is None:
        seed_ms, seed_df = values.mean(axis=1).var(ddof=1), seeds - 1
    ms_images, df_images, ms_residual, df_residual = image_components(values)
    if seed_ms < ms_residual / n:
        # A seed's mean varies at least by its own image noise (E[n · seed-means variance] = MS_residual + n σ²_seed):
        # a smaller estimate is chance, most often with 2 or 3 seeds, and would claim from too little spread.
        seed_ms, seed_df = ms_residual / n, df_residual
    terms = [(seed_ms / seeds, seed_df)]
    if ms_images > ms_residual:
        terms += [(ms_images / (n * seeds), df_images), (-ms_residual / (n * seeds), df_residual)]
    return _satterthwaite(terms)


def accuracy_difference(correct_a: np.ndarray, correct_b: np.ndarray, pooled: tuple[float, float] | None = None,
                        level: float = 0.95) -> dict:
    """A − B in accuracy over seeds (rows, paired by seed) and the same test images (columns).

    With S ≥ 3 seeds and n ≥ 2 images: a framework-level interval and test (new seeds and new test images).
    `pooled` is the framework × seed interaction (MS, df) of every framework's runs, used in place of the
    pair's own seed spread (S − 1 df) when the caller has checked that the pair is not noisier than the rest.
    With fewer seeds: an interval for these trained models over the test images only, `framework_level` False.
    """
    x = np.atleast_2d(correct_a).astype(np.float64) - np.atleast_2d(correct_b).astype(np.float64)
    seeds, n = x.shape
    mean = float(x.mean())
    framework_level = seeds >= MIN_SEEDS_FOR_FRAMEWORK_CLAIM and n >= 2
    if framework_level:
        seed_ms, seed_df = (2.0 * pooled[0], pooled[1]) if pooled else (float(x.mean(axis=1).var(ddof=1)), seeds - 1)
        variance, df = mean_variance(x, seed_ms, seed_df)
        method = (f"seeds × test images, seed noise pooled over every framework's runs ({pooled[1]} df)" if pooled else
                  f"seeds × test images, this pair's own seed spread ({seeds - 1} df)") + ", Satterthwaite t"
    else:
        variance, df = (image_components(x)[0] / (n * seeds) if n > 1 else 0.0), math.inf
        method = "test images only (these trained models), normal approximation"
    p, log10_p = _t_test(mean, variance, df)
    half = _quantile(0.5 + level / 2, df) * math.sqrt(max(variance, 0.0))
    return {
        "diff": mean, "ci95": [max(-1.0, mean - half), min(1.0, mean + half)], "p": p, "log10_p": log10_p,
        "seeds": seeds, "n": n, "framework_level": framework_level, "identical": not x.any(),
        "variance": variance, "df": df, "pooled": bool(pooled and framework_level), "method": method,
    }


def accuracy_comparisons(correct: dict[str, np.ndarray]) -> dict[str, dict]:
    """Every pair of frameworks from correct[framework][seed, image] (same seeds, same images), Holm over pairs.

    The seed noise is pooled over all frameworks (the interaction of run accuracies, (F − 1)(S − 1) df) for a
    pair whose own seed spread is not larger than that of the frameworks outside it (one-sided F test at
    SPREAD_CHECK_ALPHA); a noisier pair, or a comparison of fewer than MIN_FRAMEWORKS_TO_POOL frameworks,
    uses the pair's own spread (S − 1 df). Each result gains its Holm p, the interval at the level Holm
    tested it, whether it is claimed, the smallest gap the design detects with 80 % power, and a verdict.
    """
    names = list(correct)
    accuracies = np.array([np.atleast_2d(correct[name]).mean(axis=1) for name in names])
    seeds = accuracies.shape[1]
    everyone = interaction(accuracies)
    results = {}
    for i, j in combinations(range(len(names)), 2):
        spread_p, pooled = None, None
        if len(names) >= MIN_FRAMEWORKS_TO_POOL and seeds >= MIN_SEEDS_FOR_FRAMEWORK_CLAIM:
            rest_ms, rest_df = interaction(np.delete(accuracies, [i, j], axis=0))
            own = float((accuracies[i] - accuracies[j]).var(ddof=1)) / 2.0
            spread_p = float(sps.f.sf(own / rest_ms, seeds - 1, rest_df)) if rest_ms > 0 else float(own == 0.0)
            pooled = everyone if spread_p >= SPREAD_CHECK_ALPHA else None
        result = accuracy_difference(correct[names[i]], correct[names[j]], pooled)
        result["seed_spread_check_p"] = spread_p
        results[f"{names[i]}_vs_{names[j]}"] = result
    pairs = len(results)
    holm_intervals(results, lambda r: (r["diff"], math.sqrt(max(r["variance"], 0.0))))
    for key, result in results.items():
        low, high = result["ci_holm"]
        result["ci_holm"] = [max(-1.0, low), min(1.0, high)]
        result["significant"] = is_claim(result)
        result["detectable"] = detectable_gap(result["variance"], result["df"], pairs)
        a, b = key.split("_vs_")
        result["verdict"] = verdict(a, b, result, pairs)
    return results


def holm_intervals(results: dict[str, dict], estimate) -> None:
    """Add Holm's p (`p_holm`), the level Holm tested each result at (`holm_level`) and the interval at that
    level (`ci_holm`, on the scale of `estimate(result)` = (mean, standard error)) to results that hold "p" and "df"."""
    adjusted, steps = holm({key: r["p"] for key, r in results.items()}, with_steps=True)
    for key, result in results.items():
        step_alpha = ALPHA / steps[key]
        mean, se = estimate(result)
        half = _quantile(1.0 - step_alpha / 2, result["df"]) * se
        result["p_holm"], result["holm_level"], result["ci_holm"] = adjusted[key], 1.0 - step_alpha, [mean - half, mean + half]


def detectable_gap(variance: float, df: float, pairs: int) -> float | None:
    """The accuracy gap a two-sided test at the first Holm step (α / pairs) finds with POWER, for this variance."""
    if not variance > 0.0:
        return None
    return (_quantile(1.0 - ALPHA / (2 * pairs), df) + _quantile(POWER, df)) * math.sqrt(variance)


def holm(p_values: dict[str, float], with_steps: bool = False):
    """Holm-adjusted p-values (family-wise error across all pairs); an untestable (NaN) p stays NaN and is ranked last.

    with_steps also returns, per key, the divisor of α at which Holm tested it (m, m − 1, …).
    """
    order = sorted(p_values, key=lambda key: (math.isnan(p_values[key]), p_values[key]))
    adjusted, steps, running = {}, {}, 0.0
    for rank, key in enumerate(order):
        steps[key] = len(order) - rank
        if math.isnan(p_values[key]):
            adjusted[key] = math.nan
            continue
        running = max(running, min(1.0, steps[key] * p_values[key]))
        adjusted[key] = running
    return (adjusted, steps) if with_steps else adjusted


def accuracy_interval(correct: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Interval for a framework's accuracy from correct[seed, image], always inside [0, 1] and never of zero width.

    A Wilson interval whose sample size is the effective one implied by `mean_variance` (new seeds and new test
    images, Satterthwaite df); with one seed it is the ordinary Wilson interval over the test images.
    """
    correct = np.atleast_2d(correct).astype(np.float64)
    seeds, n = correct.shape
    mean = float(correct.mean())
    if seeds > 1:
        variance, df = mean_variance(correct)
    else:
        variance, df = (float(correct.var(ddof=1)) / n if n > 1 else 0.0), math.inf
    binomial_var = mean * (1.0 - mean)
    n_eff = seeds * n if variance <= 0.0 or binomial_var == 0.0 else binomial_var / variance
    z = _quantile(0.5 + level / 2, df)
    centre = (mean + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * math.sqrt(binomial_var / n_eff + z * z / (4 * n_eff * n_eff))
    return float(max(0.0, min(mean, centre - half))), float(min(1.0, max(mean, centre + half)))


def binomial_ci(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson interval of a single run's accuracy: test-set sampling error only."""
    interval = sps.binomtest(successes, trials).proportion_ci(confidence_level=level, method="wilson")
    return float(interval.low), float(interval.high)


def is_claim(result: dict) -> bool:
    """A framework-level difference: enough seeds, a Holm p below 5 % and a Holm interval that excludes zero."""
    low, high = result["ci_holm"]
    return bool(result["framework_level"] and result["p_holm"] < ALPHA and not low <= 0.0 <= high)


def verdict(name_a: str, name_b: str, result: dict, pairs: int) -> str:
    """One sentence, computed from the numbers, saying what the data show about A vs B's accuracy."""
    low, high = result["ci95"]
    points = f"{name_a} − {name_b} = {100 * result['diff']:+.2f} points, 95 % CI [{100 * low:+.2f}, {100 * high:+.2f}]"
    correction = (f"Holm-adjusted over {pairs} pairs p = {format_p(result['p_holm'])}" if pairs > 1
                  else f"p = {format_p(result['p_holm'])}")
    if result["identical"]:
        return (f"no difference between {name_a} and {name_b}: identical predictions on every test image "
                f"for each of the {result['seeds']} seed(s)")
    if result["n"] < 2:
        return (f"{name_a} vs {name_b}: not decidable with {result['n']} test image; the test-image noise needs at "
                "least two (use a larger prepare.test_fraction)")
    if not result["framework_level"]:
        return (f"{name_a} vs {name_b}: not decidable with {result['seeds']} seed(s), a framework-level answer needs "
                f"at least {MIN_SEEDS_FOR_FRAMEWORK_CLAIM}; these trained models: {points} over the test images")
    if math.isnan(result["p"]):
        return (f"{name_a} vs {name_b}: not testable, the difference ({100 * result['diff']:+.2f} points) did not vary "
                f"over the {result['seeds']} seeds and {result['n']:,} test images, so its noise cannot be estimated")
    if not result["significant"]:
        return (f"no significant difference between {name_a} and {name_b} over {result['seeds']} seeds "
                f"({points}; {correction}); this design detects gaps of {100 * result['detectable']:.2f} points "
                f"or more with {100 * POWER:.0f} % power")
    better, worse = (name_a, name_b) if result["diff"] > 0 else (name_b, name_a)
    small, large = sorted((abs(100 * result["ci_holm"][0]), abs(100 * result["ci_holm"][1])))
    return (f"{better} more accurate than {worse} by {abs(100 * result['diff']):.2f} points over {result['seeds']} seeds, "
            f"{100 * result['holm_level']:.2f} % CI [{small:.2f}, {large:.2f}] (the level Holm tested it at; {correction})")


def format_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 1e-300" if p < 1e-300 else f"{p:.3g}"


def rounds_summary(values, level: float = 0.95) -> dict:
    """A speed figure measured once per interleaved round: geometric mean and a t interval over the rounds.

    No interval (None) from fewer than two rounds or from rounds that all measured the same value.
    """
    logs = np.log(np.asarray(values, dtype=np.float64))
    centre = float(np.exp(logs.mean()))
    interval = None
    if len(logs) > 1 and logs.std(ddof=1) > 0:
        half = _quantile(0.5 + level / 2, len(logs) - 1) * logs.std(ddof=1) / math.sqrt(len(logs))
        interval = [float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))]
    return {"value": centre, "ci95": interval, "rounds": len(logs)}


def _exp(x: float) -> float:
    """exp, infinite past float range: two noisy rounds under Holm over 15 pairs put t quantiles of ~380 in it."""
    return math.exp(x) if x < 709 else math.inf


def round_ratios(values: dict[str, list[float]], higher_is_better: bool) -> dict[str, dict]:
    """Every pair's speed ratio from interleaved rounds (values[framework][round], the same rounds for all).

    The round is the unit: a pair's log ratio within each round, a t test and interval over rounds
    (R − 1 df), Holm over the pairs, and the interval at the level Holm tested it. `ratio` is A over B
    oriented so that above 1 means A is faster. Also the smallest ratio the design detects with 80 % power.
    """
    names = list(values)
    logs = {name: np.log(np.asarray(values[name], dtype=np.float64)) for name in names}
    results = {}
    for a, b in combinations(names, 2):
        differences = (logs[a] - logs[b]) * (1.0 if higher_is_better else -1.0)
        rounds = len(differences)
        mean = float(differences.mean())
        variance = float(differences.var(ddof=1)) / rounds if rounds > 1 else 0.0
        p, _ = _t_test(mean, variance, rounds - 1)
        results[f"{a}_vs_{b}"] = {"ratio": math.exp(mean), "p": p, "rounds": rounds, "log_mean": mean,
                                  "log_se": math.sqrt(variance), "df": rounds - 1}
    pairs = len(results)
    adjusted, steps = holm({key: r["p"] for key, r in results.items()}, with_steps=True)
    for key, r in results.items():
        step_alpha = ALPHA / steps[key]
        r["p_holm"], r["holm_level"] = adjusted[key], 1.0 - step_alpha
        r["ci95"], r["ci_holm"], r["detectable_ratio"] = None, None, None
        if r["log_se"] > 0:
            for name, level in (("ci95", 0.95), ("ci_holm", 1.0 - step_alpha)):
                half = _quantile(0.5 + level / 2, r["df"]) * r["log_se"]
                r[name] = [_exp(r["log_mean"] - half), _exp(r["log_mean"] + half)]
            r["detectable_ratio"] = _exp((_quantile(1 - ALPHA / (2 * pairs), r["df"]) + _quantile(POWER, r["df"]))
                                         * r["log_se"])
        r["significant"] = bool(r["ci_holm"] and r["p_holm"] < ALPHA and not r["ci_holm"][0] <= 1.0 <= r["ci_holm"][1])
    return results


def unpaired_log_ratio(after, before, level: float = 0.95) -> tuple[float, list[float] | None]:
    """Ratio of geometric means after/before and its Welch interval, for speed measured in separate sessions
    (no pairing; the interval holds only the within-session noise, not the drift between the sessions)."""
    x, y = np.log(np.asarray(after, dtype=np.float64)), np.log(np.asarray(before, dtype=np.float64))
    mean = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return math.exp(mean), None
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    if va + vb == 0:
        return math.exp(mean), None
    df = (va + vb) ** 2 / (va * va / (len(x) - 1) + vb * vb / (len(y) - 1))
    half = _quantile(0.5 + level / 2, df) * math.sqrt(va + vb)
    return math.exp(mean), [_exp(mean - half), _exp(mean + half)]


def speed_sentence(what: str, a: str, b: str, result: dict, pairs: int) -> str:
    """'A is 1.7× faster than B in …' only when the Holm-tested interval over rounds excludes 1."""
    rounds = f"{result['rounds']} interleaved round{'s' if result['rounds'] != 1 else ''}"
    if result["ci95"] is None:
        return (f"{a} and {b} cannot be compared in {what}: the {rounds} give no spread to estimate noise from "
                "(run speed.rounds ≥ 2)")
    correction = f"Holm over {pairs} pairs p = {format_p(result['p_holm'])}" if pairs > 1 else f"p = {format_p(result['p_holm'])}"
    if result["significant"]:
        ratio, (low, high) = result["ratio"], result["ci_holm"]
        faster, slower = (a, b) if ratio > 1 else (b, a)
        if ratio < 1:
            ratio, low, high = 1 / ratio, 1 / high, 1 / low
        return (f"{faster} is faster than {slower} in {what}: {ratio:.2f}×, {100 * result['holm_level']:.2f} % CI "
                f"[{low:.2f}, {high:.2f}] over {rounds} ({correction})")
    low, high = result["ci95"]
    detectable = result["detectable_ratio"]
    power = (f"this design detects ratios of {detectable:.2f}× or more with {100 * POWER:.0f} % power" if detectable < 10
             else f"this design cannot detect even a 10× ratio with {100 * POWER:.0f} % power: too few rounds (speed.rounds)")
    return (f"{a} and {b} cannot be told apart in {what}: ratio {result['ratio']:.2f}, 95 % CI [{low:.3g}, {high:.3g}] "
            f"over {rounds} ({correction}); {power}")


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
