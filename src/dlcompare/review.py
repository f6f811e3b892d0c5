"""`dlcompare diff [A] [B]`: what a change did to each framework, in words fit for code review.

Reads both revisions' params, framework versions (versions.yaml), per-image test predictions and speed
rounds through DVC (a commit, branch, tag or `dvc exp` name; nothing is checked out; the workspace is read
as it is) and gives, per framework that both revisions ran:

- accuracy: B − A over the seeds both ran, paired by seed and by test image (`stats.accuracy_difference`:
  an interval for the framework from ≥ 3 seeds, else one for these trained models over the test images),
  Holm over the frameworks. A regression is a Holm interval wholly below −review.tolerance.accuracy_points.
- speed: from interleaved A/B rounds (`dlcompare ab`, reviews/ab.json) when they timed these two revisions:
  the round pair is the unit, Holm over the frameworks, and a regression is a Holm interval of B/A wholly
  below review.tolerance.speed_ratio. Without them, the two revisions' speed stages (measured at different
  times, possibly on different machines) are described with an interval and no verdict is given.

Prints a table, writes the same as markdown (the pull-request comment) and returns whether any framework
regressed, for `--fail-on-regression`.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import yaml

from dlcompare import stats
from dlcompare.atomic import write_text
from dlcompare.errors import UserError
from dlcompare.train import run_name

WORKSPACE = "workspace"
AB_FILE = Path("reviews/ab.json")


@dataclass
class Revision:
    label: str  # as the user named it: HEAD, main, an experiment's name, workspace
    commit: str | None  # the commit it resolves to; None for the workspace
    read: Callable[[str], str | None]  # a project file's text, None when the revision has no such file


def open_revision(root: Path, rev: str) -> Revision:
    if rev == WORKSPACE:
        def read_workspace(path: str) -> str | None:
            file = root / path
            return file.read_text() if file.is_file() else None
        return Revision(WORKSPACE, None, read_workspace)

    from dvc.api import DVCFileSystem
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.scm import RevError, resolve_rev

    try:
        with Repo(str(root)) as repo:
            commit = resolve_rev(repo.scm, rev)
    except RevError:
        raise UserError(f"dlcompare diff: {rev!r} is not a commit, branch, tag or `dvc exp` name of this repository") from None
    except DvcException as error:
        raise UserError(f"dlcompare diff: {root} is not a DVC repository ({error})") from None
    fs = DVCFileSystem(repo=str(root), rev=commit)

    def read_commit(path: str) -> str | None:
        if not fs.exists(path):
            return None
        try:
            return fs.read_text(path)
        except (FileNotFoundError, DvcException) as error:
            raise UserError(f"{path} at {rev} is not in this machine's DVC cache ({error.__class__.__name__}): "
                            "run `dvc pull` (or `dvc exp pull` for an experiment) first") from None
    return Revision(rev, commit, read_commit)


def _flat(node, prefix: str = "") -> dict:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): node}


def changes(before: dict, after: dict) -> list[str]:
    """'key: old → new' for every leaf that differs (params, versions)."""
    old, new = _flat(before), _flat(after)
    return [f"{key}: {old.get(key, '(none)')} → {new.get(key, '(none)')}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def load_side(revision: Revision) -> dict:
    """What diff compares of one revision: params, versions, per-run predictions and the speed rounds."""
    text = revision.read("params.yaml")
    if text is None:
        raise UserError(f"{revision.label} has no params.yaml: is it a revision of a dlcompare project?")
    params = yaml.safe_load(text) or {}
    train = params.get("train", {})
    frameworks, seeds = list(train.get("frameworks", [])), list(train.get("seeds", []))
    predictions = {}
    for framework in frameworks:
        for seed in seeds:
            path = f"plots/eval/{run_name(framework, seed)}/predictions.csv"
            csv = revision.read(path)
            if csv is None:
                raise UserError(f"{path} is missing at {revision.label}: run `dvc repro` there (or `dvc pull` its results)")
            predictions[(framework, seed)] = pd.read_csv(io.StringIO(csv))
    rounds = revision.read("speed/rounds.csv")
    return {"params": params, "versions": yaml.safe_load(revision.read("versions.yaml") or "") or {},
            "frameworks": frameworks, "seeds": seeds, "predictions": predictions,
            "rounds": pd.read_csv(io.StringIO(rounds)) if rounds else None}


def check_same_test_images(a: dict, b: dict, label_a: str, label_b: str) -> pd.Series:
    """The test images every run of both revisions was scored on; a UserError unless they are the same."""
    reference = next(iter(a["predictions"].values()))["path"]
    for side, label in ((a, label_a), (b, label_b)):
        for (framework, seed), frame in side["predictions"].items():
            if not frame["path"].equals(reference):
                raise UserError(f"{label_a} and {label_b} scored different test images ({run_name(framework, seed)} at "
                                f"{label}): the split or the data changed, so accuracy cannot be paired image by image")
    return reference


def _correct(frame: pd.DataFrame) -> np.ndarray:
    return (frame["actual"] == frame["predicted"]).to_numpy()


def accuracy_changes(a: dict, b: dict, frameworks: list[str], seeds: list[int], tolerance_points: float) -> dict:
    """Per framework B − A in accuracy (paired by seed and image), Holm over the frameworks, and the verdict."""
    results = {}
    for framework in frameworks:
        before = np.stack([_correct(a["predictions"][(framework, s)]) for s in seeds])
        after = np.stack([_correct(b["predictions"][(framework, s)]) for s in seeds])
        result = stats.accuracy_difference(after, before)
        result["a"], result["b"] = float(before.mean()), float(after.mean())
        results[framework] = result
    stats.holm_intervals(results, lambda r: (r["diff"], math.sqrt(max(r["variance"], 0.0))))
    for result in results.values():
        low, high = result["ci_holm"]
        testable = not math.isnan(result["p"])
        result["significant"] = testable and result["p_holm"] < stats.ALPHA and not low <= 0.0 <= high
        result["regression"] = testable and high < -tolerance_points / 100
        result["detectable"] = stats.detectable_gap(result["variance"], result["df"], len(results))
        result["verdict"] = _accuracy_sentence(result, len(results), tolerance_points)
    return results


def _accuracy_sentence(r: dict, frameworks: int, tolerance_points: float) -> str:
    scope = (f"over {r['seeds']} seeds × {r['n']:,} test images" if r["framework_level"] else
             f"these {r['seeds']} trained model(s) over {r['n']:,} test images (a framework-level answer needs "
             f"{stats.MIN_SEEDS_FOR_FRAMEWORK_CLAIM} seeds)")
    if r["identical"]:
        return f"identical predictions on every test image for each of the {r['seeds']} seed(s)"
    if math.isnan(r["p"]):
        return f"{100 * r['diff']:+.2f} points, not testable: the change did not vary over {scope}"
    low, high = (100 * x for x in r["ci_holm"])
    interval = f"{100 * r['diff']:+.2f} points, {100 * r['holm_level']:.2f} % CI [{low:+.2f}, {high:+.2f}] {scope}"
    if r["regression"]:
        return f"worse by more than the {tolerance_points:g}-point tolerance: {interval} (a regression)"
    if r["significant"]:
        return f"{'more' if r['diff'] > 0 else 'less'} accurate: {interval}" + (
            f"; within the {tolerance_points:g}-point tolerance" if r["diff"] < 0 else "")
    detectable = f"{100 * r['detectable']:.2f} points" if r["detectable"] else "no gap"
    return (f"no change detected: {interval}; this design detects changes of {detectable} or more with "
            f"{100 * stats.POWER:.0f} % power (Holm over {frameworks} framework(s))")


def _rates(rounds: pd.DataFrame | None, framework: str) -> np.ndarray:
    if rounds is None:
        return np.array([])
    return rounds.loc[rounds["framework"] == framework, "train_images_per_s"].to_numpy(dtype=np.float64)


def described_speed(a: dict, b: dict, framework: str) -> dict:
    """B/A training images/s from the two revisions' own speed stages: a description, never a verdict."""
    before, after = _rates(a["rounds"], framework), _rates(b["rounds"], framework)
    if len(before) == 0 or len(after) == 0:
        return {"ratio": None, "sentence": "no speed rounds on both sides (the speed stage did not run)"}
    if a["rounds"].equals(b["rounds"]):
        return {"ratio": 1.0, "a": float(np.exp(np.log(before).mean())), "b": float(np.exp(np.log(after).mean())),
                "interleaved": False, "same": True,
                "sentence": "the same speed-stage measurements on both sides (nothing the speed stage depends on changed)"}
    hosts = set(a["rounds"]["host"]) | set(b["rounds"]["host"])
    ratio, interval = stats.unpaired_log_ratio(after, before)
    where = "on one machine" if len(hosts) == 1 else f"on {len(hosts)} different machines"
    span = f"95 % CI [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "no interval (too few rounds)"
    return {"ratio": ratio, "ci95": interval, "a": float(np.exp(np.log(before).mean())),
            "b": float(np.exp(np.log(after).mean())), "interleaved": False,
            "sentence": (f"B/A {ratio:.2f}×, {span} over {len(before)} + {len(after)} speed-stage rounds measured at "
                         f"different times {where}: no verdict (drift between the two runs is not in that interval); "
                         "run `dlcompare ab` for one")}


def interleaved_speed(ab: dict, frameworks: list[str], tolerance_ratio: float) -> dict:
    """Per framework B/A from `dlcompare ab`'s interleaved rounds (the round pair is the unit), Holm over frameworks."""
    results = {}
    for framework in frameworks:
        rows = [r for r in ab["rounds"] if r["framework"] == framework]
        by_side = {side: [r["train_images_per_s"] for r in sorted(rows, key=lambda r: r["round"]) if r["side"] == side]
                   for side in ("A", "B")}
        result = stats.round_ratios({"B": by_side["B"], "A": by_side["A"]}, higher_is_better=True)["B_vs_A"]
        result["a"], result["b"] = (float(np.exp(np.log(by_side[s]).mean())) for s in ("A", "B"))
        results[framework] = result
    stats.holm_intervals(results, lambda r: (r["log_mean"], r["log_se"]))
    for result in results.values():
        result["interleaved"] = True
        testable = result["log_se"] > 0
        low, high = (math.exp(min(x, 700)) for x in result["ci_holm"])
        result["ci_holm"] = [low, high]
        result["significant"] = testable and result["p_holm"] < stats.ALPHA and not low <= 1.0 <= high
        result["regression"] = testable and high < tolerance_ratio
        interval = (f"B/A {result['ratio']:.3f}×, {100 * result['holm_level']:.2f} % CI [{low:.3f}, {high:.3f}] over "
                    f"{result['rounds']} interleaved A/B rounds")
        if not testable:
            result["sentence"] = f"B/A {result['ratio']:.3f}× over {result['rounds']} rounds with no spread: not testable"
        elif result["regression"]:
            result["sentence"] = f"slower beyond the tolerance ({tolerance_ratio:g}×): {interval} (a regression)"
        elif result["significant"]:
            result["sentence"] = f"{'faster' if result['ratio'] > 1 else 'slower'}: {interval}"
        else:
            result["sentence"] = (f"no change detected: {interval}; this design detects {result['detectable_ratio']:.3f}× "
                                  f"or more with {100 * stats.POWER:.0f} % power")
    return results


def read_ab(path: Path, a: Revision, b: Revision) -> dict | None:
    """`dlcompare ab`'s rounds, if they timed exactly these two revisions (the workspace counts as itself)."""
    if not path.is_file():
        return None
    ab = json.loads(path.read_text())
    wanted = [a.commit or WORKSPACE, b.commit or WORKSPACE]
    return ab if [ab["a"]["commit"] or WORKSPACE, ab["b"]["commit"] or WORKSPACE] == wanted else None


def diff(root: Path, rev_a: str, rev_b: str, tolerance_points: float, tolerance_ratio: float,
         ab_file: Path | None = None) -> dict:
    a_rev, b_rev = open_revision(root, rev_a), open_revision(root, rev_b)
    a, b = load_side(a_rev), load_side(b_rev)
    frameworks = [f for f in a["frameworks"] if f in b["frameworks"]]
    seeds = [s for s in a["seeds"] if s in b["seeds"]]
    if not frameworks or not seeds:
        raise UserError(f"{rev_a} and {rev_b} have no framework and seed in common (train.frameworks, train.seeds): "
                        "nothing to pair")
    images = check_same_test_images(a, b, rev_a, rev_b)
    accuracy = accuracy_changes(a, b, frameworks, seeds, tolerance_points)
    ab = read_ab(ab_file or root / AB_FILE, a_rev, b_rev)
    timed = [f for f in frameworks if ab and f in {r["framework"] for r in ab["rounds"]}]
    speed = interleaved_speed(ab, timed, tolerance_ratio) if timed else {}
    for framework in frameworks:
        speed.setdefault(framework, described_speed(a, b, framework))
    regressions = [f"{f} accuracy" for f in frameworks if accuracy[f]["regression"]] + \
                  [f"{f} speed" for f in frameworks if speed[f].get("regression")]
    return {
        "a": {"label": rev_a, "commit": a_rev.commit}, "b": {"label": rev_b, "commit": b_rev.commit},
        "params_changed": changes(a["params"], b["params"]), "versions_changed": changes(a["versions"], b["versions"]),
        "frameworks": frameworks, "seeds": seeds, "n_test": int(len(images)),
        "unpaired_seeds": {"A": [s for s in a["seeds"] if s not in seeds], "B": [s for s in b["seeds"] if s not in seeds]},
        "only_a": [f for f in a["frameworks"] if f not in frameworks], "only_b": [f for f in b["frameworks"] if f not in frameworks],
        "tolerance": {"accuracy_points": tolerance_points, "speed_ratio": tolerance_ratio},
        "accuracy": accuracy, "speed": speed, "regressions": regressions,
    }


def _speed_cell(entry: dict) -> tuple[str, str]:
    if entry.get("ratio") is None:
        return "—", "—"
    rates = f"{entry['a']:.0f} → {entry['b']:.0f}"
    if entry["interleaved"]:
        low, high = entry["ci_holm"]
        return rates, f"{entry['ratio']:.3f}× [{low:.3f}, {high:.3f}]"
    if entry.get("same"):
        return rates, "1× (the same measurements)"
    return rates, f"{entry['ratio']:.2f}× (not interleaved: no verdict)"


def markdown(result: dict) -> str:
    a, b = result["a"]["label"], result["b"]["label"]
    short = {side: (result[side]["commit"] or WORKSPACE)[:10] for side in ("a", "b")}
    changed = result["versions_changed"] + result["params_changed"]
    tolerance = result["tolerance"]
    lines = [f"## dlcompare diff: `{a}` ({short['a']}) → `{b}` ({short['b']})", "",
             "**What changed:** " + ("; ".join(f"`{c}`" for c in changed) if changed else
                                     "no params or framework versions (code or data only)"),
             "",
             f"Paired on the same {result['n_test']:,} test images and seeds {', '.join(map(str, result['seeds']))}. "
             f"Gate: a framework fails when its Holm interval lies wholly beyond the tolerance "
             f"({tolerance['accuracy_points']:g} accuracy point(s); speed ratio {tolerance['speed_ratio']:g}×, "
             "interleaved rounds only).", "",
             "| framework | accuracy A → B | B − A, points (Holm CI) | training images/s A → B | B / A (Holm CI) |",
             "|---|---|---|---|---|"]
    for framework in result["frameworks"]:
        acc = result["accuracy"][framework]
        low, high = (100 * x for x in acc["ci_holm"])
        rates, ratio = _speed_cell(result["speed"][framework])
        lines.append(f"| {framework} | {100 * acc['a']:.2f} % → {100 * acc['b']:.2f} % | "
                     f"{100 * acc['diff']:+.2f} [{low:+.2f}, {high:+.2f}] | {rates} | {ratio} |")
    lines += ["", "**Verdicts**", ""]
    for framework in result["frameworks"]:
        lines.append(f"- **{framework}** accuracy: {result['accuracy'][framework]['verdict']}.")
        lines.append(f"- **{framework}** training speed: {result['speed'][framework]['sentence']}.")
    for side, names in (("A", result["only_a"]), ("B", result["only_b"])):
        if names:
            lines.append(f"- Only in {side}, not compared: {', '.join(names)}.")
        if result["unpaired_seeds"][side]:
            lines.append(f"- Seeds only in {side}, left out so that every seed is paired: "
                         f"{', '.join(map(str, result['unpaired_seeds'][side]))}.")
    lines += ["", ("**Result: regression** in " + ", ".join(result["regressions"]) + ".") if result["regressions"]
              else "**Result: no regression** beyond the tolerance."]
    return "\n".join(lines) + "\n"


def table(result: dict) -> str:
    """The terminal version: one line per framework, then what changed and the result."""
    rows = [f"{'framework':<12} {'accuracy A → B':<19} {'B − A points [Holm CI]':<26} {'images/s A → B':<15} B / A"]
    for framework in result["frameworks"]:
        acc = result["accuracy"][framework]
        low, high = (100 * x for x in acc["ci_holm"])
        rates, ratio = _speed_cell(result["speed"][framework])
        accuracies = f"{100 * acc['a']:.2f} → {100 * acc['b']:.2f} %"
        change = f"{100 * acc['diff']:+.2f} [{low:+.2f}, {high:+.2f}]"
        rows.append(f"{framework:<12} {accuracies:<19} {change:<26} {rates:<15} {ratio}")
    changed = result["versions_changed"] + result["params_changed"]
    rows.append("changed: " + ("; ".join(changed) if changed else "no params or framework versions"))
    rows.append(("REGRESSION: " + ", ".join(result["regressions"])) if result["regressions"] else
                "no regression beyond the tolerance")
    return "\n".join(rows)


def write_markdown(path: Path, result: dict) -> None:
    write_text(path, markdown(result))
