//! `movrek simulate`: the traffic simulator. Simulated users ask a server on this machine
//! for recommendations, react to the lists as their hidden taste says, and the run writes
//! what they did in the original log line format.
//!
//! # Shape of a run
//! [`plan::plan`] decides every session up front from the seed (who, when: a bounded
//! count); [`world`] holds the hidden taste, runtimes and demographics; `concurrency`
//! workers send the requests ([`client`]) on schedule and turn each answer into an action
//! with [`behaviour::Behaviour::react`] (its own generator stream per session); one writer
//! puts the lines ([`lines`]) in session order into the [`sink::EventSink`], feeds them to
//! the online evaluator, and reports ([`report`]).
//!
//! # Determinism and the virtual clock
//! Log times are virtual: session `k`, the `v`-th visit of its user, is stamped
//! `start + ⌊offset_k⌋ + v·visit_gap` (offset in seconds from the plan; `visit_gap` an hour,
//! longer when `minute_seconds` makes watches longer, so one user's sessions never share an
//! attribution window). With a fixed `start` and seed, two runs against servers giving the
//! same answers write the same lines, apart from the `<n> ms` latency field of
//! recommendation lines (the measured latency). Caveat: later visits are stamped hours after
//! the wall clock, so a live consumer that judges lag by record time should read the log as
//! a replay, not as live traffic.
//!
//! `--live` is the other clock, for a live evaluator beside servers that stamp impressions
//! with the wall clock: virtual time is the wall clock (`start` is now, no visit gap: a
//! user's next visit happens when it is due), and each line is written when its time comes
//! (a watch's minute lines one `minute_seconds` apart), so every partition of the sink is in
//! time order as a real service's log is. The run then lasts until its last line is due.
//!
//! # Bounds
//! A run is at most `count` sessions (or `duration × rate`), and stops taking sessions
//! `2 × timeout + 10 s` after the last one was due; what it skipped is counted.

pub mod behaviour;
pub mod cli;
pub mod client;
pub mod lines;
pub mod plan;
pub mod report;
pub mod sink;
pub mod world;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use behaviour::{Action, Behaviour};
pub use client::{Target, parse_target};
pub use plan::{Mix, Session, Visitor};
pub use report::{Summary, Tally};
pub use sink::{EventSink, SinkSpec};
pub use world::{World, WorldSource, load_world};

use crate::online::log::{LineOutcome, log_record};
use crate::online::{DEFAULT_WINDOW_SECONDS, Evaluator, MovieKeys};
use crate::util::SplitMix64;

/// Most sessions one run may plan.
pub const MAX_SESSIONS: u64 = 5_000_000;

const KIND_REACT: u64 = 0x5245_4143; // "REAC"

/// Everything a run needs besides the world and the sink.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where requests go.
    pub target: Target,
    /// Sessions per second.
    pub rate: f64,
    /// Sessions in all (see [`session_count`]).
    pub sessions: u64,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Seed of the plan and of every user's behaviour.
    pub seed: u64,
    /// Who visits.
    pub mix: Mix,
    /// How users react.
    pub behaviour: Behaviour,
    /// Virtual time of the first session, Unix seconds.
    pub start_time: i64,
    /// Virtual seconds between two sessions of the same user.
    pub visit_gap_secs: i64,
    /// Virtual seconds between two minute lines of a watch.
    pub minute_seconds: u32,
    /// One watch line per minute (the original format) rather than only the last minute.
    pub every_minute: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Print a progress line to stderr at most once a second.
    pub progress: bool,
    /// Write each line when its (wall-clock) time comes instead of at once.
    pub live: bool,
}

/// The number of sessions of a run: `count`, or `duration × rate`, the smaller when both
/// are given.
///
/// # Errors
/// A message when neither is given (a run is always bounded), when the rate is not a
/// positive number, or when the count exceeds [`MAX_SESSIONS`].
pub fn session_count(
    count: Option<u64>,
    duration: Option<Duration>,
    rate: f64,
) -> Result<u64, String> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!(
            "--rate must be a positive number of sessions per second, not {rate}"
        ));
    }
    let by_duration = duration.map(|d| (d.as_secs_f64() * rate).floor() as u64);
    let n = match (count, by_duration) {
        (None, None) => {
            return Err(
                "refusing an unbounded run: give --count N or --duration SECONDS".to_owned(),
            );
        }
        (Some(c), None) => c,
        (None, Some(d)) => d,
        (Some(c), Some(d)) => c.min(d),
    };
    if n > MAX_SESSIONS {
        return Err(format!(
            "{n} sessions is more than the limit of {MAX_SESSIONS} per run"
        ));
    }
    Ok(n)
}

/// What one session produced, for the writer.
#[derive(Debug, Default)]
struct Outcome {
    index: u64,
    skipped: bool,
    /// User id for the sink key (0 for malformed requests).
    user: u32,
    lines: Vec<String>,
    tally: Tally,
}

/// A line waiting for its time in live mode: (time, sequence, user, line).
type DueLine = (i64, u64, u32, String);

/// The writer's state: reorders outcomes into session order, writes (at once, or in live
/// mode when each line's time comes), feeds the evaluator.
struct Writer {
    sink: Box<dyn EventSink>,
    next: u64,
    pending: BTreeMap<u64, Outcome>,
    tally: Tally,
    evaluator: Evaluator,
    movies: MovieKeys,
    /// Live mode: lines not yet due, earliest first.
    due: Option<BinaryHeap<Reverse<DueLine>>>,
    queued: u64,
}

impl Writer {
    fn take(&mut self, outcome: Outcome) -> Result<(), String> {
        self.pending.insert(outcome.index, outcome);
        while let Some(outcome) = self.pending.remove(&self.next) {
            self.next += 1;
            merge(&mut self.tally, outcome.tally);
            self.tally.skipped += u64::from(outcome.skipped);
            for line in outcome.lines {
                if let Some(due) = &mut self.due {
                    let time = line
                        .split(',')
                        .next()
                        .and_then(|t| crate::data::events::parse_time(t.as_bytes()))
                        .unwrap_or(i64::MIN);
                    due.push(Reverse((time, self.queued, outcome.user, line)));
                    self.queued += 1;
                } else {
                    self.emit(outcome.user, &line)?;
                }
            }
        }
        Ok(())
    }

    /// Live mode: writes every line whose time is at or before `now` (Unix seconds).
    fn emit_due(&mut self, now: i64) -> Result<(), String> {
        while let Some(Reverse((time, ..))) = self.due.as_ref().and_then(BinaryHeap::peek) {
            if *time > now {
                break;
            }
            let Some(Reverse((_, _, user, line))) = self.due.as_mut().and_then(BinaryHeap::pop)
            else {
                break;
            };
            self.emit(user, &line)?;
        }
        Ok(())
    }

    fn waiting(&self) -> bool {
        self.due.as_ref().is_some_and(|d| !d.is_empty())
    }

    fn emit(&mut self, user: u32, line: &str) -> Result<(), String> {
        self.sink
            .write_line(user, line)
            .map_err(|e| format!("cannot write an event line: {e}"))?;
        self.tally.lines += 1;
        match log_record(line.as_bytes(), &mut self.movies, &mut self.evaluator) {
            Ok(LineOutcome::Record(record)) => self.evaluator.add(record),
            Ok(LineOutcome::FailedRequest) => {
                self.evaluator.counts_mut().failed_requests += 1;
            }
            Err(e) => {
                return Err(format!(
                    "wrote a line the evaluator cannot read ({e}): {line}"
                ));
            }
        }
        Ok(())
    }
}

fn merge(into: &mut Tally, from: Tally) {
    into.requests += from.requests;
    into.transport_errors += from.transport_errors;
    for (s, n) in from.statuses {
        *into.statuses.entry(s).or_default() += n;
    }
    into.malformed += from.malformed;
    into.malformed_accepted += from.malformed_accepted;
    into.bad_bodies += from.bad_bodies;
    into.unknown_users += from.unknown_users;
    into.minor_sessions += from.minor_sessions;
    into.adult_shown_to_minors += from.adult_shown_to_minors;
    for (v, n) in from.versions {
        *into.versions.entry(v).or_default() += n;
    }
    into.impression_ids += from.impression_ids;
    into.list_watches += from.list_watches;
    into.organic_watches += from.organic_watches;
    into.ratings += from.ratings;
    into.latencies_us.extend(from.latencies_us);
}

/// Runs the simulation and returns its summary; lines go to `sink` in session order.
///
/// # Errors
/// A message when the HTTP client cannot be built or the sink fails; failed requests are
/// counted, not errors.
pub async fn run(
    config: SimConfig,
    world: Arc<World>,
    sink: Box<dyn EventSink>,
) -> Result<Summary, String> {
    let sessions = Arc::new(plan::plan(
        config.seed,
        config.sessions,
        config.rate,
        &config.mix,
        &world,
    ));
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(config.timeout)
        .pool_max_idle_per_host(config.concurrency)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let started = Instant::now();
    let last_due = sessions.last().map_or(0, |s| s.offset_us);
    let deadline =
        started + Duration::from_micros(last_due) + 2 * config.timeout + Duration::from_secs(10);
    let config = Arc::new(config);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Outcome>(4 * config.concurrency.max(1));
    let workers = spawn_workers(&sessions, &client, &world, &config, &tx, started, deadline);
    drop(tx);
    let mut writer = Writer {
        sink,
        next: 0,
        pending: BTreeMap::new(),
        tally: Tally {
            planned: sessions.len() as u64,
            ..Tally::default()
        },
        evaluator: Evaluator::new(DEFAULT_WINDOW_SECONDS),
        movies: MovieKeys::default(),
        due: config.live.then(BinaryHeap::new),
        queued: 0,
    };
    let mut last_progress = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let wall = || chrono::Utc::now().timestamp();
    loop {
        tokio::select! {
            outcome = rx.recv() => {
                let Some(outcome) = outcome else { break };
                writer.take(outcome)?;
            }
            _ = tick.tick(), if config.live => {}
        }
        writer.emit_due(wall())?;
        if config.progress && last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            eprintln!(
                "{}",
                Summary::progress(&writer.tally, started.elapsed().as_secs_f64())
            );
        }
    }
    // Live mode: the last watches are still running; their lines come when due (at most
    // the longest watch after the last session).
    while writer.waiting() {
        tick.tick().await;
        writer.emit_due(wall())?;
    }
    for worker in workers {
        worker
            .await
            .map_err(|e| format!("a simulator worker failed: {e}"))?;
    }
    writer
        .sink
        .flush()
        .map_err(|e| format!("cannot flush the event sink: {e}"))?;
    let Writer {
        mut tally,
        evaluator,
        ..
    } = writer;
    let (online_counts, online) = evaluator.finish(|m| world.runtimes.get(m));
    let latency_ms = report::Latency::of(&mut tally.latencies_us);
    Ok(Summary {
        source: world.source.clone(),
        tally,
        latency_ms,
        seconds: started.elapsed().as_secs_f64(),
        online_counts,
        online,
    })
}

/// Starts `concurrency` workers that take sessions in plan order, wait for each one's due
/// time, run it (or mark it skipped past `deadline`) and send the outcome to `tx`.
fn spawn_workers(
    sessions: &Arc<Vec<Session>>,
    client: &reqwest::Client,
    world: &Arc<World>,
    config: &Arc<SimConfig>,
    tx: &tokio::sync::mpsc::Sender<Outcome>,
    started: Instant,
    deadline: Instant,
) -> Vec<tokio::task::JoinHandle<()>> {
    let next = Arc::new(AtomicUsize::new(0));
    (0..config.concurrency.max(1))
        .map(|_| {
            let (sessions, next, tx, client, world, config) = (
                sessions.clone(),
                next.clone(),
                tx.clone(),
                client.clone(),
                world.clone(),
                config.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(session) = sessions.get(i) else {
                        break;
                    };
                    let due = started + Duration::from_micros(session.offset_us);
                    tokio::time::sleep_until(due.into()).await;
                    let outcome = if Instant::now() > deadline {
                        Outcome {
                            index: session.index,
                            skipped: true,
                            ..Outcome::default()
                        }
                    } else {
                        run_session(&client, &config, &world, session).await
                    };
                    if tx.send(outcome).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect()
}

/// Virtual time of a session (see the module docs).
pub fn session_time(config: &SimConfig, session: &Session) -> i64 {
    config.start_time
        + (session.offset_us / 1_000_000) as i64
        + i64::from(session.visit) * config.visit_gap_secs
}

async fn run_session(
    client: &reqwest::Client,
    config: &SimConfig,
    world: &World,
    session: &Session,
) -> Outcome {
    let mut out = Outcome {
        index: session.index,
        ..Outcome::default()
    };
    let tally = &mut out.tally;
    tally.requests = 1;
    let (user, taste_user, minor) = match session.visitor {
        Visitor::Known { id, minor } => (id, id, minor),
        Visitor::Unknown { id, taste_user } => (id, taste_user, false),
        Visitor::Malformed(_) => (0, 0, false),
    };
    let malformed = matches!(session.visitor, Visitor::Malformed(_));
    tally.malformed = u64::from(malformed);
    tally.unknown_users = u64::from(matches!(session.visitor, Visitor::Unknown { .. }));
    tally.minor_sessions = u64::from(minor);
    let Ok(answer) = client::ask(client, &config.target, &session.visitor.path_id()).await else {
        tally.transport_errors = 1;
        return out;
    };
    tally.latencies_us.push(answer.latency.as_micros() as u64);
    tally.statuses.insert(answer.status, 1);
    tally
        .versions
        .insert(answer.version.clone().unwrap_or_else(|| "-".to_owned()), 1);
    tally.impression_ids = u64::from(answer.impression.is_some());
    if malformed {
        tally.malformed_accepted = u64::from(answer.status == 200);
        return out;
    }
    out.user = user;
    if answer.status == 200 && answer.ids.is_none() {
        tally.bad_bodies = 1;
    }
    let ids = answer.ids.unwrap_or_default();
    if minor {
        tally.adult_shown_to_minors = ids.iter().filter(|m| world.adult.contains(m)).count() as u64;
    }
    let time = session_time(config, session);
    let host = lines::host_label(answer.version.as_deref(), &config.target.host);
    let latency_ms = answer.latency.as_millis() as u64;
    out.lines.push(lines::recommendation(
        time,
        user,
        &host,
        config.target.port,
        answer.status,
        &ids,
        latency_ms,
    ));
    if answer.status != 200 {
        return out;
    }
    let mut rng = SplitMix64::stream(config.seed, KIND_REACT, session.index);
    let excluded = |m: u32| (minor && world.adult.contains(&m)) || world.has_seen(taste_user, m);
    let action = config.behaviour.react(
        &ids,
        |m| world.stars(taste_user, m),
        |rng| world.taste.organic(taste_user, excluded, rng),
        |m| world.runtime(m),
        &mut rng,
    );
    if let Some(action) = action {
        let tally = &mut out.tally;
        if action.position.is_some() {
            tally.list_watches = 1;
        } else {
            tally.organic_watches = 1;
        }
        tally.ratings = u64::from(action.rating.is_some());
        out.lines.extend(lines::action(
            time,
            user,
            &action,
            config.minute_seconds,
            config.every_minute,
            &mut rng,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_always_bounded() {
        assert!(
            session_count(None, None, 10.0)
                .unwrap_err()
                .contains("unbounded")
        );
        assert_eq!(session_count(Some(50), None, 10.0), Ok(50));
        assert_eq!(
            session_count(None, Some(Duration::from_secs(3)), 10.0),
            Ok(30)
        );
        assert_eq!(
            session_count(Some(20), Some(Duration::from_secs(3)), 10.0),
            Ok(20)
        );
        assert!(session_count(Some(10), None, 0.0).is_err());
        assert!(session_count(Some(10), None, f64::NAN).is_err());
        assert!(session_count(Some(MAX_SESSIONS + 1), None, 10.0).is_err());
    }
}
