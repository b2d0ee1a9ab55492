#!/usr/bin/env python3
"""bench/quality: offline recommendation quality of the recipes on the real datasets, two protocols.

    .venv/bin/python bench/quality.py [--datasets ml-100k,ml-latest-small,diginetica-sample]
                                      [--recipes popularity,sims,sims-doc-defaults,hrnn,hrnn-v2,
                                                 trending,similar-items,bought-together]
                                      [--cold ml-100k,ml-latest-small] [--context ml-100k]

Data: ../shared/datasets/<name>/interactions.csv (never copied into the repo). Protocols
(training/split.py): leave-last-out, the literature's (every user with >= 2 interactions must find
their last one), and personalize_split, what our GetSolutionMetrics reports (a seeded 10% of users,
their latest 10% of interactions held out). Metrics (training/metrics.py): top 25 per evaluated
user, history excluded; `--history kept` (or `both`) measures the lists a campaign answers without
a filter, the user's history included (recipe names get " +history").
Recipes: Popularity-Count; aws-sims with our defaults and with Personalize's
documented ones (`sims-doc-defaults`: max_item_interaction_count_percentile 0.9); HRNN when
training.hrnn is importable; aws-trending-now (1 hour, as of the newest training interaction);
aws-similar-items (with the dataset's items.csv where it has one); the frequently-bought-together
use case's session baskets (fed every interaction: none of these datasets records purchases).
The domain use cases are these models on one event type: ml-latest-small, whose events are all
ratings, is the VIDEO_ON_DEMAND case (top picks = hrnn, because you watched X = sims, more like
X = similar-items, most popular = popularity, trending now = trending). With similar-items, the
catalogue's unrated items join every recipe's vocabulary (18 of ml-latest-small's 9,742).
Training wall time and its peak RSS above the RSS before training (VmHWM, reset through
/proc/self/clear_refs after malloc_trim) per run.
Goals (training issue): on ml-100k under leave-last-out, Popularity-Count reproduces the reference
NDCG@10 0.0253 / HR@10 0.0498 and SIMS reaches at least the reference co-occurrence neighbours of
the user's last item, NDCG@10 0.0734 / HR@10 0.1442 / coverage@10 0.72.
Baseline: Popularity-Count, the baseline Personalize's documentation recommends.
More protocols: the leave-last-out users whose held-out item has few training interactions
(<= FEW); `--cold`: 10% of the items lose every interaction from training and each user who
used one must find it among them from its metadata (against popularity within metadata);
`--context`: the part of the day of each rating as a context field for hrnn-v2.
Prints one table per protocol and writes bench/results/quality.json.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import pyarrow.csv as pacsv  # noqa: E402

from kernel.item_features import item_features  # noqa: E402
from training import bought_together, popularity, similar_items, sims, trending  # noqa: E402
from training.interactions import Interactions, from_table, read_csv, with_catalog  # noqa: E402
from training.metrics import TOP, Scorer, evaluate, per_user_metrics, rank, top_k  # noqa: E402
from training.split import Split, leave_last_out, personalize_split  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
PROTOCOLS: dict[str, Callable[[Interactions], Split]] = {
    "leave_last_out": leave_last_out, "personalize_split": personalize_split}
REFERENCE = {"ml-100k": {  # leave-last-out, measured on this machine (training issue)
    "popularity": {"hit_rate_at_10": 0.0498, "normalized_discounted_cumulative_gain_at_10": 0.0253},
    "cooccurrence_last_item": {"hit_rate_at_10": 0.1442, "coverage_at_10": 0.72,
                               "normalized_discounted_cumulative_gain_at_10": 0.0734}}}
BASE = [("HR@10", "hit_rate_at_10"), ("NDCG@10", "normalized_discounted_cumulative_gain_at_10"),
        ("MRR@25", "mean_reciprocal_rank_at_25"), ("cov@10", "coverage_at_10")]
HISTORY = {"excluded": (True,), "kept": (False,), "both": (True, False)}  # exclude_history per run
PERSONALIZE = [("coverage", "coverage"), ("ndcg@5", "normalized_discounted_cumulative_gain_at_5"),
               ("ndcg@25", "normalized_discounted_cumulative_gain_at_25"), ("prec@5", "precision_at_5"),
               ("prec@10", "precision_at_10"), ("prec@25", "precision_at_25")]


def recipes(names: list[str], items: pa.Table | None = None) -> dict[str, Callable[[Interactions], Scorer]]:
    """name -> fit (`items`: the dataset's catalogue, for similar-items); HRNN only when
    training.hrnn is importable."""
    out: dict[str, Callable[[Interactions], Scorer]] = {
        "popularity": popularity.fit, "sims": sims.fit,
        "sims-doc-defaults": lambda d: sims.fit(d, sims.PERSONALIZE_DEFAULTS),
        "trending": lambda d: trending.fit(d, {}),
        "similar-items": lambda d: similar_items.fit(d, items, {}),
        "bought-together": lambda d: bought_together.fit(d, {})}
    if "hrnn" in names or "hrnn-v2" in names:
        try:
            from training import hrnn
            out["hrnn"] = lambda d: hrnn.fit(d, {})
            out["hrnn-v2"] = lambda d: hrnn.fit(d, {}, items=items)
            import torch  # noqa: F401 - loaded before any fit, so no peak RSS counts its import
        except ImportError:
            print("hrnn: not available")
    return {n: out[n] for n in names if n in out}


def hrnn_fit(data: Interactions, items: pa.Table, textual: str) -> Scorer:
    from training import hrnn
    return hrnn.fit(data, {}, items=items, textual=textual)


def status_kib(field: str) -> int:
    line = next(ln for ln in Path("/proc/self/status").read_text().splitlines() if ln.startswith(field))
    return int(line.split()[1])


def train(fit: Callable[[Interactions], Scorer], data: Interactions) -> tuple[Scorer, float, float | None]:
    """Fit, with wall seconds and peak RSS growth in MiB (None where the peak cannot be reset)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap pages leave RSS, so reuse shows as growth
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        before: int | None = status_kib("VmRSS")
    except OSError:
        before = None
    t = time.perf_counter()
    model = fit(data)
    wall = time.perf_counter() - t
    return model, wall, None if before is None else (status_kib("VmHWM") - before) / 1024


def table(protocol: str, results: dict[str, dict[str, dict[str, float]]]) -> str:
    cols = BASE + (PERSONALIZE if protocol == "personalize_split" else [])
    head = ["dataset", "recipe", "users", *(c for c, _ in cols), "train s", "eval s", "peak MiB"]
    rows = [head]
    for ds, by_recipe in results.items():
        for name, r in by_recipe.items():
            peak = "-" if r["train_peak_mib"] is None else f"{r['train_peak_mib']:.0f}"
            rows.append([ds, name, str(r["users"]), *(f"{r[k]:.4f}" for _, k in cols),
                         f"{r['train_s']:.2f}", f"{r['eval_s']:.2f}", peak])
        for name, ref in REFERENCE.get(ds, {}).items() if protocol == "leave_last_out" else ():
            cells = (f"{ref[k]:.4f}" if k in ref else "" for _, k in cols)
            rows.append([ds, f"reference: {name}", "", *cells, "", "", ""])
    widths = [max(len(c) for c in col) for col in zip(*rows, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([f"== {protocol}", *lines])


FEW = 20  # "items with few interactions": at most this many training rows


class MetadataPopularity:
    """Popularity within metadata, the cold-start baseline: an item scores as much as its metadata
    vector points where the popular items' do (the popularity-weighted sum of the warm items'
    vectors), the same for every user."""

    def __init__(self, data: Interactions, items: pa.Table) -> None:
        features = item_features(items, data.item_ids)
        profile = np.bincount(data.item, minlength=data.n_items).astype(np.float32) @ features
        self.scores = (features @ profile).astype(np.float32)

    def score(self, users: np.ndarray, history: list[np.ndarray],
              history_time: list[np.ndarray]) -> np.ndarray:
        return np.broadcast_to(self.scores, (len(users), len(self.scores)))


def cold_start(data: Interactions, fits: dict[str, Callable[[Interactions], Scorer]], fraction: float = 0.1,
               seed: int = 0) -> dict[str, dict[str, float]]:
    """Cold items: a seeded `fraction` of the items loses every interaction from training; each
    user who interacted with one must find the first of them, ranked among the cold items only,
    from the history before it. The model knows their metadata (ITEMS), nothing else."""
    rng = np.random.default_rng(seed)
    used = np.flatnonzero(np.bincount(data.item, minlength=data.n_items))
    cold = np.zeros(data.n_items, dtype=bool)
    cold[rng.choice(used, max(1, int(fraction * len(used))), replace=False)] = True
    kept = data.take(~cold[data.item])
    users, history, times, targets = [], [], [], []
    off = data.offsets
    for u in range(data.n_users):
        rows = np.arange(off[u], off[u + 1])
        hit = rows[cold[data.item[rows]]]
        if not len(hit):
            continue
        first = hit[0]
        before = rows[(rows < first) & ~cold[data.item[rows]]]
        if len(before):
            users.append(u), history.append(data.item[before]), times.append(data.time[before])
            targets.append(data.item[first])
    codes = np.flatnonzero(cold)
    position = np.full(data.n_items, -1)
    position[codes] = np.arange(len(codes))
    out = {}
    for name, fit in fits.items():
        model, wall, _ = train(fit, kept)
        scores = model.score(np.asarray(users), history, times)[:, codes]  # (users, cold)
        target_scores = scores[np.arange(len(users)), position[np.asarray(targets)]]
        above, level = (scores > target_scores[:, None]).sum(1), (scores == target_scores[:, None]).sum(1)
        rank_ = above + (level - 1) / 2  # 0 = first; among equal scores, the middle place
        out[name] = {"users": len(users), "cold_items": len(codes), "train_s": wall,
                     "hit_rate_at_10": float(np.mean(rank_ < 10)),
                     "normalized_discounted_cumulative_gain_at_10": float(np.mean(
                         np.where(rank_ < 10, 1.0 / np.log2(rank_ + 2), 0.0)))}
    return out


DAYPARTS = ("night", "morning", "afternoon", "evening")  # UTC hours 0-6, 6-12, 12-18, 18-24


def context_protocol(ds: str, items: pa.Table | None) -> dict[str, float]:
    """Context, measured on the one context these datasets have: the part of the day of each
    rating (from its TIMESTAMP) as a DAYPART field. Leave-last-out NDCG@10 of the v2 HRNN that
    learnt it, each user scored in the daypart of the held-out rating, against the same model
    trained without it."""
    from training import hrnn
    table = pacsv.read_csv(DATASETS / ds / "interactions.csv", convert_options=pacsv.ConvertOptions(
        column_types={"USER_ID": pa.string(), "ITEM_ID": pa.string(), "TIMESTAMP": pa.int64()}))
    hours = (table["TIMESTAMP"].to_numpy() // 3600) % 24
    table = table.append_column("DAYPART", pa.array(np.asarray(DAYPARTS)[hours // 6]))
    out = {}
    for name, fields in (("without context", ()), ("with DAYPART", ("DAYPART",))):
        data = from_table(table, context=fields)
        split = leave_last_out(data)
        model, wall, _ = train(lambda d: hrnn.fit(d, {}, items=items), split.train)
        daypart = [None] * len(split.users)
        if data.context is not None:
            codes = data.context[data.offsets[split.users + 1] - 1, 0]
            daypart = [data.context_values[0][c - 1] if c else None for c in codes]
        ranked = np.full((len(split.users), TOP), -1)
        for part in set(daypart):
            rows = np.flatnonzero([d == part for d in daypart])
            scores = model.score(split.users[rows], [split.history[r] for r in rows],
                                 [split.history_time[r] for r in rows],
                                 context=None if part is None else {"DAYPART": part})
            ranked[rows] = top_k(scores, [split.history[r] for r in rows], TOP)
        per_user = per_user_metrics(ranked, split.held_out, data.n_items)
        out[name] = float(per_user["normalized_discounted_cumulative_gain_at_10"].mean())
        out[f"{name} train s"] = wall
    return out


def few_interactions(model: Scorer, split: Split, at_most: int = FEW) -> dict[str, float]:
    """Leave-last-out restricted to users whose held-out item has at most `at_most` training rows."""
    counts = np.bincount(split.train.item, minlength=split.train.n_items)
    rare = np.array([counts[h[0]] <= at_most for h in split.held_out])
    per_user = per_user_metrics(rank(model, split), split.held_out, split.train.n_items)
    return {"users": int(rare.sum()), **{k: float(v[rare].mean()) if rare.any() else 0.0
                                         for k, v in per_user.items()}}


def update_vs_full(data: Interactions, new_fraction: float) -> dict[str, float]:
    """HRNN UPDATE against a FULL retrain on the same data (leave-last-out): the parent trains on
    all but the newest `new_fraction` of the training interactions, UPDATE adds them."""
    from training import hrnn
    split = leave_last_out(data)
    cut = int(np.quantile(split.train.time, 1 - new_fraction))
    older = split.train.take(np.flatnonzero(split.train.time <= cut))
    parent, parent_s, _ = train(lambda d: hrnn.fit(d, {}), older)
    update, update_s, _ = train(lambda d: hrnn.fit(d, {}, parent=parent, since=cut), split.train)
    full, full_s, _ = train(lambda d: hrnn.fit(d, {}), split.train)
    ndcg = {name: evaluate(m, split, data.n_items)["normalized_discounted_cumulative_gain_at_10"]
            for name, m in (("parent", parent), ("update", update), ("full", full))}
    return {"new_fraction": new_fraction, **{f"{k}_ndcg10": v for k, v in ndcg.items()},
            "parent_s": parent_s, "update_s": update_s, "full_s": full_s,
            "speedup": full_s / update_s, "ndcg_vs_full": ndcg["update"] / ndcg["full"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="ml-100k,ml-latest-small,diginetica-sample")
    ap.add_argument("--recipes", default="popularity,sims,sims-doc-defaults,hrnn")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    ap.add_argument("--update", default="ml-100k", help="datasets for HRNN UPDATE vs FULL ('' to skip)")
    ap.add_argument("--context", default="", help="datasets for the context protocol (e.g. ml-100k)")
    ap.add_argument("--cold", default="",
                    help="datasets with items.csv for the cold-start protocol (e.g. ml-latest-small,ml-100k)")
    ap.add_argument("--history", choices=["excluded", "kept", "both"], default="excluded",
                    help="rank the user's history out (our metrics) or in (a campaign's answer)")
    args = ap.parse_args()
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {p: {} for p in PROTOCOLS}
    rare: dict[str, dict[str, dict[str, float]]] = {}
    for ds in args.datasets.split(","):
        rare[ds] = {}
        catalogue = DATASETS / ds / "items.csv"
        items = pacsv.read_csv(catalogue) if catalogue.exists() else None
        fits = recipes(args.recipes.split(","), items)
        data = read_csv(DATASETS / ds / "interactions.csv")
        if items is not None and "similar-items" in fits:  # catalogue items nobody rated get codes too
            data = with_catalog(data, similar_items.catalogue(items))
        for protocol, make_split in PROTOCOLS.items():
            split = make_split(data)
            for name, fit in fits.items():
                model, wall, peak = train(fit, split.train)
                for exclude in HISTORY[args.history]:
                    label = name if exclude else f"{name} +history"
                    t = time.perf_counter()
                    metrics = evaluate(model, split, data.n_items, exclude_history=exclude)
                    results[protocol].setdefault(ds, {})[label] = {
                        **metrics, "users": len(split.users), "train_s": wall,
                        "eval_s": time.perf_counter() - t, "train_peak_mib": peak}
                    ndcg = metrics["normalized_discounted_cumulative_gain_at_10"]
                    print(f"{ds} {protocol} {label}: NDCG@10 {ndcg:.4f} ({wall:.1f} s)", file=sys.stderr)
                if protocol == "leave_last_out":
                    rare[ds][name] = few_interactions(model, split)
    print("\n\n".join(table(p, r) for p, r in results.items()))
    print(f"\nleave-last-out, users whose held-out item has <= {FEW} training interactions: "
          "NDCG@10 / HR@10 (users)")
    for ds, by_recipe in rare.items():
        for name, r in by_recipe.items():
            print(f"{ds:<20}{name:<18}{r['normalized_discounted_cumulative_gain_at_10']:.4f} / "
                  f"{r['hit_rate_at_10']:.4f} ({r['users']})")
    cold = {}
    for ds in filter(None, args.cold.split(",")):
        items = pacsv.read_csv(DATASETS / ds / "items.csv")
        data = with_catalog(read_csv(DATASETS / ds / "interactions.csv"), similar_items.catalogue(items))
        fits = recipes(["popularity", "similar-items", "hrnn", "hrnn-v2"], items)
        fits["metadata-popularity"] = lambda d, items=items: MetadataPopularity(d, items)
        if "hrnn-v2" in fits:  # the title as the catalogue's textual field, read word by word
            fits["hrnn-v2 + TITLE words"] = lambda d, items=items: hrnn_fit(d, items, "TITLE")
        cold[ds] = cold_start(data, fits)
        print(f"\ncold start on {ds}: 10% of the items without interactions, ranked among them: "
              "NDCG@10 / HR@10 (train s)")
        for name, r in cold[ds].items():
            print(f"  {name:<22}{r['normalized_discounted_cumulative_gain_at_10']:.4f} / "
                  f"{r['hit_rate_at_10']:.4f} ({r['train_s']:.0f} s; {r['users']} users, "
                  f"{r['cold_items']} items)")
    context = {ds: context_protocol(ds, pacsv.read_csv(DATASETS / ds / "items.csv"))
               for ds in filter(None, args.context.split(","))}
    for ds, r in context.items():
        print(f"\ncontext on {ds} (DAYPART of each rating), leave-last-out NDCG@10: "
              f"{r['without context']:.4f} without, {r['with DAYPART']:.4f} with")
    updates = {ds: update_vs_full(read_csv(DATASETS / ds / "interactions.csv"), 0.1)
               for ds in filter(None, args.update.split(","))}
    if updates:
        print("\nHRNN UPDATE (newest 10% of training interactions) vs FULL retrain, leave-last-out NDCG@10"
              "\n(goal: UPDATE >= 10x faster, NDCG@10 within 5% of FULL)")
        print(f"{'dataset':<20}{'parent':>8}{'UPDATE':>8}{'FULL':>8}{'UPDATE s':>10}{'FULL s':>8}"
              f"{'speedup':>9}{'vs FULL':>9}")
        for ds, u in updates.items():
            print(f"{ds:<20}{u['parent_ndcg10']:>8.4f}{u['update_ndcg10']:>8.4f}{u['full_ndcg10']:>8.4f}"
                  f"{u['update_s']:>10.1f}{u['full_s']:>8.1f}{u['speedup']:>8.1f}x{u['ndcg_vs_full']:>9.1%}")
    report = {"machine": f"{os.cpu_count()} cores", "reference": REFERENCE,
              "sims_defaults": sims.DEFAULTS, "sims_personalize_defaults": sims.PERSONALIZE_DEFAULTS,
              "args": {k: str(v) for k, v in vars(args).items()}, "results": results,
              "update_vs_full": updates, "few_interactions": rare, "cold_start": cold,
              "context": context}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
