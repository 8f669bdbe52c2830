//! The retraining loop's two decisions, pure: may the new data be trained on
//! ([`judge_data`]), and may the trained candidate be published ([`judge_model`]). Each
//! takes figures and limits and returns a typed verdict that carries the figures it judged,
//! so the notification and the published report say exactly why.

use serde::{Deserialize, Serialize};

/// Limits on the events read since the last training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataLimits {
    /// Largest share of malformed lines among the lines read (0.05).
    pub max_malformed_share: f64,
    /// Smallest ratio of this window's event rate (lines per hour) to the previous
    /// window's; below it the volume has collapsed (0.2). Not checked without a previous
    /// window.
    pub min_volume_ratio: f64,
    /// Largest share of new ratings by users the previous data set does not know (0.5).
    pub max_unknown_user_share: f64,
    /// Largest share of new ratings of movies the previous data set does not know (0.5).
    pub max_unknown_movie_share: f64,
    /// Fewest new ratings held out to compare the models on (50): fewer cannot judge.
    pub min_test_ratings: usize,
}

impl Default for DataLimits {
    fn default() -> Self {
        DataLimits {
            max_malformed_share: 0.05,
            min_volume_ratio: 0.2,
            max_unknown_user_share: 0.5,
            max_unknown_movie_share: 0.5,
            min_test_ratings: 50,
        }
    }
}

/// What was read since the last training, after deduplication against the previous data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EventFigures {
    /// Non-blank lines (records) read in the window.
    pub lines: u64,
    /// Lines dropped as malformed.
    pub malformed: u64,
    /// Ratings outside the scale (dropped, not malformed).
    pub out_of_range: u64,
    /// Ratings of (user, movie) pairs the previous data set did not hold.
    pub new_ratings: u64,
    /// Ratings that replace an older rating of the same pair.
    pub updated_ratings: u64,
    /// Watch records of pairs not watched before.
    pub new_watches: u64,
    /// New ratings by users the previous data set does not know.
    pub unknown_users: u64,
    /// New ratings of movies the previous data set does not know.
    pub unknown_movies: u64,
    /// New ratings held out for the comparison.
    pub test_ratings: u64,
    /// Length of the window in hours, when known (`None` for files without a previous
    /// window).
    pub window_hours: Option<f64>,
}

impl EventFigures {
    /// Lines per hour, when the window's length is known and positive.
    pub fn rate(&self) -> Option<f64> {
        self.window_hours
            .filter(|h| *h > 0.0)
            .map(|h| self.lines as f64 / h)
    }

    /// True when the window brought nothing to learn from.
    pub fn is_empty(&self) -> bool {
        self.new_ratings == 0 && self.updated_ratings == 0 && self.new_watches == 0
    }
}

/// One broken data limit, with the figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "limit", rename_all = "kebab-case")]
pub enum DataBreach {
    /// Too many malformed lines.
    Malformed {
        /// Observed share.
        share: f64,
        /// Limit.
        max: f64,
    },
    /// The event rate collapsed against the previous window.
    VolumeCollapse {
        /// Lines per hour now.
        rate: f64,
        /// Lines per hour in the previous window.
        previous_rate: f64,
        /// Smallest allowed ratio.
        min_ratio: f64,
    },
    /// Too many ratings by unknown users.
    UnknownUsers {
        /// Observed share.
        share: f64,
        /// Limit.
        max: f64,
    },
    /// Too many ratings of unknown movies.
    UnknownMovies {
        /// Observed share.
        share: f64,
        /// Limit.
        max: f64,
    },
    /// Too few new ratings to hold out for the comparison.
    TooFewTestRatings {
        /// Held out.
        held_out: u64,
        /// Needed.
        min: usize,
    },
}

impl std::fmt::Display for DataBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataBreach::Malformed { share, max } => write!(
                f,
                "malformed lines {:.2} % > {:.2} %",
                share * 100.0,
                max * 100.0
            ),
            DataBreach::VolumeCollapse {
                rate,
                previous_rate,
                min_ratio,
            } => write!(
                f,
                "event volume collapsed: {rate:.1} lines/h against {previous_rate:.1} before \
                 (ratio {:.3} < {min_ratio})",
                rate / previous_rate
            ),
            DataBreach::UnknownUsers { share, max } => write!(
                f,
                "ratings by unknown users {:.2} % > {:.2} %",
                share * 100.0,
                max * 100.0
            ),
            DataBreach::UnknownMovies { share, max } => write!(
                f,
                "ratings of unknown movies {:.2} % > {:.2} %",
                share * 100.0,
                max * 100.0
            ),
            DataBreach::TooFewTestRatings { held_out, min } => write!(
                f,
                "only {held_out} new ratings held out, {min} needed to compare the models"
            ),
        }
    }
}

/// Whether to train on the window's data.
#[derive(Clone, Debug, PartialEq)]
pub enum DataVerdict {
    /// No new rating or watch: no new version.
    NothingToDo,
    /// The data keeps every limit.
    Train,
    /// At least one limit is broken; every broken one is listed.
    Refuse(Vec<DataBreach>),
}

/// Judges the window: nothing new → [`DataVerdict::NothingToDo`]; otherwise every limit is
/// checked and all breaches are reported. A share is over the limit when strictly greater;
/// the volume ratio fails when strictly smaller.
pub fn judge_data(
    now: &EventFigures,
    previous: Option<&EventFigures>,
    limits: &DataLimits,
) -> DataVerdict {
    if now.is_empty() && now.malformed == 0 {
        return DataVerdict::NothingToDo;
    }
    let mut breaches = Vec::new();
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    let malformed = share(now.malformed, now.lines);
    if malformed > limits.max_malformed_share {
        breaches.push(DataBreach::Malformed {
            share: malformed,
            max: limits.max_malformed_share,
        });
    }
    if let (Some(rate), Some(previous_rate)) = (now.rate(), previous.and_then(EventFigures::rate))
        && previous_rate > 0.0
        && rate / previous_rate < limits.min_volume_ratio
    {
        breaches.push(DataBreach::VolumeCollapse {
            rate,
            previous_rate,
            min_ratio: limits.min_volume_ratio,
        });
    }
    let users = share(now.unknown_users, now.new_ratings);
    if users > limits.max_unknown_user_share {
        breaches.push(DataBreach::UnknownUsers {
            share: users,
            max: limits.max_unknown_user_share,
        });
    }
    let movies = share(now.unknown_movies, now.new_ratings);
    if movies > limits.max_unknown_movie_share {
        breaches.push(DataBreach::UnknownMovies {
            share: movies,
            max: limits.max_unknown_movie_share,
        });
    }
    if now.test_ratings < limits.min_test_ratings as u64 {
        breaches.push(DataBreach::TooFewTestRatings {
            held_out: now.test_ratings,
            min: limits.min_test_ratings,
        });
    }
    if breaches.is_empty() {
        DataVerdict::Train
    } else {
        DataVerdict::Refuse(breaches)
    }
}

/// Limits on the candidate against stable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelLimits {
    /// The candidate's RMSE must be below this (1.0, the original rule).
    pub max_rmse: f64,
    /// The candidate's NDCG@10 may be below stable's by at most this (0.02).
    pub ndcg_tolerance: f64,
    /// Per dimension, the candidate's worst-to-best RMSE gap may exceed stable's by at most
    /// this (0.05).
    pub rmse_gap_tolerance: f64,
    /// Per dimension, the candidate's best-to-worst NDCG gap may exceed stable's by at most
    /// this (0.05).
    pub ndcg_gap_tolerance: f64,
    /// A group counts in the RMSE gap with at least this many held-out ratings (30).
    pub min_group_ratings: usize,
    /// A group counts in the NDCG gap with at least this many ranked users (10).
    pub min_group_users: usize,
}

impl Default for ModelLimits {
    fn default() -> Self {
        ModelLimits {
            max_rmse: 1.0,
            ndcg_tolerance: 0.02,
            rmse_gap_tolerance: 0.05,
            ndcg_gap_tolerance: 0.05,
            min_group_ratings: 30,
            min_group_users: 10,
        }
    }
}

/// A demographic dimension of the fairness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dimension {
    /// `F`, `M`, `unknown`.
    Gender,
    /// Age buckets.
    Age,
    /// Occupations.
    Occupation,
}

impl Dimension {
    /// Every dimension, in report order.
    pub const ALL: [Dimension; 3] = [Dimension::Gender, Dimension::Age, Dimension::Occupation];

    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Gender => "gender",
            Dimension::Age => "age",
            Dimension::Occupation => "occupation",
        }
    }
}

/// A metric of the fairness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Root mean squared error (lower is better).
    Rmse,
    /// NDCG@k (higher is better).
    Ndcg,
}

/// One group's figures for one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupScore {
    /// Dimension.
    pub dimension: Dimension,
    /// Group label (`F`, `25-34`, `engineer`, `unknown`).
    pub group: String,
    /// Held-out ratings of the group's users.
    pub ratings: usize,
    /// RMSE over them (`None` without ratings).
    pub rmse: Option<f64>,
    /// Users ranked (with at least one relevant held-out rating).
    pub users: usize,
    /// Mean NDCG@k over them (`None` without users).
    pub ndcg: Option<f64>,
}

/// One model's offline figures on the held-out ratings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelScore {
    /// Model version.
    pub version: String,
    /// RMSE over every held-out rating.
    pub rmse: f64,
    /// Mean NDCG@k over every ranked user.
    pub ndcg: f64,
    /// The cut-off `k`.
    pub ndcg_k: usize,
    /// Held-out ratings.
    pub ratings: usize,
    /// Users ranked.
    pub users: usize,
    /// Per group, every dimension.
    pub groups: Vec<GroupScore>,
}

/// Worst-to-best gap of one metric in one dimension, for one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// Dimension.
    pub dimension: Dimension,
    /// Metric.
    pub metric: Metric,
    /// Worst group minus best group, in the metric's "worse" direction (≥ 0); 0 with
    /// fewer than two eligible groups.
    pub gap: f64,
    /// The worst group's label.
    pub worst: Option<String>,
    /// The best group's label.
    pub best: Option<String>,
}

/// The gap of `metric` in `dimension`, over groups with enough ratings or users.
pub fn gap(score: &ModelScore, dimension: Dimension, metric: Metric, limits: &ModelLimits) -> Gap {
    let values: Vec<(&str, f64)> = score
        .groups
        .iter()
        .filter(|g| g.dimension == dimension)
        .filter_map(|g| match metric {
            Metric::Rmse => g
                .rmse
                .filter(|_| g.ratings >= limits.min_group_ratings)
                .map(|v| (g.group.as_str(), v)),
            Metric::Ndcg => g
                .ndcg
                .filter(|_| g.users >= limits.min_group_users)
                .map(|v| (g.group.as_str(), v)),
        })
        .collect();
    // "Worse" is a higher RMSE or a lower NDCG; flip NDCG so one comparison serves both.
    let badness = |v: f64| match metric {
        Metric::Rmse => v,
        Metric::Ndcg => -v,
    };
    let worst = values
        .iter()
        .max_by(|a, b| badness(a.1).total_cmp(&badness(b.1)));
    let best = values
        .iter()
        .min_by(|a, b| badness(a.1).total_cmp(&badness(b.1)));
    match (worst, best) {
        (Some(w), Some(b)) if values.len() >= 2 => Gap {
            dimension,
            metric,
            gap: badness(w.1) - badness(b.1),
            worst: Some(w.0.to_owned()),
            best: Some(b.0.to_owned()),
        },
        _ => Gap {
            dimension,
            metric,
            gap: 0.0,
            worst: None,
            best: None,
        },
    }
}

/// The gate figures: both models' headline numbers and every gap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateFigures {
    /// Candidate RMSE.
    pub candidate_rmse: f64,
    /// Stable RMSE on the same ratings.
    pub stable_rmse: f64,
    /// Candidate NDCG@k.
    pub candidate_ndcg: f64,
    /// Stable NDCG@k on the same users.
    pub stable_ndcg: f64,
    /// Candidate gaps, per dimension and metric.
    pub candidate_gaps: Vec<Gap>,
    /// Stable gaps, in the same order.
    pub stable_gaps: Vec<Gap>,
}

impl GateFigures {
    /// The largest growth of any gap (candidate minus stable), with its dimension and
    /// metric; the "worst fairness gap" of the history.
    pub fn worst_gap_growth(&self) -> Option<(Dimension, Metric, f64)> {
        self.candidate_gaps
            .iter()
            .zip(&self.stable_gaps)
            .map(|(c, s)| (c.dimension, c.metric, c.gap - s.gap))
            .max_by(|a, b| a.2.total_cmp(&b.2))
    }
}

/// One failed model gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "gate", rename_all = "kebab-case")]
pub enum ModelBreach {
    /// RMSE at or above the limit.
    Rmse {
        /// Candidate RMSE.
        rmse: f64,
        /// Limit.
        max: f64,
    },
    /// NDCG worse than stable's by more than the tolerance.
    Ranking {
        /// Candidate NDCG.
        candidate: f64,
        /// Stable NDCG.
        stable: f64,
        /// Tolerance.
        tolerance: f64,
    },
    /// A fairness gap grew by more than the tolerance.
    Fairness {
        /// Dimension.
        dimension: Dimension,
        /// Metric.
        metric: Metric,
        /// Candidate gap (and its worst group).
        candidate_gap: f64,
        /// The candidate's worst group.
        worst_group: Option<String>,
        /// Stable gap.
        stable_gap: f64,
        /// Tolerance.
        tolerance: f64,
    },
}

impl std::fmt::Display for ModelBreach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelBreach::Rmse { rmse, max } => write!(f, "RMSE {rmse:.4} is not below {max}"),
            ModelBreach::Ranking {
                candidate,
                stable,
                tolerance,
            } => write!(
                f,
                "NDCG {candidate:.4} is worse than stable's {stable:.4} by more than {tolerance}"
            ),
            ModelBreach::Fairness {
                dimension,
                metric,
                candidate_gap,
                worst_group,
                stable_gap,
                tolerance,
            } => write!(
                f,
                "{} gap by {} grew from {stable_gap:.4} to {candidate_gap:.4} (worst group {}), \
                 more than {tolerance}",
                match metric {
                    Metric::Rmse => "RMSE",
                    Metric::Ndcg => "NDCG",
                },
                dimension.name(),
                worst_group.as_deref().unwrap_or("-")
            ),
        }
    }
}

/// Whether to publish the candidate.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelVerdict {
    /// Every gate passed.
    Publish(GateFigures),
    /// At least one gate failed; all failures are listed.
    Refuse(GateFigures, Vec<ModelBreach>),
}

impl ModelVerdict {
    /// The figures, whatever the verdict.
    pub fn figures(&self) -> &GateFigures {
        match self {
            ModelVerdict::Publish(f) | ModelVerdict::Refuse(f, _) => f,
        }
    }
}

/// Judges the candidate against stable, both scored on the same held-out ratings.
///
/// # Gates
/// - RMSE: the candidate's must be strictly below `max_rmse`.
/// - Ranking: `candidate NDCG ≥ stable NDCG − ndcg_tolerance`.
/// - Fairness: for each dimension and metric, `candidate gap ≤ stable gap + tolerance`,
///   gaps over groups with at least `min_group_ratings` ratings (RMSE) or
///   `min_group_users` ranked users (NDCG).
///
/// A tiny epsilon absorbs floating-point noise at the boundaries (a gap exactly at the
/// tolerance passes).
pub fn judge_model(
    candidate: &ModelScore,
    stable: &ModelScore,
    limits: &ModelLimits,
) -> ModelVerdict {
    const EPS: f64 = 1e-12;
    let pairs: Vec<(Dimension, Metric)> = Dimension::ALL
        .into_iter()
        .flat_map(|d| [(d, Metric::Rmse), (d, Metric::Ndcg)])
        .collect();
    let figures = GateFigures {
        candidate_rmse: candidate.rmse,
        stable_rmse: stable.rmse,
        candidate_ndcg: candidate.ndcg,
        stable_ndcg: stable.ndcg,
        candidate_gaps: pairs
            .iter()
            .map(|&(d, m)| gap(candidate, d, m, limits))
            .collect(),
        stable_gaps: pairs
            .iter()
            .map(|&(d, m)| gap(stable, d, m, limits))
            .collect(),
    };
    let mut breaches = Vec::new();
    if candidate.rmse.is_nan() || candidate.rmse >= limits.max_rmse {
        breaches.push(ModelBreach::Rmse {
            rmse: candidate.rmse,
            max: limits.max_rmse,
        });
    }
    if candidate.ndcg + EPS < stable.ndcg - limits.ndcg_tolerance {
        breaches.push(ModelBreach::Ranking {
            candidate: candidate.ndcg,
            stable: stable.ndcg,
            tolerance: limits.ndcg_tolerance,
        });
    }
    for (c, s) in figures.candidate_gaps.iter().zip(&figures.stable_gaps) {
        let tolerance = match c.metric {
            Metric::Rmse => limits.rmse_gap_tolerance,
            Metric::Ndcg => limits.ndcg_gap_tolerance,
        };
        if c.gap > s.gap + tolerance + EPS {
            breaches.push(ModelBreach::Fairness {
                dimension: c.dimension,
                metric: c.metric,
                candidate_gap: c.gap,
                worst_group: c.worst.clone(),
                stable_gap: s.gap,
                tolerance,
            });
        }
    }
    if breaches.is_empty() {
        ModelVerdict::Publish(figures)
    } else {
        ModelVerdict::Refuse(figures, breaches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> EventFigures {
        EventFigures {
            lines: 1000,
            malformed: 10,
            out_of_range: 0,
            new_ratings: 400,
            updated_ratings: 5,
            new_watches: 300,
            unknown_users: 20,
            unknown_movies: 4,
            test_ratings: 80,
            window_hours: Some(50.0),
        }
    }

    #[test]
    fn clean_data_is_trained_on() {
        let previous = window();
        assert_eq!(
            judge_data(&window(), Some(&previous), &DataLimits::default()),
            DataVerdict::Train
        );
        // No previous window: the volume check is skipped, nothing else changes.
        assert_eq!(
            judge_data(&window(), None, &DataLimits::default()),
            DataVerdict::Train
        );
    }

    #[test]
    fn an_empty_window_is_nothing_to_do_but_a_garbage_one_is_refused() {
        let empty = EventFigures {
            lines: 3,
            window_hours: Some(48.0),
            ..EventFigures::default()
        };
        assert_eq!(
            judge_data(&empty, None, &DataLimits::default()),
            DataVerdict::NothingToDo
        );
        let garbage = EventFigures {
            lines: 3,
            malformed: 3,
            ..EventFigures::default()
        };
        let DataVerdict::Refuse(breaches) = judge_data(&garbage, None, &DataLimits::default())
        else {
            panic!("garbage must be refused");
        };
        assert!(
            matches!(breaches[0], DataBreach::Malformed { share, .. } if (share - 1.0).abs() < 1e-12)
        );
    }

    #[test]
    fn malformed_share_is_refused_above_the_limit_only() {
        let limits = DataLimits::default();
        let mut at = window();
        at.malformed = 50; // exactly 5 %
        assert_eq!(judge_data(&at, None, &limits), DataVerdict::Train);
        at.malformed = 51;
        let DataVerdict::Refuse(b) = judge_data(&at, None, &limits) else {
            panic!()
        };
        assert_eq!(b.len(), 1);
        assert!(b[0].to_string().contains("5.10 % > 5.00 %"), "{}", b[0]);
    }

    #[test]
    fn a_volume_collapse_is_refused() {
        let previous = window(); // 1000 lines in 50 h
        let mut now = window();
        now.lines = 100;
        now.malformed = 0;
        now.window_hours = Some(25.0); // 4/h against 20/h: ratio 0.2 exactly
        assert_eq!(
            judge_data(&now, Some(&previous), &DataLimits::default()),
            DataVerdict::Train
        );
        now.lines = 99;
        let DataVerdict::Refuse(b) = judge_data(&now, Some(&previous), &DataLimits::default())
        else {
            panic!()
        };
        assert!(matches!(b[0], DataBreach::VolumeCollapse { .. }), "{b:?}");
    }

    #[test]
    fn unknown_ids_and_a_thin_test_set_are_refused_together() {
        let mut now = window();
        now.unknown_users = 201;
        now.unknown_movies = 300;
        now.test_ratings = 49;
        let DataVerdict::Refuse(b) = judge_data(&now, None, &DataLimits::default()) else {
            panic!()
        };
        let kinds: Vec<&str> = b
            .iter()
            .map(|b| match b {
                DataBreach::UnknownUsers { .. } => "users",
                DataBreach::UnknownMovies { .. } => "movies",
                DataBreach::TooFewTestRatings { .. } => "test",
                _ => "other",
            })
            .collect();
        assert_eq!(kinds, ["users", "movies", "test"]);
    }

    fn group(dimension: Dimension, name: &str, rmse: f64, ndcg: f64) -> GroupScore {
        GroupScore {
            dimension,
            group: name.to_owned(),
            ratings: 100,
            rmse: Some(rmse),
            users: 20,
            ndcg: Some(ndcg),
        }
    }

    fn score(rmse: f64, ndcg: f64, groups: Vec<GroupScore>) -> ModelScore {
        ModelScore {
            version: "v".into(),
            rmse,
            ndcg,
            ndcg_k: 10,
            ratings: 1000,
            users: 100,
            groups,
        }
    }

    fn fair_groups() -> Vec<GroupScore> {
        vec![
            group(Dimension::Gender, "F", 0.90, 0.30),
            group(Dimension::Gender, "M", 0.88, 0.32),
            group(Dimension::Age, "18-24", 0.91, 0.29),
            group(Dimension::Age, "25-34", 0.87, 0.31),
        ]
    }

    #[test]
    fn a_candidate_as_good_as_stable_is_published() {
        let stable = score(0.90, 0.30, fair_groups());
        let candidate = score(0.89, 0.31, fair_groups());
        let verdict = judge_model(&candidate, &stable, &ModelLimits::default());
        let ModelVerdict::Publish(figures) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(figures.candidate_gaps.len(), 6);
        let gender_rmse = &figures.candidate_gaps[0];
        assert_eq!(
            (gender_rmse.worst.as_deref(), gender_rmse.best.as_deref()),
            (Some("F"), Some("M"))
        );
        assert!((gender_rmse.gap - 0.02).abs() < 1e-9);
        let gender_ndcg = &figures.candidate_gaps[1];
        assert_eq!(gender_ndcg.worst.as_deref(), Some("F"));
        assert!((gender_ndcg.gap - 0.02).abs() < 1e-9);
    }

    #[test]
    fn rmse_gate_refuses_at_the_limit() {
        let stable = score(0.95, 0.30, fair_groups());
        let limits = ModelLimits::default();
        let ok = score(0.999_999, 0.30, fair_groups());
        assert!(matches!(
            judge_model(&ok, &stable, &limits),
            ModelVerdict::Publish(_)
        ));
        for bad in [1.0, 1.2, f64::NAN] {
            let ModelVerdict::Refuse(_, b) =
                judge_model(&score(bad, 0.30, fair_groups()), &stable, &limits)
            else {
                panic!("{bad}")
            };
            assert!(matches!(b[..], [ModelBreach::Rmse { .. }]), "{bad}: {b:?}");
        }
    }

    #[test]
    fn ranking_gate_allows_the_tolerance_and_not_more() {
        let stable = score(0.9, 0.30, fair_groups());
        let limits = ModelLimits::default();
        let at_tolerance = score(0.9, 0.28, fair_groups());
        assert!(matches!(
            judge_model(&at_tolerance, &stable, &limits),
            ModelVerdict::Publish(_)
        ));
        let worse = score(0.9, 0.279, fair_groups());
        let ModelVerdict::Refuse(figures, b) = judge_model(&worse, &stable, &limits) else {
            panic!()
        };
        assert!(matches!(b[..], [ModelBreach::Ranking { .. }]), "{b:?}");
        assert!((figures.stable_ndcg - 0.30).abs() < 1e-12);
    }

    #[test]
    fn fairness_gate_refuses_a_grown_gap_and_names_the_group() {
        let stable = score(0.9, 0.30, fair_groups());
        let mut groups = fair_groups();
        // The 18-24 group's error grows: age RMSE gap 0.04 → 0.10 (limit 0.04 + 0.05).
        groups[2].rmse = Some(0.97);
        let candidate = score(0.9, 0.30, groups);
        let ModelVerdict::Refuse(figures, b) =
            judge_model(&candidate, &stable, &ModelLimits::default())
        else {
            panic!()
        };
        let [
            ModelBreach::Fairness {
                dimension: Dimension::Age,
                metric: Metric::Rmse,
                worst_group,
                ..
            },
        ] = &b[..]
        else {
            panic!("{b:?}")
        };
        assert_eq!(worst_group.as_deref(), Some("18-24"));
        let (dimension, metric, growth) = figures.worst_gap_growth().unwrap();
        assert_eq!((dimension, metric), (Dimension::Age, Metric::Rmse));
        assert!((growth - 0.06).abs() < 1e-9);
        assert!(b[0].to_string().contains("worst group 18-24"));
    }

    #[test]
    fn small_groups_do_not_count_in_gaps() {
        let mut groups = fair_groups();
        groups.push(GroupScore {
            ratings: 29,
            users: 9,
            ..group(Dimension::Gender, "unknown", 2.0, 0.0)
        });
        let stable = score(0.9, 0.3, fair_groups());
        let candidate = score(0.9, 0.3, groups);
        assert!(matches!(
            judge_model(&candidate, &stable, &ModelLimits::default()),
            ModelVerdict::Publish(_)
        ));
        // One eligible group: no gap.
        let single = score(0.9, 0.3, vec![group(Dimension::Gender, "F", 0.9, 0.3)]);
        let g = gap(
            &single,
            Dimension::Gender,
            Metric::Rmse,
            &ModelLimits::default(),
        );
        assert_eq!((g.gap, g.worst), (0.0, None));
    }
}
