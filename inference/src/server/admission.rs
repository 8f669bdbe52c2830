//! Admission for `/recommend`: bounds how long an admitted request waits, not only how many
//! are in flight, and keeps the model off the async workers.
//!
//! The model call runs on a small pool of compute threads fed by one FIFO queue. The async
//! workers only parse, admit and write, so `/healthz` and `/readyz` never wait behind
//! recommendation work. A request is admitted when the in-flight limit has room *and* the
//! queue's expected wait (jobs ahead × recent service time ÷ threads) is within
//! `max_queue_wait`; otherwise it gets a 503 at once. The estimate only sheds once a real
//! queue has built (at least [`MIN_QUEUE_ROUNDS`] jobs per thread waiting), and one slow
//! sample (a descheduled thread) moves the service time by at most a bounded step, so a
//! scheduler hiccup at low load is not read as overload. A job that still waited longer than
//! `max_queue_wait` when a thread picks it up (a burst, a stalled core) is answered 503
//! without running the model, and a job whose client already went away is skipped.
//!
//! With `threads == 0` the model runs inline on the async worker (no hand-off), which is
//! cheaper per request but gives no queue to shed from; kept for comparison in benchmarks.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::metrics::ServedPath;
use super::state::Recommender;

/// Admission limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// `/recommend` requests admitted at once (queued + running); beyond it, 503 at once.
    pub max_inflight: usize,
    /// Longest an admitted request may wait for a compute thread.
    pub max_queue_wait: Duration,
    /// Compute threads; 0 runs the model inline on the async workers.
    pub threads: usize,
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shed {
    /// The in-flight limit is reached.
    InflightLimit,
    /// The queue ahead would make it wait longer than `max_queue_wait`.
    QueueTooLong,
    /// It was admitted but waited longer than `max_queue_wait` before a thread took it.
    WaitedTooLong,
}

impl Shed {
    /// The body of the 503.
    pub fn message(self) -> &'static str {
        match self {
            Shed::InflightLimit => "overloaded: too many requests in flight",
            Shed::QueueTooLong | Shed::WaitedTooLong => {
                "overloaded: the wait for the model would be too long"
            }
        }
    }
}

/// Jobs per thread that must be waiting before the expected wait may shed: below it the
/// queue is a momentary pile-up that the threads clear in a round or so, and a shed there
/// would only ever be caused by a noisy service-time estimate. The expiry of jobs that
/// really waited too long ([`expired`]) still bounds the wait below it.
pub const MIN_QUEUE_ROUNDS: usize = 2;

/// Decides admission from the current load. Pure.
///
/// `inflight` counts admitted requests not yet answered (this one excluded), `queued` those
/// of them still waiting for a thread, `service` the recent per-job model time.
pub fn admit(
    config: &AdmissionConfig,
    inflight: usize,
    queued: usize,
    service: Duration,
) -> Result<(), Shed> {
    if inflight >= config.max_inflight {
        return Err(Shed::InflightLimit);
    }
    let real_queue = config.threads > 0 && queued >= MIN_QUEUE_ROUNDS * config.threads;
    if real_queue && expected_wait(queued, service, config.threads) > config.max_queue_wait {
        return Err(Shed::QueueTooLong);
    }
    Ok(())
}

/// Expected wait of a job joining a FIFO queue of `queued` jobs served by `threads` threads
/// that each take `service` per job.
pub fn expected_wait(queued: usize, service: Duration, threads: usize) -> Duration {
    let rounds = u32::try_from(queued / threads.max(1)).unwrap_or(u32::MAX);
    service.saturating_mul(rounds)
}

/// Whether a job that waited `waited` must be shed instead of run. Pure.
pub fn expired(config: &AdmissionConfig, waited: Duration) -> bool {
    waited > config.max_queue_wait
}

/// Largest multiple of the current service time that one sample counts as (see [`ewma_step`]).
pub const MAX_SAMPLE_STEP: u64 = 4;

/// Exponentially weighted moving average step (weight 1/8 for the new sample), in nanos.
///
/// A sample above [`MAX_SAMPLE_STEP`] × `previous` counts as that much, so one stall (a
/// descheduled thread) raises the average by at most 3/8, while a lasting slowdown still
/// compounds: 1.375× per sample, past 10× within eight samples.
pub fn ewma_step(previous: u64, sample: u64) -> u64 {
    if previous == 0 {
        sample
    } else {
        let sample = sample.min(previous.saturating_mul(MAX_SAMPLE_STEP));
        previous - previous / 8 + sample / 8
    }
}

/// What a compute job produced.
#[derive(Debug)]
pub enum Outcome {
    /// The list, best first, and the model path behind it.
    Served(Vec<u32>, ServedPath),
    /// Shed after waiting.
    Shed(Shed),
}

/// The work a job does: the model call, then (optionally) chaos CPU time.
pub type Work = Box<dyn FnOnce() -> (Vec<u32>, ServedPath) + Send + 'static>;

struct Job {
    enqueued: Instant,
    work: Work,
    reply: tokio::sync::oneshot::Sender<Outcome>,
}

struct Shared {
    queue: Mutex<VecDeque<Job>>,
    ready: Condvar,
    queued: AtomicUsize,
    service_nanos: AtomicU64,
    abandoned: AtomicU64,
    closed: AtomicBool,
    config: AdmissionConfig,
}

/// Stops the threads when the last [`Pool`] handle goes.
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        let _guard = self.0.queue.lock();
        self.0.ready.notify_all();
    }
}

/// The compute pool: threads that run the model, fed by one FIFO queue.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("config", &self.shared.config)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// Starts `config.threads` compute threads (none when it is 0). They finish the queue and
    /// exit once the last handle of the pool is dropped.
    pub fn start(config: AdmissionConfig) -> Pool {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            queued: AtomicUsize::new(0),
            service_nanos: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            config,
        });
        for i in 0..config.threads {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("movrek-model-{i}"))
                .spawn(move || worker(&shared));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a compute thread");
            }
        }
        Pool {
            _closer: Arc::new(Closer(Arc::clone(&shared))),
            shared,
        }
    }

    /// The limits.
    pub fn config(&self) -> &AdmissionConfig {
        &self.shared.config
    }

    /// Jobs waiting for a thread.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Recent model time per job.
    pub fn service_time(&self) -> Duration {
        Duration::from_nanos(self.shared.service_nanos.load(Ordering::Relaxed))
    }

    /// Jobs skipped because their client had gone away.
    pub fn abandoned(&self) -> u64 {
        self.shared.abandoned.load(Ordering::Relaxed)
    }

    /// Admission for one request given the current in-flight count.
    pub fn admit(&self, inflight: usize) -> Result<(), Shed> {
        admit(
            &self.shared.config,
            inflight,
            self.queued(),
            self.service_time(),
        )
    }

    /// Runs `work` on a compute thread (inline when the pool has no threads) and returns
    /// what it produced, or a shed when it waited too long.
    pub async fn run(&self, work: Work) -> Outcome {
        if self.shared.config.threads == 0 {
            let started = Instant::now();
            let (movies, path) = work();
            self.record_service(started.elapsed());
            return Outcome::Served(movies, path);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        {
            let mut queue = self
                .shared
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            queue.push_back(Job {
                enqueued: Instant::now(),
                work,
                reply,
            });
            self.shared.queued.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.ready.notify_one();
        // The sender is dropped only if the job panicked; shed it rather than hang.
        answer.await.unwrap_or(Outcome::Shed(Shed::WaitedTooLong))
    }

    fn record_service(&self, elapsed: Duration) {
        record_service(&self.shared, elapsed);
    }
}

fn record_service(shared: &Shared, elapsed: Duration) {
    let sample = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    let _ = shared
        .service_nanos
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
            Some(ewma_step(old, sample))
        });
}

fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut queue = shared
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if let Some(job) = queue.pop_front() {
                    shared.queued.fetch_sub(1, Ordering::Relaxed);
                    break job;
                }
                if shared.closed.load(Ordering::Acquire) {
                    return;
                }
                queue = shared
                    .ready
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        if job.reply.is_closed() {
            shared.abandoned.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if expired(&shared.config, job.enqueued.elapsed()) {
            let _ = job.reply.send(Outcome::Shed(Shed::WaitedTooLong));
            continue;
        }
        let started = Instant::now();
        let work = job.work;
        // A panicking model must not take the thread down with it: the job is answered 503
        // (its sender is dropped) and the panic is logged by the process panic hook.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        record_service(shared, started.elapsed());
        if let Ok((movies, path)) = result {
            let _ = job.reply.send(Outcome::Served(movies, path));
        }
    }
}

/// The model call of one request as a [`Work`]: the list, plus `cpu` of busy time (chaos: a
/// slower model) when non-zero.
pub fn model_work(model: Arc<dyn Recommender>, user: u32, n: usize, cpu: Duration) -> Work {
    Box::new(move || {
        let started = Instant::now();
        let answer = model.recommend(user, n);
        while started.elapsed() < cpu {
            std::hint::spin_loop();
        }
        answer
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config(threads: usize) -> AdmissionConfig {
        AdmissionConfig {
            max_inflight: 10,
            max_queue_wait: 20 * MS,
            threads,
        }
    }

    #[test]
    fn inflight_limit_sheds_first() {
        assert_eq!(admit(&config(2), 9, 0, MS), Ok(()));
        assert_eq!(admit(&config(2), 10, 0, MS), Err(Shed::InflightLimit));
        assert_eq!(admit(&config(0), 10, 0, MS), Err(Shed::InflightLimit));
    }

    #[test]
    fn expected_wait_bounds_admission() {
        // 2 threads, 5 ms per job: 8 queued → 4 rounds → 20 ms: still within 20 ms.
        assert_eq!(expected_wait(8, 5 * MS, 2), 20 * MS);
        assert_eq!(admit(&config(2), 0, 8, 5 * MS), Ok(()));
        // 10 queued → 25 ms: shed at once, before waiting.
        assert_eq!(admit(&config(2), 0, 10, 5 * MS), Err(Shed::QueueTooLong));
        // Unknown service time (no job yet) never sheds on the queue.
        assert_eq!(admit(&config(2), 0, 9, Duration::ZERO), Ok(()));
        // Inline mode has no queue to judge.
        assert_eq!(admit(&config(0), 0, 1000, 5 * MS), Ok(()));
    }

    #[test]
    fn waited_jobs_expire_past_the_bound() {
        assert!(!expired(&config(1), 20 * MS));
        assert!(expired(&config(1), 21 * MS));
    }

    #[test]
    fn ewma_starts_at_the_first_sample_and_moves_by_an_eighth() {
        assert_eq!(ewma_step(0, 800), 800);
        assert_eq!(ewma_step(800, 1600), 900);
        assert_eq!(ewma_step(800, 0), 700);
        // A sample far above the average counts as 4× it: 800 - 100 + 3200 / 8.
        assert_eq!(ewma_step(800, 1_000_000), 1100);
    }

    /// The service time after `samples` (nanos) fold into the average, as the pool does.
    fn service_after(samples: impl IntoIterator<Item = Duration>) -> Duration {
        let nanos = samples.into_iter().fold(0, |average, sample| {
            ewma_step(average, u64::try_from(sample.as_nanos()).unwrap())
        });
        Duration::from_nanos(nanos)
    }

    #[test]
    fn a_single_stall_at_low_load_does_not_shed() {
        // 2 threads, 1 ms jobs, then one job whose thread was descheduled for 400 ms. With a
        // plain average that one sample alone would read as 50.9 ms per job.
        let config = AdmissionConfig {
            max_inflight: 100,
            max_queue_wait: 50 * MS,
            threads: 2,
        };
        let steady = std::iter::repeat_n(MS, 20);
        let stalled = service_after(steady.clone().chain([400 * MS]));
        assert!(
            stalled < 2 * MS,
            "one stall moved the estimate to {stalled:?}"
        );
        // A momentary pile-up (one job per thread, or a few more) is never shed on the
        // estimate, even with a stale high one (a stall on the very first job).
        for queued in 0..4 {
            assert_eq!(admit(&config, queued, queued, stalled), Ok(()));
            assert_eq!(admit(&config, queued, queued, 400 * MS), Ok(()));
        }
        // A lasting slowdown is still seen: 30 ms per job from the 21st on, 4 queued → 60 ms.
        let slow = service_after(steady.chain(std::iter::repeat_n(30 * MS, 20)));
        assert!(slow > 25 * MS, "{slow:?}");
        assert_eq!(admit(&config, 4, 4, slow), Err(Shed::QueueTooLong));
    }

    #[derive(Debug)]
    struct Fixed;

    impl Recommender for Fixed {
        fn recommend(&self, user: u32, n: usize) -> (Vec<u32>, ServedPath) {
            ((user..).take(n).collect(), ServedPath::Personal)
        }
        fn version(&self) -> &'static str {
            "v"
        }
        fn data_sha256(&self) -> &'static str {
            ""
        }
        fn provenance(&self) -> serde_json::Value {
            serde_json::Value::Null
        }
    }

    #[tokio::test]
    async fn pool_runs_jobs_and_sheds_those_that_waited_too_long() {
        let pool = Pool::start(AdmissionConfig {
            max_inflight: 100,
            max_queue_wait: 30 * MS,
            threads: 1,
        });
        match pool
            .run(model_work(Arc::new(Fixed), 5, 3, Duration::ZERO))
            .await
        {
            Outcome::Served(movies, ServedPath::Personal) => assert_eq!(movies, [5, 6, 7]),
            other => panic!("expected a list, got {other:?}"),
        }
        // One 60 ms job occupies the only thread; the job queued behind it waits > 30 ms.
        let slow = pool.run(model_work(Arc::new(Fixed), 1, 1, 60 * MS));
        let behind = pool.run(model_work(Arc::new(Fixed), 2, 1, Duration::ZERO));
        let (slow, behind) = tokio::join!(slow, behind);
        assert!(matches!(slow, Outcome::Served(..)), "{slow:?}");
        assert!(
            matches!(behind, Outcome::Shed(Shed::WaitedTooLong)),
            "{behind:?}"
        );
        assert!(pool.service_time() > Duration::ZERO);
        assert_eq!(pool.queued(), 0);
    }
}
