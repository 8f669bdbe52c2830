//! Loading data-set directories and single ratings files from disk: every layout, the
//! quality report's counts, and clear errors for unusable input.

use std::fs;
use std::path::Path;

use movrek_inference::data::quality::Format;
use movrek_inference::data::{AgeBucket, DataError, Gender, load_dir, load_ratings_file};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn ml100k_directory_with_malformed_lines_and_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "u.data",
        b"1\t10\t5\t100\n\
          1\t10\t3\t200\n\
          2\t10\t4\t100\n\
          2\t11\t7\t100\n\
          3\t12\t4\n\
          x\t10\t4\t100\n\
          9\t99\t2\t100\n",
    );
    write(
        dir.path(),
        "u.user",
        b"1|15|F|student|12345\n2|40|M|engineer|54321\n2|41|M|engineer|54321\n",
    );
    let genres_off = "|0".repeat(19);
    let item = format!(
        "10|Amélie (2001)|01-Jan-2001||url{genres_off}\n11|Two|01-Jan-1999||url{genres_off}\n12|Three (1990)|||url{genres_off}\n"
    );
    // Latin-1 encode the accented title, as the real 100k files are.
    let latin1: Vec<u8> = item.chars().map(|c| c as u32 as u8).collect();
    write(dir.path(), "u.item", &latin1);

    let loaded = load_dir(dir.path()).unwrap();
    let r = &loaded.report;
    assert_eq!(r.format, Format::Ml100k);
    assert_eq!(loaded.dataset.movies[0].title, "Amélie");
    assert_eq!(loaded.dataset.movies[1].year, Some(1999));
    // Lines 5 (three fields) and 6 (non-numeric user) are malformed, line 4 out of range.
    assert_eq!(r.files[0].rows, 7);
    assert_eq!(r.files[0].malformed, 2);
    assert_eq!(r.out_of_range, 1);
    let lines: Vec<u64> = r.malformed_examples.iter().map(|m| m.line).collect();
    assert_eq!(lines, vec![5, 6, 3]);
    assert_eq!(r.malformed_examples[2].file, "u.user");
    // User 1 rated movie 10 twice: the later timestamp (rating 3) wins.
    assert_eq!(r.duplicates, 1);
    let kept: Vec<(u32, u32, f32)> = loaded
        .dataset
        .ratings
        .iter()
        .map(|x| (x.user, x.movie, x.value))
        .collect();
    assert_eq!(kept, vec![(1, 10, 3.0), (2, 10, 4.0), (9, 99, 2.0)]);
    // User 9 and movie 99 are unknown: kept and counted.
    assert_eq!((r.unknown_users, r.unknown_movies), (1, 1));
    assert_eq!(r.users, 3);
    assert_eq!(r.missing_demographics, 1);
    assert_eq!(loaded.dataset.users[0].age, Some(AgeBucket::Under18));
    assert_eq!(loaded.dataset.users.len(), 2);
    assert_eq!(loaded.sha256.len(), 64);
}

#[test]
fn ml1m_directory_with_crlf_and_latin1() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ratings.dat",
        b"1::1::5::978300760\r\n1::2::3::978302109\r\n",
    );
    write(dir.path(), "users.dat", b"1::F::1::10::48067\r\n");
    write(
        dir.path(),
        "movies.dat",
        b"1::Cit\xe9 des enfants perdus, La (1995)::Adventure|Sci-Fi\r\n2::Night (1999)::Adult\r\n",
    );
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded.report.malformed, 0);
    assert_eq!(loaded.dataset.ratings.len(), 2);
    assert_eq!(
        loaded.dataset.movies[0].title,
        "Cité des enfants perdus, La"
    );
    assert_eq!(loaded.dataset.movies[0].genres, vec!["Adventure", "Sci-Fi"]);
    assert!(loaded.dataset.movies[1].adult);
    assert_eq!(loaded.dataset.users[0].gender, Some(Gender::Female));
    assert_eq!(loaded.report.missing_demographics, 0);
}

#[test]
fn latest_csv_with_imdb_join_and_half_stars() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ratings.csv",
        b"userId,movieId,rating,timestamp\n1,31,2.5,1260759144\n1,1029,0.0,1260759179\n2,31,5,1\n",
    );
    write(
        dir.path(),
        "movies.csv",
        b"movieId,title,genres\n31,Dangerous Minds (1995),Drama\n1029,\"Dumbo, \"\"The\"\" (1941)\",Animation|Children\n",
    );
    write(
        dir.path(),
        "imdb.csv",
        b"movieId,imdbRating,imdbVotes,mpaa\n31,6.1,8000,NC-17\n77,5,1,R\n1029,eleven,1,\n",
    );
    let loaded = load_dir(dir.path()).unwrap();
    let r = &loaded.report;
    assert_eq!(r.format, Format::MlLatest);
    assert_eq!(r.out_of_range, 1);
    assert!((loaded.dataset.ratings[0].value - 2.5).abs() < f32::EPSILON);
    assert_eq!(loaded.dataset.movies[1].title, "Dumbo, \"The\"");
    let minds = &loaded.dataset.movies[0];
    assert!(minds.adult);
    assert_eq!(minds.external_rating, Some(6.1));
    let imdb = r.files.iter().find(|f| f.file == "imdb.csv").unwrap();
    assert_eq!((imdb.rows, imdb.kept, imdb.malformed), (3, 1, 1));
    // No users file: every rater lacks demographics, nobody is "unknown".
    assert_eq!(
        (r.users, r.missing_demographics, r.unknown_users),
        (2, 2, 0)
    );
}

#[test]
fn invalid_utf8_in_ratings_is_a_counted_malformed_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ratings.dat",
        b"1::1::5::1\n\xff\xfe::1::5::1\n",
    );
    write(dir.path(), "movies.dat", b"1::A (2000)::Drama\n");
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded.report.malformed, 1);
    assert!(loaded.report.malformed_examples[0].reason.contains("user"));
}

#[test]
fn unusable_directories_and_files_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        load_dir(dir.path()),
        Err(DataError::UnknownLayout { .. })
    ));

    write(dir.path(), "ratings.dat", b"");
    write(dir.path(), "movies.dat", b"1::A (2000)::Drama\n");
    let err = load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::NoRatings { rows: 0, .. }), "{err}");

    write(dir.path(), "ratings.dat", b"junk\nmore junk\n");
    let err = load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("2 malformed"), "{err}");

    let empty = dir.path().join("empty.csv");
    fs::write(&empty, b"").unwrap();
    assert!(matches!(
        load_ratings_file(&empty),
        Err(DataError::UnknownFormat { .. })
    ));
    let missing = dir.path().join("missing.dat");
    assert!(matches!(
        load_ratings_file(&missing),
        Err(DataError::Read { .. })
    ));
}

#[test]
fn single_ratings_files_in_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8], Format); 3] = [
        ("a.data", b"1\t2\t3\t4\n1\t2\t4\t5\n", Format::Ml100k),
        ("a.dat", b"1::2::3::4\r\n1::2::4::5\r\n", Format::Ml1m),
        (
            "a.csv",
            b"userId,movieId,rating,timestamp\n1,2,3,4\n1,2,4,5\n",
            Format::MlLatest,
        ),
    ];
    for (name, body, format) in cases {
        let path = dir.path().join(name);
        fs::write(&path, body).unwrap();
        let (ratings, report) = load_ratings_file(&path).unwrap();
        assert_eq!(report.format, format, "{name}");
        assert_eq!(ratings.len(), 1, "{name}");
        assert!((ratings[0].value - 4.0).abs() < f32::EPSILON, "{name}");
        assert_eq!(report.duplicates, 1, "{name}");
        assert_eq!(report.users, 1, "{name}");
    }
}

#[test]
fn empty_catalogue_files_keep_ratings_as_unknown() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ratings.dat", b"1::1::5::1\n2::1::4::1\n");
    write(dir.path(), "users.dat", b"");
    write(dir.path(), "movies.dat", b"");
    let loaded = load_dir(dir.path()).unwrap();
    let r = &loaded.report;
    assert_eq!((r.ratings, r.unknown_users, r.unknown_movies), (2, 2, 2));
    assert_eq!(r.missing_demographics, 2);
}

#[test]
fn csv_headers_with_bom_are_skipped_and_garbage_first_lines_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "ratings.csv",
        b"\xEF\xBB\xBFuserId,movieId,rating,timestamp\r\n1,1,4.5,1\r\n",
    );
    write(dir.path(), "movies.csv", b"oops\n1,A (2000),Drama\n");
    let loaded = load_dir(dir.path()).unwrap();
    assert_eq!(loaded.report.files[0].malformed, 0);
    assert_eq!(loaded.report.files[1].malformed, 1);
    assert_eq!(loaded.report.malformed_examples[0].line, 1);
    assert_eq!(loaded.dataset.movies.len(), 1);
}
