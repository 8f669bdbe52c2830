#!/usr/bin/env python3
"""Paired per-user comparison of rankings on the same split(s).

    paired.py BASE_RANKER CSV [CSV ...]

Every CSV has the columns of `movrek eval --per-user-out` (ranker,user,precision,recall,
ndcg); a CSV's rows may belong to several rankers. Each file is one seed's split: rows of one
file are paired by user, never across files. For every other ranker, and each metric, it
prints the mean of the base ranker's score minus the other's over the users both scored,
with a 95 % confidence interval: per seed, a paired t interval over that seed's users; over
all seeds, the mean of the seeds' mean differences with a t interval over seeds when there
are at least two, and the pooled per-user t interval beside it (users are not independent
across seeds, which share most of their training data, so the seed interval is the honest
one). "worse"/"better" only when the interval excludes 0.
"""

import csv
import math
import statistics
import sys
from collections import defaultdict

from scipy import stats

METRICS = ("ndcg", "precision", "recall")


def read(path):
    rows = defaultdict(dict)  # ranker -> user -> {metric: value}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows[r["ranker"]][int(r["user"])] = {m: float(r[m]) for m in METRICS}
    return rows


def t_interval(values):
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(lo, hi):
    if math.isnan(lo):
        return "-"
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "no difference shown"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    base, paths = sys.argv[1], sys.argv[2:]
    files = []
    for path in paths:
        merged = defaultdict(dict)
        for name, users in read(path).items():
            merged[name].update(users)
        files.append(merged)
    peers = sorted({name for f in files for name in f if name != base})
    print(f"{base} minus each ranker, per user (95 % intervals); {len(files)} split(s)")
    for peer in peers:
        for metric in METRICS:
            seed_means, pooled = [], []
            cells = []
            for f in files:
                if base not in f or peer not in f:
                    continue
                both = sorted(set(f[base]) & set(f[peer]))
                diffs = [f[base][u][metric] - f[peer][u][metric] for u in both]
                mean, lo, hi = t_interval(diffs)
                seed_means.append(mean)
                pooled.extend(diffs)
                cells.append(f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] n={len(diffs)}")
            if not seed_means:
                continue
            mean, lo, hi = t_interval(seed_means)
            pmean, plo, phi = t_interval(pooled)
            over = (
                f"over seeds {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] ({verdict(lo, hi)}); "
                if len(seed_means) > 1
                else ""
            )
            print(f"  vs {peer:<16} {metric:<9} {over}pooled {pmean:+.4f} [{plo:+.4f}, {phi:+.4f}] ({verdict(plo, phi)})")
            for i, cell in enumerate(cells):
                print(f"      split {i + 1}: {cell}")


if __name__ == "__main__":
    main()
