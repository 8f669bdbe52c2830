#!/usr/bin/env python3
"""Prints movrek's evaluation next to the Surprise peer's on the identical split, with
differences, ratios and the issue's targets. Exit status 1 when a target is missed.

usage: compare.py OUT_DIR
OUT_DIR holds movrek.json, surprise.json, movrek.time, surprise.time (GNU time -v) and
the per-pair prediction dumps movrek_pred.csv / surprise_pred.csv.
"""

import csv
import json
import os
import re
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def peak_rss_mib(path):
    try:
        text = open(path).read()
    except OSError:
        return None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(m.group(1)) / 1024.0 if m else None


def wall_seconds(path):
    try:
        text = open(path).read()
    except OSError:
        return None
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    if not m:
        return None
    h, mnt, s = m.groups()
    return int(h or 0) * 3600 + int(mnt) * 60 + float(s)


def pair_diffs(out):
    a_path, b_path = f"{out}/movrek_pred.csv", f"{out}/surprise_pred.csv"
    if not (os.path.exists(a_path) and os.path.exists(b_path)):
        return None
    with open(a_path) as f:
        a = {(r["user"], r["movie"]): float(r["estimate"]) for r in csv.DictReader(f)}
    with open(b_path) as f:
        b = {(r["user"], r["movie"]): (float(r["estimate"]), r["actual_k"]) for r in csv.DictReader(f)}
    missing = len(set(a) ^ set(b))
    diffs = sorted(((abs(a[k] - b[k][0]), k, a[k], b[k][0], b[k][1]) for k in a if k in b), reverse=True)
    return missing, diffs


def main():
    out = sys.argv[1]
    m, s = load(f"{out}/movrek.json"), load(f"{out}/surprise.json")
    mk = next(r for r in m["rating"] if r["predictor"] == "knn-basic")
    md = next(r for r in m["rating"] if r["predictor"] == "default")
    sk = s["rating"]
    mrank = {r["ranker"]: r for r in m["ranking"]}
    srank = {r["ranker"]: r for r in s.get("ranking", [])}
    failures = []

    def row(name, a, b, note=""):
        fa = f"{a:.6f}" if isinstance(a, float) else str(a)
        fb = f"{b:.6f}" if isinstance(b, float) else str(b)
        print(f"  {name:<34} {fa:>14} {fb:>14}   {note}")

    print(f"split: {m['split']['train_ratings']} train / {m['split']['test_ratings']} test ratings "
          f"(Surprise read {s['train_ratings']} / {s['test_ratings']})")
    if (m["split"]["train_ratings"], m["split"]["test_ratings"]) != (s["train_ratings"], s["test_ratings"]):
        failures.append("the two sides did not read the same split")
    print(f"\n  {'':<34} {'movrek':>14} {'surprise':>14}   difference / ratio")
    d = mk["rmse"] - sk["rmse"]
    ok = abs(d) <= 0.005
    row("knn-basic RMSE", mk["rmse"], sk["rmse"], f"{d:+.2e}  (target |d| <= 0.005: {'PASS' if ok else 'FAIL'})")
    if not ok:
        failures.append(f"knn-basic RMSE differs by {d:+.4f}")
    row("knn-basic MAE", mk["mae"], sk["mae"], f"{mk['mae'] - sk['mae']:+.2e}")
    row("default predictor RMSE", md["rmse"], "-", f"{md['rmse'] - sk['rmse']:+.4f} vs Surprise KNNBasic")
    row("default predictor MAE", md["mae"], "-")

    pd = pair_diffs(out)
    if pd:
        missing, diffs = pd
        worst = diffs[0][0] if diffs else 0.0
        over = sum(1 for x in diffs if x[0] > 1e-4)
        print(f"  {'per-pair |estimate diff|':<34} max {worst:.2e} over {len(diffs)} pairs; "
              f"{over} pairs differ by > 1e-4; {missing} pairs on one side only")
        if over:
            print("    worst pairs (user, movie, movrek, surprise, surprise actual_k):")
            for x in diffs[:8]:
                print(f"      {x[1][0]:>7} {x[1][1]:>7} {x[2]:.6f} {x[3]:.6f} {x[4]}")

    m_fit = m["timings"]["knn_basic_fit_seconds"]
    m_pred = mk["predict_seconds"]
    s_fit, s_pred = s["fit_seconds"], sk["predict_seconds"]
    print()
    row("knn-basic fit s", m_fit, s_fit, "(movrek computes similarity rows lazily at predict time)")
    row("knn-basic predict test set s", m_pred, s_pred)
    row("knn-basic fit + predict s", m_fit + m_pred, s_fit + s_pred,
        f"Surprise / movrek = {(s_fit + s_pred) / max(m_fit + m_pred, 1e-9):.1f}x")
    row("served model train s", m["timings"]["served_train_seconds"], s_fit,
        f"vs Surprise fit: {s_fit / max(m['timings']['served_train_seconds'], 1e-9):.1f}x")
    m_rss, s_rss = peak_rss_mib(f"{out}/movrek.time"), s.get("peak_rss_mib")
    if m_rss and s_rss:
        row("peak RSS MiB (whole process)", m_rss, s_rss, "movrek: load + split + train both + rank all")
    m_wall, s_wall = wall_seconds(f"{out}/movrek.time"), wall_seconds(f"{out}/surprise.time")
    if m_wall and s_wall:
        row("wall s (whole run incl. ranking)", m_wall, s_wall, f"{s_wall / max(m_wall, 1e-9):.1f}x")

    if srank:
        print(f"\n  {'ranking (P@20 R@20 NDCG@10 cov)':<34} {'movrek':>14} {'surprise':>14}")
        for ranker in ("knn-basic", "popularity"):
            for key in ("precision", "recall", "ndcg", "coverage"):
                a, b = mrank[ranker][key], srank[ranker][key]
                row(f"{ranker} {key}", a, b, f"{a - b:+.2e}")
            row(f"{ranker} ranking s", mrank[ranker]["seconds"], srank[ranker]["seconds"])
    served, knn, pop = (mrank[r]["ndcg"] for r in ("served", "knn-basic", "popularity"))
    print(f"\n  served ranking: P@20 {mrank['served']['precision']:.4f}  R@20 {mrank['served']['recall']:.4f}  "
          f"NDCG@10 {served:.4f}  coverage {mrank['served']['coverage']:.4f}")
    ratio = served / knn if knn > 0 else float("inf")
    ok = served >= 2 * knn
    print(f"  NDCG@10 served / knn-basic ranking = {served:.4f} / {knn:.6f} = {ratio:.1f}x "
          f"(target >= 2x: {'PASS' if ok else 'FAIL'})")
    if not ok:
        failures.append("served NDCG@10 < 2x knn-basic ranking")
    ok = served >= pop
    print(f"  NDCG@10 served vs popularity = {served:.4f} vs {pop:.4f} ({served / pop:.2f}x; "
          f"target >=: {'PASS' if ok else 'FAIL'})")
    if not ok:
        failures.append("served NDCG@10 < popularity")
    if failures:
        print("\nMISSED: " + "; ".join(failures))
        sys.exit(1)
    print("\nall targets met")


if __name__ == "__main__":
    main()
