"""`dlcompare ab`'s A/A check on this machine: how often a revision is called slower than itself.

Runs `dlcompare ab HEAD HEAD` (the same code and the same pins on both sides: every difference is noise) for
`--rounds` interleaved rounds on prepared data and the params' speed.* sizes, then prints, per framework:
  - the noise floor: the SD of the per-round log ratio B/A, and the smallest change the default design
    (review.rounds rounds) detects with 80 % power;
  - false regressions (B/A's Holm interval wholly below review.tolerance.speed_ratio) and false claims of any
    difference, in the non-overlapping windows of review.rounds rounds (the default design, run for real);
  - the same two rates over 4,000 simulated A/A designs whose noise is fitted to these rounds (process noise,
    drift between processes and its autocorrelation, the first position's slowdown).
Writes every round to --out (JSON, as `dlcompare ab` does). Usage:
  python benchmarks/ab_aa.py --prepared data/prepared --frameworks pytorch,keras --rounds 20
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from dlcompare import stats
from dlcompare.ab import ab
from dlcompare.params import load_params
from dlcompare.simulate import aa_false_claims
from speed_aa import fitted_model

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--frameworks", default="pytorch")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ab_aa.json")
    args = parser.parse_args()
    params = load_params(args.params)
    design, tolerance = params.review.rounds, params.review.tolerance.speed_ratio
    frameworks = args.frameworks.split(",")
    record = ab(ROOT, "HEAD", "HEAD", frameworks, args.rounds, args.prepared, params.prepare.image_size, args.out,
                tolerance_ratio=tolerance, echo=lambda line: print(line, flush=True))
    rows = pd.DataFrame(record["rounds"])
    rng = np.random.default_rng(0)
    print(f"A/A: HEAD against itself, {args.rounds} rounds ({record['seconds']:.0f} s); default design: {design} rounds, "
          f"regression below {tolerance}×")
    for framework in frameworks:
        table = rows[rows["framework"] == framework].pivot(index="round", columns="side", values="train_images_per_s")
        log_ratio = np.log(table["B"].to_numpy() / table["A"].to_numpy())
        windows = [table.iloc[start:start + design] for start in range(0, len(table) - design + 1, design)]
        verdicts = [stats.round_ratios({"B": w["B"].tolist(), "A": w["A"].tolist()}, True)["B_vs_A"] for w in windows]
        regressions = sum(bool(v["ci_holm"] and v["ci_holm"][1] < tolerance) for v in verdicts)
        claims = sum(v["significant"] for v in verdicts)
        ordered = rows[rows["framework"] == framework].sort_values(["round", "position"])
        model = fitted_model(np.log(ordered["train_images_per_s"].to_numpy()), ordered["position"].to_numpy())
        # aa_false_claims names the sides copy0 (A) and copy1 (B), ratio A/B: B/A < tolerance is A/B > 1/tolerance.
        simulated_regressions = aa_false_claims(rng, design, 4000, model,
                                                claim=lambda pair: bool(pair["ci_holm"] and pair["ci_holm"][0] > 1 / tolerance))
        simulated_claims = aa_false_claims(rng, design, 4000, model)
        sd = float(np.std(log_ratio, ddof=1))
        df = design - 1
        detectable = math.exp((sps.t.ppf(1 - 0.025, df) + sps.t.ppf(0.8, df)) * sd / math.sqrt(design))
        print(f"{framework}: per-round log-ratio SD {sd:.4f} (mean B/A {math.exp(log_ratio.mean()):.4f}); the {design}-round "
              f"design detects {detectable:.3f}× with 80 % power. Real windows: {regressions} false regression(s) and "
              f"{claims} false claim(s) in {len(windows)}. Simulated A/A (process SD {model.process_sd:.4f}, drift SD "
              f"{model.drift_sd:.4f}, AR {model.drift_autocorrelation:.2f}, first position {model.first_position:+.4f}): "
              f"{100 * simulated_regressions:.1f} % false regressions, {100 * simulated_claims:.1f} % false claims")


if __name__ == "__main__":
    main()
