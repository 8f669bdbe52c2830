#!/usr/bin/env python3
"""One simulated day of events for bench/retrain.sh, seeded.

Usage: retrain_day.py DATA_DIR SHARE BASE_DIR LOG
Copies DATA_DIR (MovieLens ml-latest-small: ratings.csv, movies.csv, ...; or the
MovieLens-1M layout `movrek generate` writes: ratings.dat, users.dat, ...) to BASE_DIR
without one rating in SHARE, and writes those ratings to LOG as one day of events in the
DESIGN.md log format, sorted by time: per held-back rating a recommendation request whose
20-item list contains the movie, 0-12 per-minute watch lines of it, then the rating (half
stars rounded to the log format's 1-5).
"""
import csv, datetime, os, random, shutil, sys

data, share, base, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
os.makedirs(base, exist_ok=True)
RATINGS = "ratings.csv" if os.path.exists(os.path.join(data, "ratings.csv")) else "ratings.dat"
for name in os.listdir(data):
    if name != RATINGS and os.path.isfile(os.path.join(data, name)):
        shutil.copy(os.path.join(data, name), base)
rng = random.Random(12)
t0 = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)


def stamp(seconds):
    return (t0 + datetime.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


movies, later = [], []
with open(os.path.join(data, RATINGS)) as f, \
        open(os.path.join(base, RATINGS), "w", newline="") as kept:
    if RATINGS == "ratings.csv":
        reader, writer = csv.reader(f), csv.writer(kept)
        writer.writerow(next(reader))
        rows, keep = reader, writer.writerow
    else:  # UserID::MovieID::Rating::Timestamp, no header
        rows = (line.rstrip("\n").split("::") for line in f)
        keep = lambda row: kept.write("::".join(row) + "\n")
    for row in rows:
        movies.append(int(row[1]))
        if rng.randrange(share) == 0:
            later.append((int(row[0]), int(row[1]), float(row[2])))
        else:
            keep(row)
out = []
for user, movie, value in later:
    at = rng.uniform(0, 86400 - 900)
    items = [movie] + rng.sample(movies, 19)
    rng.shuffle(items)
    out.append((at, f"{stamp(at)},{user},recommendation request movies:8082, status 200, "
                    f"result: {', '.join(map(str, items))}, 11 ms"))
    minutes = rng.randrange(0, 13)
    for m in range(1, minutes + 1):
        out.append((at + 60 * m, f"{stamp(at + 60 * m)},{user},GET /data/m/{movie}/{m}.mpg"))
    stars = min(5, max(1, int(value + 0.5)))
    end = at + 60 * minutes + 30
    out.append((end, f"{stamp(end)},{user},GET /rate/{movie}={stars}"))
out.sort(key=lambda e: e[0])
with open(path, "w") as f:
    f.writelines(line + "\n" for _, line in out)
