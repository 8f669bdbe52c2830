//! `movrek report`: a retrained version's fairness report (`fairness.json`, as `movrek
//! retrain` publishes it) as a per-group table, candidate beside stable, and one SVG bar
//! chart per dimension. [`table`] and [`charts`] are pure; [`run`] reads the file or the
//! store object and writes.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use super::gate::{Dimension, Gap, GateFigures, GroupScore, Metric, ModelScore};
use crate::eval::plots::BarChart;
use crate::store::{FetchLimits, ObjectUri};

/// `movrek report` flags.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The fairness report: a path, `file:///path`, or a store URI
    /// (`s3://bucket/prefix/<release>/<version>/fairness.json`, `gs://…`, `az://…`).
    pub source: String,
    /// Also write `fairness-<dimension>.svg` (gender, age, occupation) into this directory.
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Deadline for reading from the store, in seconds.
    #[arg(long, env = "MOVREK_MODEL_TIMEOUT_SECS", default_value_t = 60)]
    pub timeout_secs: u64,
}

/// `fairness.json`: both models' scores on the same held-out ratings and the gate figures.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct FairnessReport {
    /// The retrained version.
    pub candidate: ModelScore,
    /// The version stable served.
    pub stable: ModelScore,
    /// The gates' figures (their gaps name each dimension's best group).
    pub gates: GateFigures,
}

impl FairnessReport {
    /// Parses `fairness.json`.
    ///
    /// # Errors
    /// Bytes that are not a fairness report, with the reason.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a fairness report: {e}"))
    }
}

/// The best group's value of `metric` in `dimension` for `model`: the group the gate named
/// best in `gaps` (only groups with enough ratings or users count there), or, when the gate
/// named none (fewer than two such groups), the best of every group with a value.
fn best(model: &ModelScore, gaps: &[Gap], dimension: Dimension, metric: Metric) -> Option<f64> {
    let named = gaps
        .iter()
        .find(|g| g.dimension == dimension && g.metric == metric)
        .and_then(|g| g.best.as_deref());
    let mut values = model
        .groups
        .iter()
        .filter(|g| g.dimension == dimension)
        .filter_map(|g| value(g, metric).map(|v| (g.group.as_str(), v)));
    if let Some(best) = named {
        return values.find(|(group, _)| *group == best).map(|(_, v)| v);
    }
    match metric {
        Metric::Rmse => values.map(|(_, v)| v).reduce(f64::min),
        Metric::Ndcg => values.map(|(_, v)| v).reduce(f64::max),
    }
}

fn value(group: &GroupScore, metric: Metric) -> Option<f64> {
    match metric {
        Metric::Rmse => group.rmse,
        Metric::Ndcg => group.ndcg,
    }
}

/// How much worse than the best group `v` is (≥ 0 unless the group is better than the
/// gate's best, which only a group too small to count can be).
fn gap_to_best(v: Option<f64>, best: Option<f64>, metric: Metric) -> Option<f64> {
    let (v, best) = (v?, best?);
    Some(match metric {
        Metric::Rmse => v - best,
        Metric::Ndcg => best - v,
    })
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"))
}

/// The groups of `dimension`, in the candidate's order, each with the stable model's row
/// for the same group (if any).
fn rows(report: &FairnessReport, dimension: Dimension) -> Vec<(&GroupScore, Option<&GroupScore>)> {
    report
        .candidate
        .groups
        .iter()
        .filter(|g| g.dimension == dimension)
        .map(|c| {
            let s = report
                .stable
                .groups
                .iter()
                .find(|s| s.dimension == dimension && s.group == c.group);
            (c, s)
        })
        .collect()
}

/// The report as a text table: the headline figures, then per dimension one line per
/// group with its users and held-out ratings, RMSE and NDCG@k of candidate (`cand`) and
/// stable (`stab`), and each model's gap to its best group in that dimension (`rgap` for
/// RMSE, `ngap` for NDCG; ≥ 0 is worse than the best group).
pub fn table(report: &FairnessReport) -> String {
    let (c, s) = (&report.candidate, &report.stable);
    let k = c.ndcg_k;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "candidate {}: RMSE {:.4}, NDCG@{k} {:.4} over {} ratings, {} users",
        c.version, c.rmse, c.ndcg, c.ratings, c.users
    );
    let _ = writeln!(
        out,
        "stable    {}: RMSE {:.4}, NDCG@{k} {:.4} over {} ratings, {} users",
        s.version, s.rmse, s.ndcg, s.ratings, s.users
    );
    for dimension in Dimension::ALL {
        let _ = writeln!(
            out,
            "\n{:<12} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            dimension.name(),
            "users",
            "ratings",
            "rmse cand",
            "rmse stab",
            "rgap cand",
            "rgap stab",
            "ndcg cand",
            "ndcg stab",
            "ngap cand",
            "ngap stab",
        );
        let (c_gaps, s_gaps) = (&report.gates.candidate_gaps, &report.gates.stable_gaps);
        let c_rmse = best(c, c_gaps, dimension, Metric::Rmse);
        let s_rmse = best(s, s_gaps, dimension, Metric::Rmse);
        let c_ndcg = best(c, c_gaps, dimension, Metric::Ndcg);
        let s_ndcg = best(s, s_gaps, dimension, Metric::Ndcg);
        for (cg, sg) in rows(report, dimension) {
            let stable = |metric| sg.and_then(|g| value(g, metric));
            let _ = writeln!(
                out,
                "{:<12} {:>6} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                cg.group,
                cg.users,
                cg.ratings,
                cell(cg.rmse),
                cell(stable(Metric::Rmse)),
                cell(gap_to_best(cg.rmse, c_rmse, Metric::Rmse)),
                cell(gap_to_best(stable(Metric::Rmse), s_rmse, Metric::Rmse)),
                cell(cg.ndcg),
                cell(stable(Metric::Ndcg)),
                cell(gap_to_best(cg.ndcg, c_ndcg, Metric::Ndcg)),
                cell(gap_to_best(stable(Metric::Ndcg), s_ndcg, Metric::Ndcg)),
            );
        }
    }
    out
}

/// One chart per dimension, named `fairness-<dimension>.svg`: a category per group, bars
/// for candidate and stable RMSE and NDCG@k (a missing figure draws a bar of height 0).
pub fn charts(report: &FairnessReport) -> Vec<(String, String)> {
    let (c, s) = (&report.candidate, &report.stable);
    let ndcg_c = format!("{} NDCG@{}", c.version, c.ndcg_k);
    let ndcg_s = format!("{} NDCG@{}", s.version, s.ndcg_k);
    let (rmse_c, rmse_s) = (format!("{} RMSE", c.version), format!("{} RMSE", s.version));
    Dimension::ALL
        .into_iter()
        .map(|dimension| {
            let rows = rows(report, dimension);
            let series = |metric, stable: bool| -> Vec<f64> {
                rows.iter()
                    .map(|(cg, sg)| {
                        let group = if stable { *sg } else { Some(*cg) };
                        group.and_then(|g| value(g, metric)).unwrap_or(f64::NAN)
                    })
                    .collect()
            };
            let title = format!(
                "RMSE and NDCG per {} group: candidate {} vs stable {}",
                dimension.name(),
                c.version,
                s.version
            );
            let svg = BarChart {
                title: &title,
                categories: rows.iter().map(|(g, _)| g.group.clone()).collect(),
                series: vec![
                    (&rmse_c, series(Metric::Rmse, false)),
                    (&rmse_s, series(Metric::Rmse, true)),
                    (&ndcg_c, series(Metric::Ndcg, false)),
                    (&ndcg_s, series(Metric::Ndcg, true)),
                ],
            }
            .render();
            (format!("fairness-{}.svg", dimension.name()), svg)
        })
        .collect()
}

/// Reads the report from a path, a `file://` URI or the store.
async fn read(source: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let Some(uri) = ObjectUri::parse(source) else {
        let path = source.strip_prefix("file://").unwrap_or(source);
        return std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
    };
    let uri = uri.map_err(|e| format!("{source}: {e}"))?;
    let limits = FetchLimits {
        timeout,
        ..FetchLimits::default()
    };
    crate::store::read(&uri, limits)
        .await
        .map_err(|e| format!("{source}: {}", crate::util::error_chain(&e)))
}

/// `movrek report`: prints [`table`], and writes [`charts`] when `--svg` is given.
///
/// # Errors
/// An unreadable source, bytes that are not a fairness report, an unwritable directory.
pub fn run(args: &ReportArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let bytes = runtime.block_on(read(&args.source, Duration::from_secs(args.timeout_secs)))?;
    let report = FairnessReport::from_slice(&bytes).map_err(|e| format!("{}: {e}", args.source))?;
    print!("{}", table(&report));
    if let Some(dir) = &args.svg {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        for (name, svg) in charts(&report) {
            let path = dir.join(name);
            std::fs::write(&path, svg)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retrain::gate::{ModelLimits, gap};

    fn group(dimension: Dimension, label: &str, rmse: f64, ndcg: f64) -> GroupScore {
        GroupScore {
            dimension,
            group: label.to_owned(),
            ratings: 100,
            rmse: Some(rmse),
            users: 20,
            ndcg: Some(ndcg),
        }
    }

    fn scored(version: &str, f: (f64, f64), m: (f64, f64)) -> ModelScore {
        let mut tiny = group(Dimension::Age, "56+", 0.5, 0.9);
        (tiny.ratings, tiny.users) = (3, 1);
        ModelScore {
            version: version.to_owned(),
            rmse: 0.9,
            ndcg: 0.3,
            ndcg_k: 10,
            ratings: 200,
            users: 40,
            groups: vec![
                group(Dimension::Gender, "F", f.0, f.1),
                group(Dimension::Gender, "M", m.0, m.1),
                group(Dimension::Age, "25-34", 0.9, 0.3),
                group(Dimension::Age, "35-44", 1.0, 0.2),
                tiny,
            ],
        }
    }

    fn report() -> FairnessReport {
        let limits = ModelLimits::default();
        let candidate = scored("r1", (0.95, 0.25), (0.90, 0.30));
        let stable = scored("v1", (1.02, 0.20), (0.95, 0.30));
        let gaps = |s: &ModelScore| {
            Dimension::ALL
                .into_iter()
                .flat_map(|d| [Metric::Rmse, Metric::Ndcg].map(|m| gap(s, d, m, &limits)))
                .collect()
        };
        FairnessReport {
            gates: GateFigures {
                candidate_rmse: candidate.rmse,
                stable_rmse: stable.rmse,
                candidate_ndcg: candidate.ndcg,
                stable_ndcg: stable.ndcg,
                candidate_gaps: gaps(&candidate),
                stable_gaps: gaps(&stable),
            },
            candidate,
            stable,
        }
    }

    fn line<'a>(table: &'a str, start: &str) -> Vec<&'a str> {
        table
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{table}"))
            .split_whitespace()
            .collect()
    }

    #[test]
    fn the_table_gives_each_group_both_models_and_its_gap_to_the_best_group() {
        let table = table(&report());
        assert!(
            table.starts_with("candidate r1: RMSE 0.9000, NDCG@10 0.3000"),
            "{table}"
        );
        // group, users, ratings, RMSE cand/stable, RMSE gaps, NDCG cand/stable, NDCG gaps.
        assert_eq!(
            line(&table, "F "),
            [
                "F", "20", "100", "0.9500", "1.0200", "0.0500", "0.0700", "0.2500", "0.2000",
                "0.0500", "0.1000"
            ]
        );
        assert_eq!(line(&table, "M ")[5..7], ["0.0000", "0.0000"]);
        // A group too small for the gate is measured against the gate's best group, so it
        // may be "better than best"; it does not become the yardstick of the others.
        assert_eq!(line(&table, "56+")[5], "-0.4000");
        assert_eq!(line(&table, "35-44")[5], "0.1000");
        // No occupation groups: the header alone.
        assert!(table.contains("\noccupation "));
    }

    #[test]
    fn without_a_gate_best_the_best_group_with_a_value_is_the_yardstick() {
        let mut report = report();
        report.gates.candidate_gaps.clear();
        assert_eq!(line(&table(&report), "56+")[5], "0.0000");
    }

    #[test]
    fn one_chart_per_dimension_with_four_bars_per_group() {
        let charts = charts(&report());
        let names: Vec<&str> = charts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "fairness-gender.svg",
                "fairness-age.svg",
                "fairness-occupation.svg"
            ]
        );
        let bars = |svg: &str| svg.matches("<title>").count();
        assert_eq!(bars(&charts[0].1), 2 * 4);
        assert_eq!(bars(&charts[1].1), 3 * 4);
        assert_eq!(bars(&charts[2].1), 0);
        assert!(
            charts[0].1.contains("<title>F v1 RMSE: 1.020</title>"),
            "{}",
            charts[0].1
        );
        assert!(charts[0].1.contains("<title>M r1 NDCG@10: 0.300</title>"));
    }

    #[test]
    fn a_file_that_is_not_a_report_is_refused_with_the_reason() {
        let error = FairnessReport::from_slice(br#"{"candidate": {}}"#).unwrap_err();
        assert!(error.starts_with("not a fairness report: "), "{error}");
    }
}
