"""Scores two artifacts by a `movrek generate` world's hidden taste (bench/exposure.sh).

Per user: the mean expected rating (the generator's `3.55 + user bias + movie bias +
0.75 · taste·taste / √8`, inference/src/data/synth.rs) of the first 10 movies of the
model's list that the user has not rated in the data set nor watched or rated in the event
log. Prints both means and the paired difference (second − first) with its 95 % interval.

    truth.py MOVREK DATA_DIR EVENT_LOG NAME=ARTIFACT NAME=ARTIFACT
"""

import csv
import math
import re
import subprocess
import sys
from collections import defaultdict

TOP = 10
ACTION = re.compile(r"GET /(?:data/m/(\d+)/|rate/(\d+)=)")


def hidden_taste(data):
    users, movies = {}, {}
    with open(f"{data}/taste.csv", newline="") as f:
        for row in csv.DictReader(f):
            vector = [float(row[k]) for k in row if k.startswith("t")]
            (users if row["kind"] == "user" else movies)[int(row["id"])] = (
                float(row["bias"]),
                vector,
            )
    return users, movies


def known_movies(data, log):
    known = defaultdict(set)
    with open(f"{data}/ratings.dat") as f:
        for line in f:
            user, movie = line.split("::")[:2]
            known[int(user)].add(int(movie))
    with open(log) as f:
        for line in f:
            parts = line.split(",", 2)
            match = ACTION.match(parts[2]) if len(parts) == 3 else None
            if match:
                known[int(parts[1])].add(int(match.group(1) or match.group(2)))
    return known


def quality(movrek, artifact, users, movies, known):
    def stars(user, movie):
        (ub, ut), (mb, mt) = users[user], movies[movie]
        return 3.55 + ub + mb + 0.75 * sum(a * b for a, b in zip(ut, mt)) / math.sqrt(len(ut))

    out = []
    for user in sorted(users):
        listed = subprocess.run(
            [movrek, "recommend", "--model", artifact, "--user", str(user), "--n", str(len(movies))],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
        ids = [int(m) for m in listed.split(",") if m]
        fresh = [m for m in ids if m not in known[user]][:TOP]
        out.append(sum(stars(user, m) for m in fresh) / len(fresh) if fresh else float("nan"))
    return out


def main():
    movrek, data, log = sys.argv[1:4]
    (a_name, a_path), (b_name, b_path) = (arg.split("=", 1) for arg in sys.argv[4:6])
    users, movies = hidden_taste(data)
    known = known_movies(data, log)
    a = quality(movrek, a_path, users, movies, known)
    b = quality(movrek, b_path, users, movies, known)
    pairs = [(x, y) for x, y in zip(a, b) if not (math.isnan(x) or math.isnan(y))]
    diffs = [y - x for x, y in pairs]
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = 1.96 * sd / math.sqrt(n)
    print(
        f"hidden taste, mean expected rating of the first {TOP} unseen movies over {n} users: "
        f"{a_name} {sum(x for x, _ in pairs) / n:.4f}, {b_name} {sum(y for _, y in pairs) / n:.4f}; "
        f"{b_name} − {a_name} = {mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]"
    )


if __name__ == "__main__":
    main()
