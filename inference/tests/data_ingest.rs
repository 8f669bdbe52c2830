//! Event-log ingestion end to end: a log with every line kind, duplicates and junk goes
//! in; an ML-1M directory that `load_dir` reads back comes out, with `quality.json`.

use std::io::Cursor;

use movrek_inference::data::events::ingest;
use movrek_inference::data::load_dir;

const LOG: &[u8] = b"2024-05-01T12:00:00,10,GET /data/m/the+godfather+1972/1.mpg\r\n\
2024-05-01T12:01:00.250,10,GET /data/m/the+godfather+1972/2.mpg\r\n\
2024-05-01T12:00:30Z,10,GET /data/m/the+godfather+1972/1.mpg\r\n\
\r\n\
2024-05-01T12:02:00+00:00,10,GET /rate/the+godfather+1972=5\n\
2024-05-01T12:03:00,11,GET /data/m/42/88.mpg\n\
2024-05-01T12:04:00,11,GET /rate/42=3\n\
2024-05-01T12:05:00,11,GET /rate/42=4\n\
2024-05-01T12:06:00,11,GET /rate/42=9\n\
2024-05-01T12:07:00,12,recommendation request 127.0.0.1:8082, status 200, result: 1, 2, 3, 5 ms\n\
2024-05-01T12:08:00,12,recommendation request 127.0.0.1:8082, status 503, result: overloaded, 1 ms\n\
\xff\xfe garbage\n\
2024-05-01T12:09:00,12,GET /data/m/x/\n";

#[test]
fn ingest_writes_a_loadable_directory_and_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = ingest(Cursor::new(LOG), dir.path()).unwrap();
    assert_eq!(report.lines, 12);
    assert_eq!(
        (
            report.watch_lines,
            report.rate_lines,
            report.recommendation_lines
        ),
        (4, 3, 2)
    );
    assert_eq!((report.malformed, report.out_of_range), (2, 1));
    assert_eq!(report.malformed_examples[0].line, 12);
    assert_eq!((report.watches, report.watch_duplicates), (2, 2));
    assert_eq!((report.ratings, report.rating_duplicates), (2, 1));
    assert_eq!(report.status_codes.get(&200), Some(&1));
    assert_eq!(report.status_codes.get(&503), Some(&1));
    assert_eq!(report.short_results, 1);
    assert_eq!(report.users, 3);
    assert!(report.to_table().contains("status codes"));

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("quality.json")).unwrap()).unwrap();
    assert_eq!(json["malformed"], 2);

    let loaded = load_dir(dir.path()).unwrap();
    let data = &loaded.dataset;
    assert_eq!(loaded.report.malformed, 0, "{}", loaded.report.to_table());
    assert_eq!(loaded.report.watches, 2);
    let godfather = data
        .movies
        .iter()
        .find(|m| m.title == "the+godfather+1972")
        .unwrap();
    assert_eq!(godfather.year, Some(1972));
    let watch = data
        .watches
        .iter()
        .find(|w| w.movie == godfather.id)
        .unwrap();
    assert_eq!((watch.user, watch.minute), (10, 2));
    let rating = data.ratings.iter().find(|r| r.user == 11).unwrap();
    assert_eq!(rating.movie, 42);
    assert!((rating.value - 4.0).abs() < f32::EPSILON);
    // Users come from the log without demographics.
    assert_eq!(loaded.report.missing_demographics, 3);
    assert_eq!(loaded.report.unknown_users, 0);
}

#[test]
fn slug_ids_are_the_same_across_logs() {
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    ingest(Cursor::new(LOG), first.path()).unwrap();
    ingest(
        Cursor::new(&b"2024-06-01T00:00:00,99,GET /rate/the+godfather+1972=4\n"[..]),
        second.path(),
    )
    .unwrap();
    let id = |dir: &std::path::Path| {
        load_dir(dir)
            .unwrap()
            .dataset
            .movies
            .iter()
            .find(|m| m.title == "the+godfather+1972")
            .unwrap()
            .id
    };
    assert_eq!(id(first.path()), id(second.path()));
}

#[test]
fn an_empty_log_gives_an_empty_report_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let report = ingest(Cursor::new(&b""[..]), dir.path()).unwrap();
    assert_eq!(report.lines, 0);
    assert!(dir.path().join("quality.json").is_file());
}
