//! `movrek online-eval` on a small hand-written log: the per-host table and the JSON
//! object match a hand computation, runtimes come from `--movies` or the stated default,
//! bad lines are counted (exit 0) and an unreadable log fails (exit 1).

use std::path::Path;
use std::process::{Command, Output};

const MOVREK: &str = env!("CARGO_BIN_EXE_movrek");

fn movrek(args: &[&str]) -> Output {
    Command::new(MOVREK)
        .args(args)
        .output()
        .expect("run movrek")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Host a:8082 shows user 1 movies 1..=20; host b:8082 shows user 2 movies 40..=59.
fn write_log(dir: &Path) -> String {
    let list_a: Vec<String> = (1..=20).map(|m| m.to_string()).collect();
    let list_b: Vec<String> = (40..=59).map(|m| m.to_string()).collect();
    let mut lines = vec![
        format!(
            "2024-05-01T12:00:00,1,recommendation request a:8082, status 200, result: {}, 8 ms",
            list_a.join(", ")
        ),
        format!(
            "2024-05-01T12:00:00Z,2,recommendation request b:8082, status 200, result: {}, 9 ms",
            list_b.join(",")
        ),
    ];
    // User 1: movie 3 (position 3) to minute 90, rated 4; movie 12 (position 12) rated 5;
    // movie 99 (not listed) to minute 10.
    for minute in [1, 45, 90] {
        lines.push(format!(
            "2024-05-01T12:{:02}:00,1,GET /data/m/3/{minute}.mpg",
            minute / 10
        ));
    }
    lines.push("2024-05-01T12:10:00,1,GET /rate/3=4".to_owned());
    lines.push("2024-05-01T12:11:00,1,GET /rate/12=5".to_owned());
    lines.push("2024-05-01T12:12:00,1,GET /data/m/99/10.mpg".to_owned());
    // User 2: movie 47 (position 8) to minute 30; movie 58 (position 19) to minute 30;
    // movie 41 rated 31 minutes after the list: outside the window.
    lines.push("2024-05-01T12:05:00,2,GET /data/m/47/30.mpg".to_owned());
    lines.push("2024-05-01T12:06:00,2,GET /data/m/58/30.mpg".to_owned());
    lines.push("2024-05-01T12:31:00,2,GET /rate/41=2".to_owned());
    // User 3 never saw a list; then a malformed line.
    lines.push("2024-05-01T12:00:00,3,GET /rate/3=5".to_owned());
    lines.push("2024-05-01T12:00:00,3,GET /nowhere".to_owned());
    let log = dir.join("events.log");
    std::fs::write(&log, lines.join("\n") + "\n").expect("write log");
    path(&log).to_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

fn row<'a>(report: &'a serde_json::Value, version: &str) -> &'a serde_json::Value {
    report["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .find(|r| r["model_version"] == version)
        .expect("row")
}

fn close(value: &serde_json::Value, want: f64) -> bool {
    value.as_f64().is_some_and(|v| (v - want).abs() < 1e-9)
}

#[test]
fn scores_per_host_with_runtimes_from_movie_metadata() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = write_log(dir.path());
    let movies = dir.path().join("movies.csv");
    std::fs::write(
        &movies,
        "movieId,title,runtime\n3,Heat,120\n99,Ran,100\n58,Up,60\n12,\"Alien, the\",90\n",
    )
    .expect("write movies");
    let report = json(&movrek(&[
        "online-eval",
        "--log",
        &log,
        "--movies",
        path(&movies),
        "--json",
    ]));
    // a: movie 3 at 90/120 = 75 % → 10 × 5, rated 4 → 10 × 0.8: 58; movie 12 rated 5 →
    // 5 × 1: 5; movie 99 at 10 % → 0.01 × 1. Three pairs, two hits.
    let a = row(&report, "a:8082");
    assert_eq!(a["scored"], 3);
    assert_eq!(a["hits"], 2);
    assert_eq!(a["hits_by_band"], serde_json::json!([1, 0, 1, 0]));
    assert!(close(&a["score_sum"], 63.01), "{a}");
    assert!(close(&a["score_sum_squares"], 58.0 * 58.0 + 25.0 + 0.0001));
    assert!(close(&a["mean_score"], 63.01 / 3.0));
    // b: movie 47 has no runtime (unscored); movie 58 at 30/60 = 50 % → 3 × 4 = 12; the
    // late rating is unattributed.
    let b = row(&report, "b:8082");
    assert_eq!(
        (&b["scored"], &b["unscored"], &b["unattributed"], &b["hits"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(1)
        )
    );
    assert!(close(&b["score_sum"], 12.0));
    let counts = &report["counts"];
    assert_eq!(counts["records"], 13);
    assert_eq!(counts["malformed"], 1);
    assert_eq!(counts["no_impression"], 1);
    assert_eq!(counts["outside_window"], 1);
    assert_eq!(counts["unknown_runtime"], 1);
    assert_eq!(counts["impressions"], 2);
    assert_eq!(report["window_seconds"], 1800);
}

#[test]
fn the_table_uses_the_stated_default_runtime() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = write_log(dir.path());
    let out = movrek(&["online-eval", "--log", &log]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("every movie 100 min"), "{table}");
    // Every runtime 100: a is unchanged (90 % and 10 %): 63.01 / 3; b: movie 47 at 30 % →
    // 8 × 3 = 24, movie 58 at 30 % → 3 × 3 = 9: mean 16.5 over 2 pairs, 1 unattributed.
    let line = |version: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(version))
            .unwrap_or_else(|| panic!("no row {version} in\n{table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        line("a:8082"),
        [
            "a:8082", "1", "3", "21.003", "32.137", "2", "0.667", "0", "0"
        ]
    );
    assert_eq!(
        line("b:8082"),
        [
            "b:8082", "1", "2", "16.500", "10.607", "2", "1.000", "1", "0"
        ]
    );
    assert!(table.contains("line 13:"), "{table}");

    let shorter = json(&movrek(&[
        "online-eval",
        "--log",
        &log,
        "--window-secs",
        "60",
        "--json",
    ]));
    // With a one-minute window only the 12:00:00 … 12:01:00 actions count: the minute-1
    // watch of movie 3 (1 % → 10 × 1).
    assert!(close(&row(&shorter, "a:8082")["score_sum"], 10.0));
    assert_eq!(shorter["counts"]["outside_window"], 8);
}

#[test]
fn an_unreadable_log_fails_with_a_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("absent.log");
    let out = movrek(&["online-eval", "--log", path(&missing)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot open") && stderr.contains("absent.log"),
        "{stderr}"
    );
    let movies = dir.path().join("movies.csv");
    std::fs::write(&movies, "movieId,title\n1,x\n").expect("write");
    let log = write_log(dir.path());
    let out = movrek(&["online-eval", "--log", &log, "--movies", path(&movies)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no runtime column"));
}
