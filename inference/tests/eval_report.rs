//! End-to-end evaluation on a small synthetic set: the report is complete and consistent
//! with the models it claims to measure, serialises, prints, and charts as valid SVG.

use std::collections::HashSet;

use movrek_inference::data::synth::{SynthParams, generate};
use movrek_inference::data::{Dataset, Rating};
use movrek_inference::eval::{self, EvalError, EvalParams, EvalReport, Predictor, Ranker};
use movrek_inference::model::knn_basic::KnnBasic;

fn small_set() -> Dataset {
    generate(&SynthParams {
        users: 300,
        movies: 400,
        ratings: 12_000,
        seed: 5,
        ..SynthParams::default()
    })
}

fn report_for(data: &Dataset) -> (Dataset, Vec<Rating>, EvalReport) {
    let (train, test) = eval::split(data, 0.2, 42).unwrap();
    let report = eval::evaluate(&train, &test, &EvalParams::default()).unwrap();
    (train, test, report)
}

#[test]
fn knn_basic_error_matches_the_model_it_names() {
    let data = small_set();
    let (train, test, report) = report_for(&data);
    let knn = KnnBasic::fit(&train.ratings, train.scale, 40, 1);
    let squared: f64 = test
        .iter()
        .map(|r| (f64::from(knn.predict(r.user, r.movie)) - f64::from(r.value)).powi(2))
        .sum();
    let want = (squared / test.len() as f64).sqrt();
    let got = report.rating_of(Predictor::KnnBasic).unwrap();
    assert!((got.rmse - want).abs() < 1e-9, "{} vs {want}", got.rmse);
    assert_eq!(got.ratings, test.len());
    assert!(report.rating_of(Predictor::Default).unwrap().rmse > 0.0);
}

/// The per-user rows are the users the means were taken over: one row per scored user,
/// ascending, whose averages are the report's means; the CSV carries them all.
#[test]
fn per_user_scores_average_to_the_reported_means() {
    let data = small_set();
    let (_, _, report) = report_for(&data);
    for ranker in [Ranker::Served, Ranker::KnnBasic, Ranker::Popularity] {
        let q = report.ranking_of(ranker).unwrap();
        assert_eq!(q.per_user.len(), q.summary.users_scored, "{ranker:?}");
        assert!(q.per_user.windows(2).all(|w| w[0].0 < w[1].0), "{ranker:?}");
        let n = q.per_user.len() as f64;
        let mean = |f: fn(&eval::metrics::UserScores) -> f64| {
            q.per_user.iter().map(|(_, s)| f(s)).sum::<f64>() / n
        };
        assert!(
            (mean(|s| s.ndcg) - q.summary.ndcg).abs() < 1e-12,
            "{ranker:?}"
        );
        assert!((mean(|s| s.precision) - q.summary.precision).abs() < 1e-12);
        assert!((mean(|s| s.recall) - q.summary.recall).abs() < 1e-12);
    }
    let mut csv = Vec::new();
    report.write_per_user(&mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("ranker,user,precision,recall,ndcg"));
    let served = report.ranking_of(Ranker::Served).unwrap();
    let (user, first) = served.per_user[0];
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(row[0], "served");
    assert_eq!(row[1].parse::<u32>().unwrap(), user);
    assert_eq!(
        row[4].parse::<f64>().unwrap().to_bits(),
        (first.ndcg + 0.0).to_bits()
    );
    let scored: usize = report.ranking.iter().map(|q| q.per_user.len()).sum();
    assert_eq!(csv.lines().count(), 1 + scored);
}

#[test]
fn rankings_are_complete_and_bounded() {
    let data = small_set();
    let (train, test, report) = report_for(&data);
    assert_eq!(report.split.train_ratings, train.ratings.len());
    assert_eq!(report.split.test_ratings, test.len());
    let test_users: HashSet<u32> = test.iter().map(|r| r.user).collect();
    for ranker in [Ranker::Served, Ranker::KnnBasic, Ranker::Popularity] {
        let q = report.ranking_of(ranker).unwrap();
        let m = &q.summary;
        assert_eq!(
            m.users_scored + m.users_skipped,
            test_users.len(),
            "{ranker:?}"
        );
        assert!(m.users_scored > 0);
        for v in [m.precision, m.recall, m.ndcg, m.coverage] {
            assert!((0.0..=1.0).contains(&v), "{ranker:?}: {v}");
        }
        assert_eq!((m.k, m.ndcg_k), (20, 10));
    }
    // Popularity walks one global order skipping each user's rated movies, so it can reach
    // at most 20 + (largest train profile) distinct movies.
    let pop = &report.ranking_of(Ranker::Popularity).unwrap().summary;
    let largest_profile = (1..=300)
        .map(|u| train.ratings.iter().filter(|r| r.user == u).count())
        .max()
        .unwrap();
    let reachable = (20 + largest_profile) as f64 / report.split.catalogue as f64;
    assert!(
        pop.coverage <= reachable + 1e-12,
        "{} > {reachable}",
        pop.coverage
    );
}

#[test]
fn groups_cover_every_held_out_rating() {
    let data = small_set();
    let (_, test, report) = report_for(&data);
    for groups in [
        &report.groups.gender,
        &report.groups.age,
        &report.groups.occupation,
    ] {
        assert!(!groups.is_empty());
        assert_eq!(groups.iter().map(|g| g.ratings).sum::<usize>(), test.len());
    }
    // The synthetic set has demographics, so "unknown" must not swallow everything.
    assert!(
        report
            .groups
            .gender
            .iter()
            .any(|g| g.group == "F" || g.group == "M")
    );
}

#[test]
fn evaluation_is_deterministic() {
    let data = small_set();
    let (_, _, a) = report_for(&data);
    let (_, _, b) = report_for(&data);
    for predictor in [Predictor::KnnBasic, Predictor::Default] {
        let (x, y) = (
            a.rating_of(predictor).unwrap(),
            b.rating_of(predictor).unwrap(),
        );
        assert_eq!((x.rmse, x.mae), (y.rmse, y.mae), "{predictor:?}");
    }
    for ranker in [Ranker::Served, Ranker::KnnBasic, Ranker::Popularity] {
        assert_eq!(
            a.ranking_of(ranker).unwrap().summary,
            b.ranking_of(ranker).unwrap().summary
        );
    }
    assert_eq!(a.groups, b.groups);
}

#[test]
fn json_table_and_charts() {
    let data = small_set();
    let (_, _, report) = report_for(&data);
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["rating"][0]["predictor"], "knn-basic");
    assert_eq!(json["ranking"][1]["ranker"], "knn-basic");
    assert!(json["ranking"][0]["ndcg"].is_f64());
    assert_eq!(json["params"]["top_k"], 20);
    let table = report.to_table();
    for needle in [
        "knn-basic",
        "default",
        "served",
        "popularity",
        "NDCG@10",
        "gender=",
    ] {
        assert!(table.contains(needle), "table lacks {needle}:\n{table}");
    }

    let dir = tempfile::tempdir().unwrap();
    let files = eval::plots::write_svgs(&report, dir.path()).unwrap();
    assert_eq!(files.len(), 3);
    for file in files {
        let svg = std::fs::read_to_string(&file).unwrap();
        assert!(svg.starts_with("<svg"), "{}", file.display());
        assert_balanced(&svg);
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let data = small_set();
    let (train, test) = eval::split(&data, 0.2, 1).unwrap();
    assert!(matches!(
        eval::evaluate(&train, &[], &EvalParams::default()),
        Err(EvalError::EmptyTest)
    ));
    let mut empty = train.clone();
    empty.ratings.clear();
    assert!(matches!(
        eval::evaluate(&empty, &test, &EvalParams::default()),
        Err(EvalError::EmptyTrain)
    ));
    let params = EvalParams {
        top_k: 0,
        ..EvalParams::default()
    };
    assert!(matches!(
        eval::evaluate(&train, &test, &params),
        Err(EvalError::BadParam(_))
    ));
}

/// Checks that every element is closed in order (self-closing tags allowed) and that
/// text holds no raw `<` or unescaped `&`.
fn assert_balanced(svg: &str) {
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        check_text(&rest[..start]);
        let end = start + rest[start..].find('>').expect("unterminated tag");
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap();
            stack.push(name);
        }
        rest = &rest[end + 1..];
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn check_text(text: &str) {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity),
            "bad entity {entity}"
        );
    }
}
