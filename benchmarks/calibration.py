"""The accuracy verdicts' calibration: family-wise false positives and power on the fitted simulator.

6 frameworks × {3, 5} seeds, 2,000 test images (the 10k subset's test split), Holm over the 15 pairs:
  no effect       share of comparisons that claim any pair (must be ≤ 5 %), and the share that claim the
                  pair whose two frameworks are twice as noisy from seed to seed as the rest (the spread check)
  +1 / +2 points  share that find the one framework that is better by that much against another
Prints a markdown table (docs/statistics.md quotes it). Usage: python benchmarks/calibration.py [--trials 1000]
"""

from __future__ import annotations

import argparse

import numpy as np

from dlcompare.simulate import FITTED, discordant_per_seed_pair, verdict_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    rng = np.random.default_rng(2026)
    print(f"simulator: {discordant_per_seed_pair(FITTED, rng, 200):.1f} images disagree per seed pair; "
          f"{args.trials} comparisons per cell")
    print("| seeds | family-wise false positives | noisy pair false positives | power, +1 point | power, +2 points |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for seeds in (3, 5):
        null = verdict_rates(FITTED, rng, 6, seeds, 0.0, args.trials)
        one = verdict_rates(FITTED, rng, 6, seeds, 0.01, args.trials)
        two = verdict_rates(FITTED, rng, 6, seeds, 0.02, args.trials)
        print(f"| {seeds} | {100 * null['family_false_positive']:.1f} % | {100 * null['noisy_pair_false_positive']:.1f} % "
              f"| {100 * one['power']:.1f} % | {100 * two['power']:.1f} % |")


if __name__ == "__main__":
    main()
