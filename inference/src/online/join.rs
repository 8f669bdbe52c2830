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
//! # Streaming: closing windows
//! A long-running evaluator cannot wait for the end of its input. [`Evaluator::close_through`]
//! takes a watermark (an event time the caller believes every record before has arrived
//! by): every impression whose window ended before it is closed, its pairs are scored at
//! once and forgotten, and the user keeps only that impression's time and version (to
//! count a later action as unattributed to it). An action arriving afterwards for a closed
//! impression is `late_actions` and dropped, an impression arriving after its own window
//! closed is `late_impressions`: a pair is never scored twice. [`Evaluator::finish`] is
//! closing through the end of time. Closing in any number of steps gives the same scores
//! as closing once at the end, as long as no record arrives behind the watermark.
//!
//! A streaming evaluator ([`Evaluator::with_unattributed_horizon`], as `movrek evaluate`
//! uses with [`UNATTRIBUTED_HORIZON_WINDOWS`] windows) counts an action later than the window
//! as unattributed to the user's latest impression only up to that horizon; after it the
//! user is forgotten and such an action counts as `no_impression`. That bounds memory to the
//! users seen in the horizon, and bounds what a restart must replay. Offline evaluation has
//! no horizon: any later action is unattributed to the latest impression.
//!
//! # Replay
//! [`Evaluator::replay`] takes a record that was already counted before a restart: it
//! rebuilds the join state (open impressions and pairs) and changes no count. Replaying
//! every record from [`Evaluator::replay_from`] on rebuilds all state that later records
//! can reach.
//!
//! # Order, duplicates
//! Records may arrive out of order: each user keeps their last
//! [`IMPRESSIONS_PER_USER`] impressions sorted by time, a late impression is inserted in
//! its place (actions already joined are not moved), and a late action is still joined
//! against what is kept. A record older than one already seen for the same user is
//! counted as out of order. An impression repeated exactly is ignored and counted; watch
//! lines at or below the pair's furthest minute and ratings repeated with the same time
//! and value change nothing and are counted.

use std::collections::{BTreeMap, HashMap};

use super::aggregate::{EvalCounts, VersionKey, VersionRow, VersionStats};
use super::score::{PairActions, Unscored, pair_score};
pub use super::users::IMPRESSIONS_PER_USER;
use super::users::{Pair, ShownItems, Users};

/// How many windows after an impression a later action still counts as unattributed to
/// its version (rather than to no impression at all).
pub const UNATTRIBUTED_HORIZON_WINDOWS: i64 = 2;

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
    /// Users, their open impressions and those impressions' pairs.
    users: Users,
    /// Users with an open impression, by the end of its window.
    users_closing: BTreeMap<i64, Vec<u32>>,
    /// Seconds after an impression during which a later action is unattributed to it.
    horizon: i64,
    /// Users whose closed impression leaves the unattributed horizon, by that time.
    users_forgetting: BTreeMap<i64, Vec<u32>>,
    /// Impressions whose window ends before this are closed.
    watermark: i64,
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
            users: Users::new(window_seconds.max(0)),
            users_closing: BTreeMap::new(),
            horizon: i64::MAX,
            users_forgetting: BTreeMap::new(),
            watermark: i64::MIN,
            counts: EvalCounts::default(),
        }
    }

    /// The attribution window, seconds.
    pub fn window(&self) -> i64 {
        self.window
    }

    /// Impressions whose window ended before this time are closed.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Global counts so far.
    pub fn counts(&self) -> &EvalCounts {
        &self.counts
    }

    /// Open pairs (attributed actions whose impression's window has not closed).
    pub fn open_pairs(&self) -> usize {
        self.users.open_pairs()
    }

    /// Users with any state (open impressions or a closed one remembered).
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Takes a record that was counted before a restart: the join state is rebuilt
    /// exactly as [`Evaluator::add`] would, and no count changes.
    pub fn replay(&mut self, record: Record) {
        let counts = self.counts.clone();
        let stats = self.stats.clone();
        self.add(record);
        self.counts = counts;
        self.stats = stats;
    }

    /// Restores counts and a watermark saved with [`Evaluator::rows`] and
    /// [`Evaluator::counts`] before a restart. Versions are interned in `rows`' order.
    pub fn restore(
        &mut self,
        counts: EvalCounts,
        rows: Vec<(VersionKey, VersionStats)>,
        watermark: i64,
    ) {
        for (key, stats) in rows {
            let index = self.version(&key) as usize;
            self.stats[index] = stats;
        }
        self.counts = counts;
        self.watermark = self.watermark.max(watermark);
    }

    /// Per-version rows so far (closed pairs only), sorted by version key.
    pub fn rows(&self) -> Vec<VersionRow> {
        let mut rows: Vec<VersionRow> = self
            .versions
            .iter()
            .zip(&self.stats)
            .map(|(key, stats)| VersionRow {
                mean_score: stats.mean(),
                hit_rate: stats.hit_rate(),
                key: key.clone(),
                stats: stats.clone(),
            })
            .collect();
        rows.sort_by(|a, b| a.key.cmp(&b.key));
        rows
    }

    /// Closes every impression whose window ended before `watermark` (its last second is
    /// `time + window`): scores its pairs, forgets them, and keeps only the impression's
    /// time and version for the user. A watermark at or below the current one does nothing.
    pub fn close_through(&mut self, watermark: i64, runtime: &impl Fn(MovieKey) -> Option<u32>) {
        if watermark <= self.watermark {
            return;
        }
        self.watermark = watermark;
        let open = self.users_closing.split_off(&watermark);
        for (_, users) in std::mem::replace(&mut self.users_closing, open) {
            for user in users {
                self.close_user(user, runtime);
            }
        }
        let (stats, counts) = (&mut self.stats, &mut self.counts);
        self.users
            .close_parked(watermark, &mut |version, movie, pair| {
                score(stats, counts, version, movie, pair, runtime);
            });
        let kept = self.users_forgetting.split_off(&watermark);
        for (_, users) in std::mem::replace(&mut self.users_forgetting, kept) {
            for user in users {
                self.forget_user(user);
            }
        }
    }

    /// Drops a user with no open impression whose closed one left the horizon and whose
    /// newest record is behind the watermark (nothing in order can still need them).
    fn forget_user(&mut self, user: u32) {
        let (horizon, watermark) = (self.horizon(), self.watermark);
        let Some(state) = self.users.get(user) else {
            return;
        };
        let expired = !state.has_open()
            && state
                .closed()
                .is_none_or(|(time, _)| time.saturating_add(horizon) < watermark);
        if !expired {
            return;
        }
        if state.newest < watermark {
            self.users.remove(user);
        } else {
            let at = state.newest.saturating_add(1);
            self.users_forgetting.entry(at).or_default().push(user);
        }
    }

    fn horizon(&self) -> i64 {
        self.horizon
    }

    /// Counts an action as unattributed to the user's latest impression only up to
    /// `windows` windows after it, and forgets users past that (streaming; the default has
    /// no horizon).
    #[must_use]
    pub fn with_unattributed_horizon(mut self, windows: i64) -> Self {
        self.horizon = self.window.saturating_mul(windows.max(1));
        self
    }

    /// After a restart at `watermark`, replaying every record at or after this event time
    /// (less the input's lateness) rebuilds the state later records can reach.
    pub fn replay_from(&self, watermark: i64) -> i64 {
        watermark.saturating_sub(self.horizon())
    }

    /// Remembers `user`'s closed impression at `time` (if it is their latest) until it
    /// leaves the unattributed horizon.
    fn remember_closed(&mut self, user: u32, time: i64, version: u32) {
        let forget_at = time.saturating_add(self.horizon());
        if self.users.set_closed(user, time, version) && forget_at < i64::MAX {
            self.users_forgetting
                .entry(forget_at)
                .or_default()
                .push(user);
        }
    }

    /// Closes `user`'s impressions whose window the watermark passed and scores their pairs.
    fn close_user(&mut self, user: u32, runtime: &impl Fn(MovieKey) -> Option<u32>) {
        let (stats, counts) = (&mut self.stats, &mut self.counts);
        let latest = self
            .users
            .close_before(user, self.watermark, &mut |version, movie, pair| {
                score(stats, counts, version, movie, pair, runtime);
            });
        // Only the latest impression closed now matters: remembering the earlier ones
        // first would be overwritten by it.
        if let Some((time, version)) = latest {
            self.remember_closed(user, time, version);
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
        if self.users.touch(user, time) {
            self.counts.out_of_order += 1;
        }
        match record {
            Record::Impression {
                time,
                user,
                version,
                items,
            } => self.impression(time, user, version, &items),
            Record::Watch {
                time,
                user,
                movie,
                minute,
            } => {
                self.counts.watch_records += 1;
                self.action(time, user, movie, |pair, counts| match pair.minutes() {
                    Some(furthest) if minute <= furthest => counts.duplicate_actions += 1,
                    _ => pair.set_minutes(minute),
                });
            }
            Record::Rate {
                time,
                user,
                movie,
                value,
            } => {
                self.counts.rating_records += 1;
                self.action(time, user, movie, |pair, counts| match pair.rating() {
                    None => pair.set_rating(time, value),
                    Some(old) if old == (time, value) => counts.duplicate_actions += 1,
                    Some((old_time, _)) => {
                        counts.rating_updates += 1;
                        if time >= old_time {
                            pair.set_rating(time, value);
                        }
                    }
                });
            }
        }
    }

    fn impression(&mut self, time: i64, user: u32, version: u32, items: &[MovieKey]) {
        if version as usize >= self.stats.len() {
            // Not interned here (a caller's bug): counted, never indexed.
            self.counts.malformed += 1;
            return;
        }
        let items = ShownItems::new(items);
        if self.users.is_open(user, time, version, &items) {
            self.counts.duplicate_impressions += 1;
            return;
        }
        self.counts.impressions += 1;
        self.stats[version as usize].impressions += 1;
        let closes = time.saturating_add(self.window);
        if closes < self.watermark {
            // Its window closed before it arrived: nothing can be attributed to it any more.
            self.counts.late_impressions += 1;
            self.remember_closed(user, time, version);
            return;
        }
        self.users_closing.entry(closes).or_default().push(user);
        self.users.push_open(user, time, version, items);
    }

    fn action(
        &mut self,
        time: i64,
        user: u32,
        movie: MovieKey,
        fold: impl FnOnce(&mut Pair, &mut EvalCounts),
    ) {
        let Some(state) = self.users.get(user) else {
            self.counts.no_impression += 1;
            return;
        };
        let horizon = self.horizon();
        let open = self.users.open(state);
        match attribute(open.iter().map(|s| s.time), time, self.window) {
            Attribution::NoImpression => match state.closed() {
                Some((shown, _)) if shown <= time && time - shown <= self.window => {
                    self.counts.late_actions += 1;
                }
                Some((shown, version)) if shown <= time && time - shown <= horizon => {
                    self.counts.outside_window += 1;
                    self.stats[version as usize].unattributed += 1;
                }
                _ => self.counts.no_impression += 1,
            },
            Attribution::OutsideWindow(i) if time - open.get(i).time <= horizon => {
                self.counts.outside_window += 1;
                self.stats[open.get(i).version as usize].unattributed += 1;
            }
            Attribution::OutsideWindow(_) => self.counts.no_impression += 1,
            Attribution::To(i) => {
                let slot = open.slot(i);
                fold(self.users.pair(slot, movie), &mut self.counts);
            }
        }
    }

    /// Scores every pair (closes every window); `runtime` gives a movie's length in
    /// minutes (`None`: unknown). Rows are sorted by version key.
    pub fn finish(
        mut self,
        runtime: impl Fn(MovieKey) -> Option<u32>,
    ) -> (EvalCounts, Vec<VersionRow>) {
        self.close_through(i64::MAX, &runtime);
        let rows = self.rows();
        (self.counts, rows)
    }
}

/// Scores one closed pair of version `version` into its row; `runtime` gives a movie's
/// length in minutes.
fn score(
    stats: &mut [VersionStats],
    counts: &mut EvalCounts,
    version: u32,
    movie: MovieKey,
    pair: &Pair,
    runtime: &impl Fn(MovieKey) -> Option<u32>,
) {
    let actions = PairActions {
        position: pair.position,
        minutes: pair.minutes(),
        rating: pair.rating().map(|(_, value)| value),
    };
    let stats = &mut stats[version as usize];
    let length = if pair.minutes().is_some() {
        runtime(movie)
    } else {
        None
    };
    match pair_score(actions, length) {
        Ok(score) => stats.observe(score, pair.position),
        Err(Unscored::UnknownRuntime) => {
            stats.unscored += 1;
            counts.unknown_runtime += 1;
        }
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

    /// A random stream of impressions and actions for `users` users over about `span`
    /// seconds, sorted by time with a few records moved back by up to `jitter` seconds.
    fn random_stream(seed: u64, records: usize, users: u32, jitter: i64) -> Vec<Record> {
        let mut rng = crate::util::SplitMix64::new(seed);
        let mut out = Vec::with_capacity(records);
        let mut now = T0;
        for _ in 0..records {
            now += rng.below(20) as i64;
            let user = rng.below(u64::from(users)) as u32;
            let time = if rng.below(10) == 0 {
                now - rng.below(jitter as u64 + 1) as i64
            } else {
                now
            };
            let movie = MovieKey(rng.below(40));
            out.push(match rng.below(4) {
                0 => Record::Impression {
                    time,
                    user,
                    version: rng.below(2) as u32,
                    items: (0..20).map(|_| MovieKey(rng.below(40))).collect(),
                },
                1 => Record::Rate {
                    time,
                    user,
                    movie,
                    value: 1 + rng.below(5) as u8,
                },
                _ => Record::Watch {
                    time,
                    user,
                    movie,
                    minute: rng.below(120) as u32,
                },
            });
        }
        out
    }

    fn time_of(record: &Record) -> i64 {
        match record {
            Record::Impression { time, .. }
            | Record::Watch { time, .. }
            | Record::Rate { time, .. } => *time,
        }
    }

    fn evaluator(window: i64) -> Evaluator {
        let mut e = Evaluator::new(window).with_unattributed_horizon(UNATTRIBUTED_HORIZON_WINDOWS);
        e.version(&VersionKey::model_version("v1"));
        e.version(&VersionKey::model_version("v2"));
        e
    }

    #[allow(clippy::unnecessary_wraps)] // the shape `close_through` takes
    fn runtime(_: MovieKey) -> Option<u32> {
        Some(100)
    }

    #[test]
    fn closing_in_steps_scores_exactly_as_closing_once_at_the_end() {
        const WINDOW: i64 = 600;
        const LATENESS: i64 = 60;
        for seed in 0..20 {
            let stream = random_stream(seed, 3_000, 40, LATENESS);
            let mut once = evaluator(WINDOW);
            let mut stepwise = evaluator(WINDOW);
            let mut newest = i64::MIN;
            for (n, record) in stream.iter().enumerate() {
                newest = newest.max(time_of(record));
                once.add(record.clone());
                stepwise.add(record.clone());
                if n % 50 == 0 {
                    stepwise.close_through(newest - LATENESS, &runtime);
                }
            }
            assert!(
                stepwise.watermark() > T0,
                "the stream advanced the watermark"
            );
            let (once_counts, once_rows) = once.finish(runtime);
            let (step_counts, step_rows) = stepwise.finish(runtime);
            assert_eq!(step_counts.late_actions, 0, "seed {seed}");
            assert_eq!(step_counts, once_counts, "seed {seed}");
            assert_eq!(step_rows.len(), once_rows.len());
            for (a, b) in step_rows.iter().zip(&once_rows) {
                assert_eq!(a.stats.scored, b.stats.scored, "seed {seed}");
                assert_eq!(a.stats.hits, b.stats.hits, "seed {seed}");
                assert_eq!(a.stats.histogram, b.stats.histogram, "seed {seed}");
                assert!(
                    (a.stats.score_sum - b.stats.score_sum).abs() < 1e-6,
                    "seed {seed}"
                );
            }
            assert!(once_rows.iter().map(|r| r.stats.scored).sum::<u64>() > 100);
        }
    }

    #[test]
    fn an_action_after_its_window_closed_is_late_and_never_scored_twice() {
        let mut e = evaluator(600);
        e.add(Record::Impression {
            time: T0,
            user: 1,
            version: 0,
            items: keys([5, 6]),
        });
        e.add(Record::Rate {
            time: T0 + 10,
            user: 1,
            movie: MovieKey(5),
            value: 5,
        });
        e.close_through(T0 + 601, &runtime);
        assert_eq!(e.rows()[0].stats.scored, 1);
        assert_eq!(e.open_pairs(), 0);
        // A late rating for the same pair, inside the old window: dropped.
        e.add(Record::Rate {
            time: T0 + 20,
            user: 1,
            movie: MovieKey(5),
            value: 3,
        });
        // A late impression whose own window closed already.
        e.add(Record::Impression {
            time: T0 - 5,
            user: 2,
            version: 1,
            items: keys([7]),
        });
        // An action after the closed impression's window: unattributed to its version.
        e.add(Record::Rate {
            time: T0 + 900,
            user: 1,
            movie: MovieKey(6),
            value: 4,
        });
        let (counts, rows) = e.finish(runtime);
        assert_eq!(counts.late_actions, 1);
        assert_eq!(counts.late_impressions, 1);
        assert_eq!(counts.impressions, 2);
        assert_eq!(rows[0].stats.scored, 1, "the pair was scored once");
        assert_eq!(rows[0].stats.unattributed, 1);
        assert_eq!(rows[1].stats.impressions, 1);
    }

    #[test]
    fn a_restart_that_replays_from_before_the_open_windows_counts_every_record_once() {
        const WINDOW: i64 = 600;
        const LATENESS: i64 = 60;
        for seed in 0..10 {
            let stream = random_stream(100 + seed, 4_000, 50, LATENESS);
            let close =
                |e: &mut Evaluator, newest: i64| e.close_through(newest - LATENESS, &runtime);
            // Without a restart.
            let mut whole = evaluator(WINDOW);
            let mut newest = i64::MIN;
            for (n, record) in stream.iter().enumerate() {
                newest = newest.max(time_of(record));
                whole.add(record.clone());
                if n % 50 == 0 {
                    close(&mut whole, newest);
                }
            }
            // With a restart after record `crash`; the checkpoint was taken at record
            // `checkpoint` (after its close), and records after it were counted by the dead
            // process but are not in the checkpoint.
            let checkpoint = 2_000;
            let crash = 2_345;
            let mut first = evaluator(WINDOW);
            let mut newest = i64::MIN;
            let mut saved = None;
            for (n, record) in stream[..crash].iter().enumerate() {
                newest = newest.max(time_of(record));
                first.add(record.clone());
                if n % 50 == 0 {
                    close(&mut first, newest);
                }
                if n == checkpoint {
                    let rows: Vec<_> = first.rows().into_iter().map(|r| (r.key, r.stats)).collect();
                    saved = Some((first.counts().clone(), rows, first.watermark(), newest));
                }
            }
            let (counts, rows, watermark, saved_newest) = saved.expect("checkpoint taken");
            let second_start = evaluator(WINDOW);
            // Resume at the first record at or after the watermark minus the window and the
            // lateness: everything an open window needs is after it.
            let resume = stream
                .iter()
                .position(|r| time_of(r) >= second_start.replay_from(watermark) - LATENESS)
                .expect("a resume point");
            let mut second = second_start;
            second.restore(counts, rows, watermark);
            let mut newest = saved_newest;
            for (n, record) in stream.iter().enumerate().skip(resume) {
                if n <= checkpoint {
                    second.replay(record.clone());
                    continue;
                }
                newest = newest.max(time_of(record));
                second.add(record.clone());
                if n % 50 == 0 {
                    close(&mut second, newest);
                }
            }
            let (whole_counts, whole_rows) = whole.finish(runtime);
            let (second_counts, second_rows) = second.finish(runtime);
            assert_eq!(second_counts, whole_counts, "seed {seed}");
            for (a, b) in second_rows.iter().zip(&whole_rows) {
                assert_eq!(a.stats.scored, b.stats.scored, "seed {seed}");
                assert_eq!(a.stats.impressions, b.stats.impressions, "seed {seed}");
                assert_eq!(a.stats.unattributed, b.stats.unattributed, "seed {seed}");
                assert!(
                    (a.stats.score_sum - b.stats.score_sum).abs() < 1e-6,
                    "seed {seed}"
                );
            }
        }
    }
}
