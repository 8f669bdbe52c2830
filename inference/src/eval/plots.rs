//! Hand-written SVG charts of an [`EvalReport`]: per-group RMSE bars and metric
//! comparison bars. Plain strings, no plotting dependency.

use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};

use super::EvalError;
use super::report::{EvalReport, Predictor, Ranker};

const COLOURS: [&str; 4] = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759"];
const HEIGHT: f64 = 360.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 110.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 150.0;

/// One grouped bar chart: a bar per series inside each category (up to four series get
/// their own colour). Also drawn by `movrek report` ([`crate::retrain::report`]).
#[derive(Debug)]
pub(crate) struct BarChart<'a> {
    pub(crate) title: &'a str,
    pub(crate) categories: Vec<String>,
    /// (series name, one value per category; a non-finite value draws a bar of height 0)
    pub(crate) series: Vec<(&'a str, Vec<f64>)>,
}

/// Escapes text for XML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A round upper bound for the y axis (1, 2 or 5 × 10^n) at or above `max`.
fn axis_max(max: f64) -> f64 {
    if max.is_nan() || max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&v| v >= max)
        .unwrap_or(10.0 * magnitude)
}

impl BarChart<'_> {
    /// The chart as a standalone SVG document.
    pub(crate) fn render(&self) -> String {
        let n_series = self.series.len().max(1);
        let group_width = (18.0 * n_series as f64 + 16.0).max(48.0);
        let plot_width = group_width * self.categories.len().max(1) as f64;
        let width = LEFT + plot_width + RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let max = self
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .filter(|v| v.is_finite())
            .fold(0.0, f64::max);
        let y_max = axis_max(max);
        let y = |v: f64| TOP + plot_height * (1.0 - v / y_max);

        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{HEIGHT:.0}" viewBox="0 0 {width:.0} {HEIGHT:.0}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="22" font-size="14" text-anchor="middle">{}</text>"#,
            width / 2.0,
            escape(self.title)
        );
        for tick in 0..=5 {
            let v = y_max * f64::from(tick) / 5.0;
            let ty = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{ty:.1}" x2="{:.1}" y2="{ty:.1}" stroke="#ddd"/>"##,
                LEFT + plot_width
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                ty + 4.0,
                format_value(v)
            );
        }
        for (ci, category) in self.categories.iter().enumerate() {
            let gx = LEFT + group_width * ci as f64;
            for (si, (name, values)) in self.series.iter().enumerate() {
                let v = values.get(ci).copied().unwrap_or(0.0);
                let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
                let x = gx + 8.0 + 18.0 * si as f64;
                let top = y(v);
                let _ = writeln!(
                    s,
                    r#"<rect x="{x:.1}" y="{top:.1}" width="16" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    TOP + plot_height - top,
                    COLOURS[si % COLOURS.len()],
                    escape(&format!("{category} {name}")),
                    format_value(v)
                );
            }
            let lx = gx + group_width / 2.0;
            let ly = TOP + plot_height + 12.0;
            let _ = writeln!(
                s,
                r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-40 {lx:.1} {ly:.1})">{}</text>"#,
                escape(category)
            );
        }
        let _ = writeln!(
            s,
            r#"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="black"/>"#,
            TOP + plot_height,
            LEFT + plot_width,
            TOP + plot_height
        );
        for (si, (name, _)) in self.series.iter().enumerate() {
            let ly = TOP + 16.0 * si as f64;
            let lx = LEFT + plot_width + 16.0;
            let _ = writeln!(
                s,
                r#"<rect x="{lx:.1}" y="{ly:.1}" width="12" height="12" fill="{}"/>"#,
                COLOURS[si % COLOURS.len()]
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 18.0,
                ly + 10.0,
                escape(name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn format_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 0.01 {
        format!("{v:.4}")
    } else {
        format!("{v:.3}")
    }
}

/// Per-group RMSE chart: one category per (dimension, group), bars for both predictors.
fn group_chart(report: &EvalReport) -> String {
    let mut categories = Vec::new();
    let (mut default, mut knn) = (Vec::new(), Vec::new());
    for (dimension, groups) in [
        ("gender", &report.groups.gender),
        ("age", &report.groups.age),
        ("occupation", &report.groups.occupation),
    ] {
        for g in groups {
            categories.push(format!("{dimension}={}", g.group));
            default.push(g.rmse_default);
            knn.push(g.rmse_knn_basic);
        }
    }
    BarChart {
        title: "RMSE per group (held-out ratings)",
        categories,
        series: vec![
            (Predictor::Default.label(), default),
            (Predictor::KnnBasic.label(), knn),
        ],
    }
    .render()
}

/// Ranking comparison chart: precision, recall, NDCG and coverage per ranker.
fn ranking_chart(report: &EvalReport) -> String {
    let (k, nk) = report
        .ranking
        .first()
        .map_or((0, 0), |r| (r.summary.k, r.summary.ndcg_k));
    let categories = vec![
        format!("precision@{k}"),
        format!("recall@{k}"),
        format!("NDCG@{nk}"),
        "coverage".to_owned(),
    ];
    let series = [Ranker::Served, Ranker::KnnBasic, Ranker::Popularity]
        .into_iter()
        .filter_map(|ranker| report.ranking_of(ranker))
        .map(|r| {
            let m = &r.summary;
            (
                r.ranker.label(),
                vec![m.precision, m.recall, m.ndcg, m.coverage],
            )
        })
        .collect();
    BarChart {
        title: "Ranking quality (held-out ratings ≥ threshold)",
        categories,
        series,
    }
    .render()
}

/// Rating-error chart: RMSE and MAE per predictor.
fn rating_chart(report: &EvalReport) -> String {
    let series = report
        .rating
        .iter()
        .map(|r| (r.predictor.label(), vec![r.rmse, r.mae]))
        .collect();
    BarChart {
        title: "Rating error (held-out ratings)",
        categories: vec!["RMSE".to_owned(), "MAE".to_owned()],
        series,
    }
    .render()
}

/// Writes `group_rmse.svg`, `ranking.svg` and `rating_error.svg` into `dir` (created if
/// needed) and returns their paths.
pub fn write_svgs(report: &EvalReport, dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    fs::create_dir_all(dir).map_err(|source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let charts = [
        ("group_rmse.svg", group_chart(report)),
        ("ranking.svg", ranking_chart(report)),
        ("rating_error.svg", rating_chart(report)),
    ];
    let mut written = Vec::with_capacity(charts.len());
    for (name, svg) in charts {
        let path = dir.join(name);
        fs::write(&path, svg).map_err(|source| EvalError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_max_rounds_up_to_1_2_5() {
        assert!((axis_max(0.83) - 1.0).abs() < 1e-12);
        assert!((axis_max(1.2) - 2.0).abs() < 1e-12);
        assert!((axis_max(0.031) - 0.05).abs() < 1e-12);
        assert!((axis_max(0.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn escapes_markup_in_labels() {
        assert_eq!(escape(r#"a<b>&"c'"#), "a&lt;b&gt;&amp;&quot;c&apos;");
        let chart = BarChart {
            title: "t",
            categories: vec!["R&D <x>".to_owned()],
            series: vec![("s", vec![0.5])],
        };
        let svg = chart.render();
        assert!(svg.contains("R&amp;D &lt;x&gt;"));
        assert!(!svg.contains("R&D"));
    }

    #[test]
    fn bar_height_is_proportional_to_value() {
        let chart = BarChart {
            title: "t",
            categories: vec!["a".to_owned(), "b".to_owned()],
            series: vec![("s", vec![1.0, 0.5])],
        };
        let svg = chart.render();
        let heights: Vec<f64> = svg
            .lines()
            .filter(|l| l.starts_with("<rect x") && l.contains("<title>"))
            .map(|l| {
                let start = l.find("height=\"").unwrap() + 8;
                let end = start + l[start..].find('"').unwrap();
                l[start..end].parse().unwrap()
            })
            .collect();
        assert_eq!(heights.len(), 2);
        assert!((heights[0] - 2.0 * heights[1]).abs() < 0.2, "{heights:?}");
    }
}
