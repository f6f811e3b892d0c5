"""The speed verdicts' A/A check on this machine: how often one framework is called faster than itself.

Runs the speed stage's design with the same framework as both A and B (`--rounds` interleaved rounds, each a
fresh process, order rotated) on prepared data and the params' speed.* sizes, then prints:
  - the spread of the per-round log ratio A/B (the noise floor the verdicts work against),
  - false claims in the non-overlapping windows of `speed.rounds` rounds (the default design, run for real),
  - the false-claim rate of that design over 4,000 simulated A/A designs whose noise is fitted to these rounds
    (process noise, machine drift from process to process and its autocorrelation, first-position slowdown),
  - the smallest ratio the default design detects with 80 % power, alone and with Holm over the 15 pairs
    of six frameworks.
Writes the rounds to --out (CSV). Usage:
  python benchmarks/speed_aa.py --prepared data/prepared --framework pytorch --rounds 24
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from scipy import stats as sps

from dlcompare import stats
from dlcompare.params import load_params
from dlcompare.simulate import RoundModel, aa_false_claims
from dlcompare.speed import FIGURES, run_rounds

ROOT = Path(__file__).resolve().parents[1]


def fitted_model(log_values: np.ndarray, positions: np.ndarray) -> RoundModel:
    """RoundModel from one framework's processes in run order (log speed, position in its round)."""
    first = log_values[positions == 0].mean() - log_values[positions != 0].mean()
    centred = log_values + np.where(positions == 0, -first, 0.0) - log_values.mean()
    within = np.diff(centred)[::2]  # the two processes of a round: no drift between them to speak of
    process_sd = float(np.std(within, ddof=1) / math.sqrt(2))
    total_var = float(np.var(centred, ddof=1))
    drift_sd = math.sqrt(max(0.0, total_var - process_sd ** 2))
    lag1 = float(np.corrcoef(centred[:-1], centred[1:])[0, 1]) if len(centred) > 2 else 0.0
    autocorrelation = min(0.99, max(0.0, lag1 * total_var / drift_sd ** 2)) if drift_sd > 0 else 0.0
    return RoundModel(process_sd=process_sd, drift_sd=drift_sd, drift_autocorrelation=autocorrelation,
                      first_position=float(-first))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", type=Path, default=ROOT / "data" / "prepared")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--framework", default="pytorch")
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed_aa.csv")
    args = parser.parse_args()
    design = load_params(args.params).speed
    rounds = run_rounds([("A", args.framework), ("B", args.framework)], args.rounds, args.params, args.prepared,
                        on_round=lambda row: print(f"round {row['round'] + 1} {row['label']}: "
                                                   f"{row['train_images_per_s']:.1f} images/s", flush=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rounds.to_csv(args.out, index=False)
    print(f"{args.framework} as A and B, {args.rounds} rounds; default design: {design.rounds} rounds")
    rng = np.random.default_rng(0)
    for figure, (what, higher_is_better) in FIGURES.items():
        table = rounds.pivot(index="round", columns="label", values=figure)
        log_ratio = np.log(table["A"].to_numpy() / table["B"].to_numpy())
        windows = [table.iloc[start:start + design.rounds] for start in range(0, len(table) - design.rounds + 1, design.rounds)]
        claims = sum(stats.round_ratios({"A": w["A"].tolist(), "B": w["B"].tolist()}, higher_is_better)["A_vs_B"]["significant"]
                     for w in windows)
        ordered = rounds.sort_values(["round", "position"])
        model = fitted_model(np.log(ordered[figure].to_numpy()), ordered["position"].to_numpy())
        simulated = aa_false_claims(rng, design.rounds, 4000, model)
        sd = float(np.std(log_ratio, ddof=1))
        df = design.rounds - 1
        alone = math.exp((sps.t.ppf(1 - 0.025, df) + sps.t.ppf(0.8, df)) * sd / math.sqrt(design.rounds))
        holm = math.exp((sps.t.ppf(1 - 0.025 / 15, df) + sps.t.ppf(0.8, df)) * sd / math.sqrt(design.rounds))
        print(f"{what:22} per-round log-ratio SD {sd:.4f} (mean {log_ratio.mean():+.4f}); real windows of "
              f"{design.rounds} rounds: {claims} false claim(s) in {len(windows)}; simulated A/A (process SD "
              f"{model.process_sd:.4f}, drift SD {model.drift_sd:.4f}, AR {model.drift_autocorrelation:.2f}, first "
              f"position {model.first_position:+.4f}): {100 * simulated:.1f} % false claims; detectable with 80 % power: "
              f"{alone:.3f}x alone, {holm:.3f}x with Holm over 15 pairs")


if __name__ == "__main__":
    main()
