//! The join: each watch or rating goes to the user's most recent impression at or before
//! it, if that impression is at most the attribution window older; the actions of one
//! user × movie × impression pair are folded together and scored when the evaluation
//! finishes.
//!
//! # Window edges
//! An action at time `t` is attributed to the latest impression at time `i` with
//! `i <= t <= i + window`: an action in the same second as the impression belongs to it,
//! and so does one exactly `window` seconds later; one second more and it is
//! unattributed (counted under that impression's version as `unattributed`).
//!
//! # Order, duplicates
//! Records may arrive out of order: each user keeps their last
//! [`IMPRESSIONS_PER_USER`] impressions sorted by time, a late impression is inserted in
//! its place (actions already joined are not moved), and a late action is still joined
//! against what is kept. A record older than one already seen for the same user is
//! counted as out of order. An impression repeated exactly is ignored and counted; watch
//! lines at or below the pair's furthest minute and ratings repeated with the same time
//! and value change nothing and are counted.

use std::collections::{HashMap, VecDeque};

use super::aggregate::{EvalCounts, VersionKey, VersionRow, VersionStats};
use super::score::{PairActions, Position, Unscored, pair_score};

/// Impressions kept per user for late records.
pub const IMPRESSIONS_PER_USER: usize = 8;

/// The default attribution window, 30 minutes (in seconds).
pub const DEFAULT_WINDOW_SECONDS: i64 = 30 * 60;

/// A movie as the evaluator sees it: a numeric id, or an interned slug (see
/// [`super::log::MovieKeys`]). Only equality matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MovieKey(pub u64);

/// One input record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// A recommendation list shown to a user.
    Impression {
        /// Unix seconds.
        time: i64,
        /// User id.
        user: u32,
        /// Index of the version from [`Evaluator::version`].
        version: u32,
        /// The list, best first.
        items: Vec<MovieKey>,
    },
    /// The user watched minute `minute` of a movie.
    Watch {
        /// Unix seconds.
        time: i64,
        /// User id.
        user: u32,
        /// The movie.
        movie: MovieKey,
        /// Minute number; the furthest one counts as the minutes watched.
        minute: u32,
    },
    /// The user rated a movie.
    Rate {
        /// Unix seconds.
        time: i64,
        /// User id.
        user: u32,
        /// The movie.
        movie: MovieKey,
        /// 1–5.
        value: u8,
    },
}

#[derive(Debug)]
struct Shown {
    id: u64,
    time: i64,
    version: u32,
    items: Box<[MovieKey]>,
}

#[derive(Debug, Default)]
struct UserState {
    newest: i64,
    shown: VecDeque<Shown>,
}

#[derive(Debug)]
struct Pair {
    version: u32,
    position: Position,
    minutes: Option<u32>,
    /// (time, value) of the rating that counts.
    rating: Option<(i64, u8)>,
}

/// Where an action goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attribution {
    /// To the impression at this index of the user's list.
    To(usize),
    /// The latest impression at or before the action (at this index) is too old.
    OutsideWindow(usize),
    /// No impression at or before the action.
    NoImpression,
}

/// Picks the impression an action at `time` belongs to, from impression times sorted
/// ascending. Pure; the window edges are described in the module docs.
pub fn attribute(
    times: impl DoubleEndedIterator<Item = i64> + ExactSizeIterator,
    time: i64,
    window: i64,
) -> Attribution {
    let len = times.len();
    let Some((back, shown)) = times.rev().enumerate().find(|&(_, t)| t <= time) else {
        return Attribution::NoImpression;
    };
    let index = len - 1 - back;
    if time - shown <= window {
        Attribution::To(index)
    } else {
        Attribution::OutsideWindow(index)
    }
}

/// Joins and scores records; pure state, no IO. Feed records with [`Evaluator::add`],
/// then [`Evaluator::finish`] scores every pair.
#[derive(Debug)]
pub struct Evaluator {
    window: i64,
    versions: Vec<VersionKey>,
    version_index: HashMap<VersionKey, u32>,
    stats: Vec<VersionStats>,
    users: HashMap<u32, UserState>,
    pairs: HashMap<(u64, MovieKey), Pair>,
    next_impression: u64,
    counts: EvalCounts,
}

impl Evaluator {
    /// An evaluator with an attribution window of `window_seconds` (negative counts as 0).
    pub fn new(window_seconds: i64) -> Self {
        Evaluator {
            window: window_seconds.max(0),
            versions: Vec::new(),
            version_index: HashMap::new(),
            stats: Vec::new(),
            users: HashMap::new(),
            pairs: HashMap::new(),
            next_impression: 0,
            counts: EvalCounts::default(),
        }
    }

    /// The index of a version, interned on first use.
    pub fn version(&mut self, key: &VersionKey) -> u32 {
        if let Some(&i) = self.version_index.get(key) {
            return i;
        }
        let i = self.versions.len() as u32;
        self.versions.push(key.clone());
        self.version_index.insert(key.clone(), i);
        self.stats.push(VersionStats::default());
        i
    }

    /// Global counts so far (the reader adds its own: lines, malformed, …).
    pub fn counts_mut(&mut self) -> &mut EvalCounts {
        &mut self.counts
    }

    /// Takes one record.
    ///
    /// An impression's `version` must come from [`Evaluator::version`] of this evaluator;
    /// any other index is counted as malformed. No record makes this panic.
    pub fn add(&mut self, record: Record) {
        self.counts.records += 1;
        let (time, user) = match &record {
            Record::Impression { time, user, .. }
            | Record::Watch { time, user, .. }
            | Record::Rate { time, user, .. } => (*time, *user),
        };
        let state = self.users.entry(user).or_insert_with(|| UserState {
            newest: time,
            shown: VecDeque::new(),
        });
        if time < state.newest {
            self.counts.out_of_order += 1;
        }
        state.newest = state.newest.max(time);
        match record {
            Record::Impression {
                time,
                user,
                version,
                items,
            } => self.impression(time, user, version, items),
            Record::Watch {
                time,
                user,
                movie,
                minute,
            } => {
                self.counts.watch_records += 1;
                self.action(time, user, movie, |pair, counts| match pair.minutes {
                    Some(furthest) if minute <= furthest => counts.duplicate_actions += 1,
                    _ => pair.minutes = Some(minute),
                });
            }
            Record::Rate {
                time,
                user,
                movie,
                value,
            } => {
                self.counts.rating_records += 1;
                self.action(time, user, movie, |pair, counts| match pair.rating {
                    None => pair.rating = Some((time, value)),
                    Some(old) if old == (time, value) => counts.duplicate_actions += 1,
                    Some((old_time, _)) => {
                        counts.rating_updates += 1;
                        if time >= old_time {
                            pair.rating = Some((time, value));
                        }
                    }
                });
            }
        }
    }

    fn impression(&mut self, time: i64, user: u32, version: u32, items: Vec<MovieKey>) {
        if version as usize >= self.stats.len() {
            // Not interned here (a caller's bug): counted, never indexed.
            self.counts.malformed += 1;
            return;
        }
        let state = self.users.entry(user).or_default();
        let duplicate = state
            .shown
            .iter()
            .any(|s| s.time == time && s.version == version && *s.items == *items);
        if duplicate {
            self.counts.duplicate_impressions += 1;
            return;
        }
        self.counts.impressions += 1;
        self.stats[version as usize].impressions += 1;
        let at = state.shown.partition_point(|s| s.time <= time);
        state.shown.insert(
            at,
            Shown {
                id: self.next_impression,
                time,
                version,
                items: items.into_boxed_slice(),
            },
        );
        self.next_impression += 1;
        if state.shown.len() > IMPRESSIONS_PER_USER {
            state.shown.pop_front();
        }
    }

    fn action(
        &mut self,
        time: i64,
        user: u32,
        movie: MovieKey,
        fold: impl FnOnce(&mut Pair, &mut EvalCounts),
    ) {
        let Some(state) = self.users.get(&user) else {
            self.counts.no_impression += 1;
            return;
        };
        match attribute(state.shown.iter().map(|s| s.time), time, self.window) {
            Attribution::NoImpression => self.counts.no_impression += 1,
            Attribution::OutsideWindow(i) => {
                self.counts.outside_window += 1;
                self.stats[state.shown[i].version as usize].unattributed += 1;
            }
            Attribution::To(i) => {
                let shown = &state.shown[i];
                let pair = self.pairs.entry((shown.id, movie)).or_insert_with(|| Pair {
                    version: shown.version,
                    position: Position::of(&shown.items, &movie),
                    minutes: None,
                    rating: None,
                });
                fold(pair, &mut self.counts);
            }
        }
    }

    /// Scores every pair; `runtime` gives a movie's length in minutes (`None`: unknown).
    /// Rows are sorted by version key.
    pub fn finish(
        mut self,
        runtime: impl Fn(MovieKey) -> Option<u32>,
    ) -> (EvalCounts, Vec<VersionRow>) {
        for ((_, movie), pair) in self.pairs {
            let actions = PairActions {
                position: pair.position,
                minutes: pair.minutes,
                rating: pair.rating.map(|(_, value)| value),
            };
            let stats = &mut self.stats[pair.version as usize];
            let needs_runtime = pair.minutes.is_some();
            let length = if needs_runtime { runtime(movie) } else { None };
            match pair_score(actions, length) {
                Ok(score) => stats.observe(score, pair.position),
                Err(Unscored::UnknownRuntime) => {
                    stats.unscored += 1;
                    self.counts.unknown_runtime += 1;
                }
            }
        }
        let mut rows: Vec<VersionRow> = self
            .versions
            .into_iter()
            .zip(self.stats)
            .map(|(key, stats)| VersionRow {
                mean_score: stats.mean(),
                hit_rate: stats.hit_rate(),
                key,
                stats,
            })
            .collect();
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        (self.counts, rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_714_564_800;

    fn keys(ids: impl IntoIterator<Item = u64>) -> Vec<MovieKey> {
        ids.into_iter().map(MovieKey).collect()
    }

    fn shown(ev: &mut Evaluator, time: i64, user: u32, version: &str, items: &[u64]) {
        let version = ev.version(&VersionKey::model_version(version));
        ev.add(Record::Impression {
            time,
            user,
            version,
            items: keys(items.iter().copied()),
        });
    }

    fn watch(time: i64, user: u32, movie: u64, minute: u32) -> Record {
        Record::Watch {
            time,
            user,
            movie: MovieKey(movie),
            minute,
        }
    }

    fn rate(time: i64, user: u32, movie: u64, value: u8) -> Record {
        Record::Rate {
            time,
            user,
            movie: MovieKey(movie),
            value,
        }
    }

    fn row<'a>(rows: &'a [VersionRow], version: &str) -> &'a VersionStats {
        &rows
            .iter()
            .find(|r| r.key.model_version == version)
            .expect("row")
            .stats
    }

    #[test]
    fn attribution_window_edges() {
        let times = [T0, T0 + 100];
        let at = |t| attribute(times.iter().copied(), t, 60);
        assert_eq!(at(T0 - 1), Attribution::NoImpression);
        assert_eq!(at(T0), Attribution::To(0), "same second belongs");
        assert_eq!(at(T0 + 60), Attribution::To(0), "window end is inclusive");
        assert_eq!(at(T0 + 61), Attribution::OutsideWindow(0));
        assert_eq!(at(T0 + 100), Attribution::To(1), "the latest wins");
        assert_eq!(at(T0 + 160), Attribution::To(1));
        assert_eq!(at(T0 + 161), Attribution::OutsideWindow(1));
        assert_eq!(
            attribute(std::iter::empty(), T0, 60),
            Attribution::NoImpression
        );
    }

    #[test]
    fn scores_pairs_through_the_latest_impression() {
        let mut ev = Evaluator::new(DEFAULT_WINDOW_SECONDS);
        shown(&mut ev, T0, 1, "a:1", &[10, 11, 12, 13, 14, 15, 16]);
        // Watched 80 of 100 minutes of the movie at position 2: 10 × 5.
        for minute in [1, 40, 80] {
            ev.add(watch(T0 + 60 + i64::from(minute), 1, 11, minute));
        }
        // Rated 4 the movie at position 7: 8 × 4/5 = 6.4.
        ev.add(rate(T0 + 300, 1, 16, 4));
        // A newer impression from another version takes later actions.
        shown(&mut ev, T0 + 600, 1, "b:2", &[20, 10]);
        // Watched 10 of 100 (band 1) the movie now at position 2, rated 5: 10 + 10.
        ev.add(watch(T0 + 700, 1, 10, 10));
        ev.add(rate(T0 + 800, 1, 10, 5));
        // Not in the list: 0.01 × 4/5.
        ev.add(rate(T0 + 900, 1, 99, 4));
        let (counts, rows) = ev.finish(|_| Some(100));
        let a = row(&rows, "a:1");
        assert_eq!((a.impressions, a.scored, a.hits), (1, 2, 2));
        assert!((a.score_sum - 56.4).abs() < 1e-9);
        assert!((a.score_sum_squares - (2500.0 + 40.96)).abs() < 1e-9);
        assert_eq!(a.hits_by_band, [1, 1, 0, 0]);
        assert_eq!(a.hit_position_sum, 9);
        let b = row(&rows, "b:2");
        assert_eq!((b.impressions, b.scored, b.hits), (1, 2, 1));
        assert!((b.score_sum - 20.008).abs() < 1e-9);
        assert_eq!((counts.watch_records, counts.rating_records), (4, 3));
        assert_eq!(counts.impressions, 2);
        assert_eq!(counts.unattributed(), 0);
    }

    #[test]
    fn a_user_with_no_impression_and_a_stale_one_are_unattributed() {
        let mut ev = Evaluator::new(60);
        ev.add(watch(T0, 5, 1, 3));
        shown(&mut ev, T0 + 10, 6, "a:1", &[1]);
        ev.add(rate(T0 + 5, 6, 1, 5));
        ev.add(rate(T0 + 71, 6, 1, 5));
        ev.add(rate(T0 + 70, 6, 1, 3));
        let (counts, rows) = ev.finish(|_| Some(100));
        assert_eq!(
            counts.no_impression, 2,
            "user 5 has none; user 6's first is too early"
        );
        assert_eq!(counts.outside_window, 1);
        assert_eq!(
            counts.out_of_order, 2,
            "T0+5 after T0+10, T0+70 after T0+71"
        );
        let a = row(&rows, "a:1");
        assert_eq!((a.unattributed, a.scored), (1, 1));
        // The action at T0+70 is exactly at the window's end: 10 × 3/5.
        assert!((a.score_sum - 6.0).abs() < 1e-9);
    }

    #[test]
    fn out_of_order_records_still_join() {
        let mut ev = Evaluator::new(DEFAULT_WINDOW_SECONDS);
        shown(&mut ev, T0 + 500, 1, "new", &[2, 1]);
        // A late impression, older than the one seen: inserted in its place.
        shown(&mut ev, T0, 1, "old", &[1, 2]);
        // A late watch, older than both records seen, goes to the old impression.
        ev.add(watch(T0 + 100, 1, 1, 90));
        // A later rating goes to the new one.
        ev.add(rate(T0 + 600, 1, 1, 5));
        let (counts, rows) = ev.finish(|_| Some(100));
        assert_eq!(counts.out_of_order, 2);
        assert!((row(&rows, "old").score_sum - 50.0).abs() < 1e-9);
        assert!((row(&rows, "new").score_sum - 10.0).abs() < 1e-9);
        assert_eq!(row(&rows, "new").hit_position_sum, 2);
    }

    #[test]
    fn duplicates_change_nothing_and_are_counted() {
        let mut ev = Evaluator::new(DEFAULT_WINDOW_SECONDS);
        shown(&mut ev, T0, 1, "a:1", &[7]);
        shown(&mut ev, T0, 1, "a:1", &[7]);
        ev.add(watch(T0 + 60, 1, 7, 30));
        ev.add(watch(T0 + 60, 1, 7, 30));
        ev.add(watch(T0 + 61, 1, 7, 12));
        ev.add(rate(T0 + 90, 1, 7, 2));
        ev.add(rate(T0 + 90, 1, 7, 2));
        // A later rating replaces the earlier; a re-sent older one does not.
        ev.add(rate(T0 + 95, 1, 7, 5));
        ev.add(rate(T0 + 91, 1, 7, 1));
        let (counts, rows) = ev.finish(|_| Some(100));
        assert_eq!(counts.duplicate_impressions, 1);
        assert_eq!(counts.duplicate_actions, 3);
        assert_eq!(counts.rating_updates, 2);
        let a = row(&rows, "a:1");
        assert_eq!((a.impressions, a.scored), (1, 1));
        // 30 % watched → 10 × 3, rated 5 → 10.
        assert!((a.score_sum - 40.0).abs() < 1e-9);
    }

    #[test]
    fn unknown_runtime_leaves_the_pair_unscored() {
        let mut ev = Evaluator::new(DEFAULT_WINDOW_SECONDS);
        shown(&mut ev, T0, 1, "a:1", &[7, 8]);
        ev.add(watch(T0 + 1, 1, 7, 30));
        ev.add(rate(T0 + 2, 1, 7, 5));
        ev.add(rate(T0 + 3, 1, 8, 5));
        let (counts, rows) = ev.finish(|m| (m != MovieKey(7)).then_some(100));
        let a = row(&rows, "a:1");
        assert_eq!((a.scored, a.unscored, counts.unknown_runtime), (1, 1, 1));
        assert!(
            (a.score_sum - 10.0).abs() < 1e-9,
            "only the rating-only pair of movie 8"
        );
    }

    #[test]
    fn an_impression_with_a_foreign_version_is_malformed() {
        let mut ev = Evaluator::new(60);
        ev.add(Record::Impression {
            time: T0,
            user: 1,
            version: 3,
            items: keys([1]),
        });
        ev.add(rate(T0, 1, 1, 5));
        let (counts, rows) = ev.finish(|_| Some(100));
        assert_eq!(
            (counts.malformed, counts.impressions, counts.no_impression),
            (1, 0, 1)
        );
        assert!(rows.is_empty());
    }

    #[test]
    fn old_impressions_are_forgotten_beyond_the_per_user_cap() {
        let mut ev = Evaluator::new(i64::MAX / 4);
        for i in 0..=IMPRESSIONS_PER_USER as i64 {
            shown(&mut ev, T0 + i * 10, 1, "a:1", &[1]);
        }
        // Before every kept impression: the first was dropped.
        ev.add(rate(T0 + 5, 1, 1, 5));
        let (counts, _) = ev.finish(|_| Some(100));
        assert_eq!(counts.no_impression, 1);
    }
}
