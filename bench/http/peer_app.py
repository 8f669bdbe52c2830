"""The peer the Rust server is measured against: the original system's inference service.

Flask + Surprise, as MovRekE2E served recommendations: at start it fits
KNNBasic(k=40, min_k=1, sim_options={'name': 'cosine', 'user_based': True}) on the whole
ratings file, and `GET /recommend/<user_id>` predicts a rating for every movie the user has
not rated and answers the 20 highest, comma-separated, best first. Run it under gunicorn
with 2 workers (see bench/http.sh); `--preload` fits once before the workers fork.

Environment:
  PEER_RATINGS  ratings file: MovieLens "latest" ratings.csv (header userId,movieId,...)
                or ML-1M ratings.dat (user::movie::rating::timestamp).
"""

import os
import sys
import time

from flask import Flask, Response
from surprise import Dataset, KNNBasic, Reader


def reader_for(path):
    """Surprise reads both formats itself; raw ids are the strings found in the file."""
    if path.endswith(".csv"):
        return Reader(line_format="user item rating timestamp", sep=",", skip_lines=1,
                      rating_scale=(0.5, 5.0))
    return Reader(line_format="user item rating timestamp", sep="::", rating_scale=(1, 5))


def fit(path):
    started = time.time()
    trainset = Dataset.load_from_file(path, reader_for(path)).build_full_trainset()
    algo = KNNBasic(k=40, min_k=1, sim_options={"name": "cosine", "user_based": True},
                    verbose=False)
    algo.fit(trainset)
    print(f"peer: fitted KNNBasic on {trainset.n_ratings} ratings from {path} in "
          f"{time.time() - started:.1f} s", file=sys.stderr, flush=True)
    return trainset, algo


TRAINSET, ALGO = fit(os.environ["PEER_RATINGS"])
ALL_MOVIES = [TRAINSET.to_raw_iid(i) for i in TRAINSET.all_items()]
app = Flask(__name__)


@app.route("/recommend/<int:user_id>")
def recommend(user_id):
    user_id = str(user_id)
    try:
        rated = {TRAINSET.to_raw_iid(i) for (i, _) in TRAINSET.ur[TRAINSET.to_inner_uid(user_id)]}
    except ValueError:
        rated = set()
    predictions = [ALGO.predict(user_id, movie) for movie in ALL_MOVIES if movie not in rated]
    predictions.sort(key=lambda p: p.est, reverse=True)
    return Response(",".join(p.iid for p in predictions[:20]), mimetype="text/plain")


@app.route("/healthz")
def healthz():
    return "ok"
