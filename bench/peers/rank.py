#!/usr/bin/env python3
"""Learned-weight peers of movrek's served ranking, on the split `movrek eval --split-out`
wrote (train.csv, test.csv, split.json in one directory).

  ease        EASE^R (Steck, WWW 2019) in its textbook form: dense closed form over every
              movie with a training rating, B = -P / diag(P) with P = (X^T X + lambda I)^-1,
              diag(B) = 0, on the binary user x movie matrix X (numpy/scipy).
  als         implicit ALS (Hu, Koren, Volinsky, ICDM 2008) from the `implicit` package on
              the same binary X, confidence 1 + alpha.
  ease-liked  EASE^R fitted and scored on the liked ratings only (>= 4): which movies a user
              rates may follow popularity while how they rate follows taste, and the binary
              matrix of every rating cannot tell the two apart. Rated movies stay excluded.
  popularity  training movies by number of ratings, ties by movie id.

Hyper-parameters are chosen as movrek chooses its own: on a validation split carved from
train.csv (10 % of the training ratings of at most 5,000 users, seeded), by NDCG@10 of the
validation lists; the chosen model is then refit on all of train.csv. The test split is only
read to score the final lists.

The protocol is movrek's (`movrek eval`): for each test user, the top 20 movies they have not
rated in train.csv, best first, ties by ascending movie id; a held-out rating >= 4 is
relevant; users with held-out ratings but no relevant one are skipped; precision@20,
recall@20, NDCG@10 (IDCG over min(10, #relevant) positions); coverage = distinct movies in
the scored users' lists / the catalogue size in split.json.

Prints one JSON object per algorithm and writes DIR/peer-ALGO.csv with the columns of
`movrek eval --per-user-out` (ranker,user,precision,recall,ndcg), ranker = "ALGO-peer".
"""

import argparse
import csv
import json
import math
import os
import sys
import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp

K, NDCG_K, THRESHOLD = 20, 10, 4.0


def read_ratings(path):
    with open(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows)
        if header[:3] != ["userId", "movieId", "rating"]:
            sys.exit(f"{path}: unexpected header {header}")
        return [(int(r[0]), int(r[1]), float(r[2])) for r in rows]


class Interactions:
    """Binary user x movie matrix of a list of ratings, over a fixed movie index."""

    def __init__(self, ratings, movies):
        self.users = sorted({u for u, _, _ in ratings})
        self.user_index = {u: i for i, u in enumerate(self.users)}
        self.movies = movies
        self.movie_index = {m: j for j, m in enumerate(movies)}
        rows = [self.user_index[u] for u, m, _ in ratings if m in self.movie_index]
        cols = [self.movie_index[m] for _, m, _ in ratings if m in self.movie_index]
        data = np.ones(len(rows), dtype=np.float32)
        x = sp.csr_matrix((data, (rows, cols)), shape=(len(self.users), len(movies)))
        x.data[:] = 1.0  # duplicates summed by the constructor: binary again
        self.x = x


def top_lists(scores, x_rows, movies, n):
    """Top `n` movie ids per row of `scores` (dense, rows aligned with `x_rows`), the row's
    rated movies excluded, ties by ascending movie id (`movies` is ascending, so column
    order is id order)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    lists = []
    for r in range(scores.shape[0]):
        row = scores[r]
        row[x_rows[r].indices] = -np.inf
        if row.size > n:
            nth = np.partition(row, row.size - n)[row.size - n]  # the n-th largest score
            pool = np.flatnonzero(row >= nth)  # every movie tied with it, too
        else:
            pool = np.arange(row.size)
        pool = pool[np.isfinite(row[pool])]
        pool = pool[np.lexsort((pool, -row[pool]))]
        lists.append([movies[j] for j in pool[:n]])
    return lists


def metrics(ranked, relevant):
    hits = sum(1 for m in ranked[:K] if m in relevant)
    dcg = sum(1.0 / math.log2(p + 2) for p, m in enumerate(ranked[:NDCG_K]) if m in relevant)
    idcg = sum(1.0 / math.log2(p + 2) for p in range(min(NDCG_K, len(relevant))))
    return hits / K, hits / len(relevant), dcg / idcg


def relevant_by_user(ratings):
    relevant = {}
    for u, m, v in ratings:
        relevant.setdefault(u, set())
        if v >= THRESHOLD:
            relevant[u].add(m)
    return relevant


def score_lists(lists_by_user, relevant):
    """Per-user (precision, recall, ndcg) for users with a relevant item, and the recommended set."""
    per_user, seen = {}, set()
    for u in sorted(relevant):
        if not relevant[u]:
            continue
        ranked = lists_by_user.get(u, [])
        per_user[u] = metrics(ranked, relevant[u])
        seen.update(ranked[:K])
    return per_user, seen


def mean_ndcg(per_user):
    return sum(s[2] for s in per_user.values()) / max(1, len(per_user))


# --- the models: fit(train ratings, movies, params) -> function(users) -> {user: list} ----------


def ease_fit(inter, lam):
    g = (inter.x.T @ inter.x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += lam
    p = scipy.linalg.inv(g, overwrite_a=True, check_finite=False)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


def ease_lists(inter, b, users, scored_by=None):
    """Lists from weights `b`; scores from the rows of `scored_by` (default `inter`, whose
    rows are also what is excluded)."""
    scored_by = scored_by or inter
    known = [u for u in users if u in inter.user_index]
    rows = [inter.user_index[u] for u in known]
    x = inter.x[rows]
    if scored_by is inter:
        history = x
    else:  # a user with no liked rating scores nothing: an empty row
        blank = sp.csr_matrix((1, x.shape[1]), dtype=np.float32)
        picked = [scored_by.user_index.get(u) for u in known]
        history = sp.vstack([blank if i is None else scored_by.x[i] for i in picked]).tocsr()
    scores = history @ b
    lists = top_lists(scores, x, inter.movies, K)
    return dict(zip(known, lists))


def liked(ratings):
    return [r for r in ratings if r[2] >= THRESHOLD]


def als_fit(inter, params, seed):
    from implicit.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=params["factors"],
        regularization=params["regularization"],
        alpha=params["alpha"],
        iterations=params["iterations"],
        random_state=seed,
        calculate_training_loss=False,
    )
    model.fit(inter.x.tocsr(), show_progress=False)
    return model


def als_lists(inter, model, users):
    known = [u for u in users if u in inter.user_index]
    rows = np.array([inter.user_index[u] for u in known])
    scores = model.user_factors[rows] @ model.item_factors.T
    lists = top_lists(np.asarray(scores), inter.x[rows], inter.movies, K)
    return dict(zip(known, lists))


def popularity_lists(train, users):
    counts = {}
    for _, m, _ in train:
        counts[m] = counts.get(m, 0) + 1
    order = sorted(counts, key=lambda m: (-counts[m], m))
    rated = {}
    for u, m, _ in train:
        rated.setdefault(u, set()).add(m)
    out = {}
    for u in users:
        seen = rated.get(u, set())
        out[u] = [m for m in order if m not in seen][:K]
    return out


ALS_GRID = [
    {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
    for f in (64, 128)
    for r in (0.1, 1.0, 10.0)
    for a in (1.0, 10.0)
]
EASE_LAMBDAS = [100.0, 250.0, 500.0, 1000.0, 2000.0]


def carve_validation(train, seed):
    """10 % of the training ratings of at most 5,000 users (seeded), as movrek does."""
    rng = np.random.default_rng(seed)
    users = sorted({u for u, _, _ in train})
    if len(users) > 5000:
        users = sorted(rng.choice(users, 5000, replace=False).tolist())
    chosen = set(users)
    fit, held = [], []
    draws = rng.random(len(train))
    for (u, m, v), d in zip(train, draws):
        (held if u in chosen and d < 0.1 else fit).append((u, m, v))
    return fit, held


def choose(algo, train, movies, seed):
    """Candidates scored by validation NDCG@10; returns (best params, [(params, ndcg)])."""
    fit, held = carve_validation(train, seed)
    inter = Interactions(fit, movies)
    relevant = relevant_by_user(held)
    users = [u for u in sorted(relevant) if relevant[u]]
    tried = []
    if algo in ("ease", "ease-liked"):
        fitted = Interactions(liked(fit), movies) if algo == "ease-liked" else inter
        for lam in EASE_LAMBDAS:
            b = ease_fit(fitted, lam)
            per_user, _ = score_lists(ease_lists(inter, b, users, fitted), relevant)
            tried.append(({"lambda": lam}, mean_ndcg(per_user)))
    elif algo == "als":
        for params in ALS_GRID:
            model = als_fit(inter, params, seed)
            per_user, _ = score_lists(als_lists(inter, model, users), relevant)
            tried.append((params, mean_ndcg(per_user)))
    best = max(tried, key=lambda t: t[1])[0]
    return best, tried


def run(algo, split_dir, seed):
    started = time.time()
    train = read_ratings(os.path.join(split_dir, "train.csv"))
    test = read_ratings(os.path.join(split_dir, "test.csv"))
    with open(os.path.join(split_dir, "split.json")) as f:
        catalogue = json.load(f)["catalogue"]
    movies = sorted({m for _, m, _ in train})
    relevant = relevant_by_user(test)
    users = sorted(relevant)
    params, tried = None, []
    inter = Interactions(train, movies)
    if algo == "ease":
        params, tried = choose(algo, train, movies, seed)
        lists = ease_lists(inter, ease_fit(inter, params["lambda"]), users)
    elif algo == "ease-liked":
        params, tried = choose(algo, train, movies, seed)
        fitted = Interactions(liked(train), movies)
        lists = ease_lists(inter, ease_fit(fitted, params["lambda"]), users, fitted)
    elif algo == "als":
        params, tried = choose(algo, train, movies, seed)
        lists = als_lists(inter, als_fit(inter, params, seed), users)
    elif algo == "popularity":
        lists = popularity_lists(train, users)
    else:
        sys.exit(f"unknown algorithm {algo}")
    per_user, seen = score_lists(lists, relevant)
    label = f"{algo}-peer"
    with open(os.path.join(split_dir, f"peer-{algo}.csv"), "w") as f:
        f.write("ranker,user,precision,recall,ndcg\n")
        for u, (p, r, n) in sorted(per_user.items()):
            f.write(f"{label},{u},{p!r},{r!r},{n!r}\n")
    n = max(1, len(per_user))
    return {
        "ranker": label,
        "params": params,
        "validation": [{"params": p, "ndcg": s} for p, s in tried],
        "precision": sum(s[0] for s in per_user.values()) / n,
        "recall": sum(s[1] for s in per_user.values()) / n,
        "ndcg": sum(s[2] for s in per_user.values()) / n,
        "coverage": len(seen) / catalogue if catalogue else 0.0,
        "users_scored": len(per_user),
        "seconds": time.time() - started,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("split_dir")
    ap.add_argument("--algo", default="ease,als,popularity", help="comma-separated: ease, ease-liked, als, popularity")
    ap.add_argument("--seed", type=int, default=42, help="seed of the validation split and of ALS")
    args = ap.parse_args()
    for algo in args.algo.split(","):
        print(json.dumps(run(algo, args.split_dir, args.seed)), flush=True)


if __name__ == "__main__":
    main()
