#!/usr/bin/env python3
"""Surprise peer of `movrek`'s offline evaluation.

Reads the split written by movrek (`train.csv`, `test.csv`, `split.json` in one
directory), fits Surprise's KNNBasic(k=40, min_k=1, cosine, user-based) on train.csv in
file order, and prints one JSON object: RMSE/MAE on test.csv, fit and predict seconds,
peak RSS, and precision@k / recall@k / NDCG@k / coverage of two rankings computed the
way movrek computes them:

  knn-basic   every training movie the user has not rated in train, ranked by KNNBasic's
              clipped estimate (PredictionImpossible -> global mean), ties by movie id;
  popularity  training movies by number of training ratings, ties by movie id, minus
              the user's training movies.

Relevant = held-out rating >= threshold. Users with held-out ratings but no relevant one
are skipped and counted. IDCG is taken over min(k, #relevant) positions.
"""

import argparse
import csv
import heapq
import json
import math
import resource
import sys
import time
from collections import defaultdict

from surprise import Dataset, KNNBasic, Reader
from surprise.prediction_algorithms.predictions import PredictionImpossible


def read_csv(path):
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        if header[:3] != ["userId", "movieId", "rating"]:
            sys.exit(f"{path}: unexpected header {header}")
        return [(int(r[0]), int(r[1]), float(r[2])) for r in rows]


def ranking_metrics(ranked, relevant, k, ndcg_k):
    hits = sum(1 for m in ranked[:k] if m in relevant)
    dcg = sum(1.0 / math.log2(p + 2) for p, m in enumerate(ranked[:ndcg_k]) if m in relevant)
    idcg = sum(1.0 / math.log2(p + 2) for p in range(min(ndcg_k, len(relevant))))
    return hits / k, hits / len(relevant), dcg / idcg


class Sums:
    def __init__(self, k, ndcg_k):
        self.k, self.ndcg_k = k, ndcg_k
        self.p = self.r = self.n = 0.0
        self.scored = self.skipped = 0
        self.items = set()

    def add(self, ranked, relevant):
        if not relevant:
            self.skipped += 1
            return
        p, r, n = ranking_metrics(ranked, relevant, self.k, self.ndcg_k)
        self.p += p
        self.r += r
        self.n += n
        self.scored += 1
        self.items.update(ranked[: self.k])

    def summary(self, catalogue, seconds):
        d = max(self.scored, 1)
        return {
            "k": self.k,
            "ndcg_k": self.ndcg_k,
            "precision": self.p / d,
            "recall": self.r / d,
            "ndcg": self.n / d,
            "coverage": len(self.items) / catalogue if catalogue else 0.0,
            "users_scored": self.scored,
            "users_skipped": self.skipped,
            "seconds": seconds,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("split_dir")
    ap.add_argument("--k", type=int, default=40)
    ap.add_argument("--min-k", type=int, default=1)
    ap.add_argument("--top-k", type=int, default=20)
    ap.add_argument("--ndcg-k", type=int, default=10)
    ap.add_argument("--threshold", type=float, default=4.0)
    ap.add_argument("--no-ranking", action="store_true", help="RMSE/MAE and timings only")
    ap.add_argument("--test-every", type=int, default=1, metavar="N",
                    help="predict only every N-th test pair (big data: Python predicts slowly)")
    ap.add_argument("--dump-predictions", metavar="FILE",
                    help="write user,movie,actual,estimate,impossible,actual_k per test pair")
    args = ap.parse_args()

    with open(f"{args.split_dir}/split.json") as f:
        meta = json.load(f)
    scale = (meta["rating_min"], meta["rating_max"])
    reader = Reader(line_format="user item rating timestamp", sep=",", skip_lines=1,
                    rating_scale=scale)

    t0 = time.perf_counter()
    data = Dataset.load_from_file(f"{args.split_dir}/train.csv", reader=reader)
    trainset = data.build_full_trainset()
    load_seconds = time.perf_counter() - t0

    algo = KNNBasic(k=args.k, min_k=args.min_k,
                    sim_options={"name": "cosine", "user_based": True}, verbose=False)
    t0 = time.perf_counter()
    algo.fit(trainset)
    fit_seconds = time.perf_counter() - t0
    fit_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"surprise: fit {fit_seconds:.1f} s, peak RSS {fit_rss:.0f} MiB", file=sys.stderr, flush=True)

    test = read_csv(f"{args.split_dir}/test.csv")[:: args.test_every]
    t0 = time.perf_counter()
    preds = [algo.predict(str(u), str(m), r_ui=r) for u, m, r in test]
    predict_seconds = time.perf_counter() - t0
    se = sum((p.est - p.r_ui) ** 2 for p in preds)
    ae = sum(abs(p.est - p.r_ui) for p in preds)
    out = {
        "peer": "surprise",
        "surprise_version": __import__("surprise").__version__,
        "train_ratings": trainset.n_ratings,
        "test_ratings": len(test),
        "rating": {
            "predictor": "knn-basic",
            "rmse": math.sqrt(se / len(preds)),
            "mae": ae / len(preds),
            "ratings": len(preds),
            "impossible": sum(1 for p in preds if p.details.get("was_impossible")),
            "predict_seconds": predict_seconds,
        },
        "load_seconds": load_seconds,
        "fit_seconds": fit_seconds,
        "fit_peak_rss_mib": fit_rss,
        "test_every": args.test_every,
    }
    if args.dump_predictions:
        with open(args.dump_predictions, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["user", "movie", "actual", "estimate", "impossible", "actual_k"])
            for p in preds:
                w.writerow([p.uid, p.iid, p.r_ui, repr(p.est),
                            int(bool(p.details.get("was_impossible"))),
                            p.details.get("actual_k", "")])

    if not args.no_ranking:
        relevant = defaultdict(set)
        test_users = []
        for u, m, r in test:
            if u not in relevant:
                test_users.append(u)
            rel = relevant[u]
            if r >= args.threshold:
                rel.add(m)
        catalogue = meta.get("catalogue") or trainset.n_items
        lo, hi = scale
        gm = trainset.global_mean
        raw_item = [int(trainset.to_raw_iid(i)) for i in trainset.all_items()]

        # knn-basic predicted-rating ranking
        t0 = time.perf_counter()
        knn = Sums(args.top_k, args.ndcg_k)
        for u in test_users:
            if not relevant[u]:
                knn.skipped += 1
                continue
            try:
                iu = trainset.to_inner_uid(str(u))
            except ValueError:
                iu = None
            rated = {i for i, _ in trainset.ur[iu]} if iu is not None else set()
            scored = []
            for i in trainset.all_items():
                if i in rated:
                    continue
                est = gm
                if iu is not None:
                    try:
                        est, _ = algo.estimate(iu, i)
                    except PredictionImpossible:
                        est = gm
                est = min(hi, max(lo, est))
                scored.append((-est, raw_item[i]))
            ranked = [m for _, m in heapq.nsmallest(args.top_k, scored)]
            knn.add(ranked, relevant[u])
        knn_seconds = time.perf_counter() - t0

        # popularity ranking
        t0 = time.perf_counter()
        by_pop = sorted(trainset.all_items(), key=lambda i: (-len(trainset.ir[i]), raw_item[i]))
        pop = Sums(args.top_k, args.ndcg_k)
        for u in test_users:
            try:
                rated = {raw_item[i] for i, _ in trainset.ur[trainset.to_inner_uid(str(u))]}
            except ValueError:
                rated = set()
            ranked = []
            for i in by_pop:
                if raw_item[i] not in rated:
                    ranked.append(raw_item[i])
                    if len(ranked) == args.top_k:
                        break
            pop.add(ranked, relevant[u])
        pop_seconds = time.perf_counter() - t0
        out["ranking"] = [
            dict(ranker="knn-basic", **knn.summary(catalogue, knn_seconds)),
            dict(ranker="popularity", **pop.summary(catalogue, pop_seconds)),
        ]

    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
