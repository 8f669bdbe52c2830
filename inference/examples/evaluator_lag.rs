//! Rust side of `bench/evaluator-lag.sh`: produces live traffic at a paced rate to the
//! impressions and events topics (event time = now) while polling a running `movrek
//! evaluate`'s `/metrics`, and reports the lag from a record's produce call to the first
//! scrape whose `movrek_online_records_total` includes it.
//!
//! Records are counted in event-time order, and they are produced in that order, so the
//! k-th record produced is included once the counter reaches k (the evaluator must start
//! from an empty state on fresh topics). Every 10 ms tick sends `rate / 100` records and
//! notes (time, records sent so far); each tick is one lag sample.
//!
//! ```text
//! cargo run --release -p movrek-inference --example evaluator_lag -- \
//!     --brokers 127.0.0.1:9092 --metrics 127.0.0.1:9102 --rate 5000 --seconds 60
//! ```

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use movrek_inference::bus::KafkaUri;
use movrek_inference::bus::events::EventWriter;
use movrek_inference::bus::impression::Impression;

/// Paced live traffic and the evaluator's lag.
#[path = "../tests/support/mod.rs"]
mod support;

/// `movrek_online_records_total` from one scrape of the evaluator at `address`.
fn records_counted(address: &str) -> Option<u64> {
    let value = support::scrape(address)?
        .get("movrek_online_records_total")
        .copied()?;
    // A counter of records: whole and not negative.
    Some(value.max(0.0) as u64)
}

#[derive(Debug, Parser)]
struct Args {
    /// Kafka brokers.
    #[arg(long)]
    brokers: String,
    /// Topic of impressions.
    #[arg(long, default_value = "impressions")]
    impressions_topic: String,
    /// Topic of events.
    #[arg(long, default_value = "events")]
    events_topic: String,
    /// The evaluator's metrics address, `host:port`.
    #[arg(long)]
    metrics: String,
    /// Event lines per second on the events topic (impressions come on top: one per
    /// session of four actions).
    #[arg(long, default_value_t = 5_000)]
    rate: u64,
    /// How long to produce.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// How long to wait after the last record for the counter to include it.
    #[arg(long, default_value_t = 30)]
    drain_seconds: u64,
    /// Users to draw from.
    #[arg(long, default_value_t = 100_000)]
    users: u32,
}

/// Lag of each send sample (seconds since start, records sent so far): the first scrape
/// at or after it whose count reached it. `None` for a sample never reached.
fn lags(sends: &[(f64, u64)], scrapes: &[(f64, u64)]) -> Vec<Option<f64>> {
    sends
        .iter()
        .map(|&(sent_at, sent)| {
            scrapes
                .iter()
                .find(|&&(at, count)| at >= sent_at && count >= sent)
                .map(|&(at, _)| at - sent_at)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn iso(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// What was produced: a sample per tick (seconds since start, records sent so far), the
/// records and event lines sent, and for how long.
struct Produced {
    sends: Vec<(f64, u64)>,
    sent: u64,
    actions: u64,
    seconds: f64,
}

/// Produces the paced traffic and waits for the broker to acknowledge it.
fn produce(args: &Args, start: Instant) -> Result<Produced, String> {
    let uri = |topic: &str| -> Result<KafkaUri, String> {
        format!("kafka://{}/{topic}", args.brokers).parse()
    };
    let mut impressions = EventWriter::open(&uri(&args.impressions_topic)?)?;
    let mut events = EventWriter::open(&uri(&args.events_topic)?)?;
    let per_tick = (args.rate / 100).max(1);
    let ticks = args.seconds * 100;
    let mut rng = movrek_inference::util::SplitMix64::new(7);
    let (mut sent, mut actions) = (0_u64, 0_u64);
    let mut sends = Vec::with_capacity(usize::try_from(ticks).unwrap_or(0));
    for tick in 0..ticks {
        let due = Duration::from_millis(10 * tick);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let now = chrono::Utc::now();
        for _ in 0..per_tick {
            let user = 1 + u32::try_from(rng.below(u64::from(args.users))).unwrap_or(0);
            if actions % 4 == 0 {
                let record = Impression {
                    v: 1,
                    id: format!("lag-{sent}"),
                    time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    user,
                    movies: (0..20).map(|_| 1 + rng.below(5_000) as u32).collect(),
                    release: "bench".to_owned(),
                    track: if user % 5 == 0 { "canary" } else { "stable" }.to_owned(),
                    model_version: "v1".to_owned(),
                    artifact_sha256: "s".to_owned(),
                };
                impressions.write_keyed(user.to_string().as_bytes(), &record.to_json())?;
                sent += 1;
            }
            let movie = 1 + rng.below(5_000);
            let line = if rng.below(10) < 3 {
                format!("{},{user},GET /rate/{movie}={}", iso(now), 1 + rng.below(5))
            } else {
                format!(
                    "{},{user},GET /data/m/{movie}/{}.mpg",
                    iso(now),
                    rng.below(90)
                )
            };
            events.write(user, &line)?;
            actions += 1;
            sent += 1;
        }
        sends.push((start.elapsed().as_secs_f64(), sent));
    }
    let seconds = start.elapsed().as_secs_f64();
    impressions.finish(Duration::from_secs(30))?;
    events.finish(Duration::from_secs(30))?;
    Ok(Produced {
        sends,
        sent,
        actions,
        seconds,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let start = Instant::now();
    let metrics = args.metrics.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut scrapes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = start.elapsed().as_secs_f64();
                if let Some(count) = records_counted(&metrics) {
                    scrapes.push((at, count));
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            scrapes
        })
    };
    let produced = produce(&args, start);
    if let Ok(p) = &produced {
        let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
        while Instant::now() < deadline && records_counted(&args.metrics).is_none_or(|c| c < p.sent)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let scrapes = poller.join().unwrap_or_default();
    match produced {
        Ok(produced) => report(&produced, &scrapes),
        Err(e) => {
            eprintln!("evaluator_lag: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(produced: &Produced, scrapes: &[(f64, u64)]) -> ExitCode {
    let Produced {
        sends,
        sent,
        actions,
        seconds,
    } = produced;
    let lags = lags(sends, scrapes);
    let missing = lags.iter().filter(|l| l.is_none()).count();
    let mut reached: Vec<f64> = lags.into_iter().flatten().collect();
    reached.sort_by(f64::total_cmp);
    println!(
        "produced {sent} records ({actions} event lines, {} impressions) in {seconds:.1} s: \
         {:.0} event lines/s",
        sent - actions,
        *actions as f64 / seconds
    );
    println!(
        "scrapes: {} (every 25 ms); last count {}",
        scrapes.len(),
        scrapes.last().map_or(0, |s| s.1)
    );
    if reached.is_empty() {
        println!("lag: no sample reached the metrics");
        return ExitCode::FAILURE;
    }
    println!(
        "lag produce -> /metrics over {} samples: p50 {:.3} s, p99 {:.3} s, max {:.3} s{}",
        reached.len(),
        percentile(&reached, 0.50),
        percentile(&reached, 0.99),
        reached[reached.len() - 1],
        if missing > 0 {
            format!("; {missing} samples never reached")
        } else {
            String::new()
        }
    );
    // The same per 10 s of sending, to tell a start-up effect from a steady one.
    let per_segment = lags_by_segment(sends, scrapes, 10.0);
    for (segment, sorted) in per_segment.iter().enumerate() {
        if let Some(&max) = sorted.last() {
            println!(
                "  {:>3}-{:<3} s: p50 {:.3} s, p99 {:.3} s, max {max:.3} s",
                segment * 10,
                segment * 10 + 10,
                percentile(sorted, 0.50),
                percentile(sorted, 0.99),
            );
        }
    }
    if missing > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Reached lags grouped by the `width`-second segment they were sent in, each sorted.
fn lags_by_segment(sends: &[(f64, u64)], scrapes: &[(f64, u64)], width: f64) -> Vec<Vec<f64>> {
    let mut segments: Vec<Vec<f64>> = Vec::new();
    for (&(sent_at, _), lag) in sends.iter().zip(lags(sends, scrapes)) {
        let index = (sent_at / width) as usize;
        if segments.len() <= index {
            segments.resize_with(index + 1, Vec::new);
        }
        if let Some(lag) = lag {
            segments[index].push(lag);
        }
    }
    for segment in &mut segments {
        segment.sort_by(f64::total_cmp);
    }
    segments
}
