//! The `movrek simulate` command line: flags, their checks, and the one call that runs the
//! simulation (the binary only dispatches here).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Behaviour, Mix, SimConfig, SinkSpec, WorldSource, load_world, parse_target, session_count,
};

/// Flags of `movrek simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Server or ingress to send requests to; only 127.0.0.0/8 (or localhost) is accepted.
    #[arg(long, default_value = "http://127.0.0.1:8082")]
    pub target: String,
    /// `Host` header of every request, for a target that routes by virtual host (an ingress
    /// or a Gateway listener, e.g. `movies.example`).
    #[arg(long)]
    pub host: Option<String>,
    /// Data directory of the users: a `movrek generate` output (its `taste.csv` and
    /// `runtimes.csv` are the hidden truth) or any other set, whose seeded split's held-out
    /// ratings stand for the taste.
    #[arg(long)]
    pub data: PathBuf,
    /// Sessions (one `/recommend` each) per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Sessions in all.
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds to run (`duration × rate` sessions; with `--count`, the smaller).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Seed of who visits when and of every user's behaviour.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Event sink: `file:PATH`, `stdout` or `kafka://HOST:PORT/TOPIC`.
    #[arg(long, default_value = "stdout")]
    pub sink: String,
    /// Share of sessions by users the server does not know.
    #[arg(long, default_value_t = Mix::default().unknown)]
    pub unknown_share: f64,
    /// Share of known-user sessions by minors (default: their share in the data).
    #[arg(long)]
    pub minor_share: Option<f64>,
    /// Share of malformed requests.
    #[arg(long, default_value_t = Mix::default().malformed)]
    pub malformed_share: f64,
    /// Probability that a session starts a burst.
    #[arg(long, default_value_t = Mix::default().burst)]
    pub burst_share: f64,
    /// Sessions sent at once in a burst.
    #[arg(long, default_value_t = Mix::default().burst_size)]
    pub burst_size: u32,
    /// Virtual time of the first session (`2024-05-01T12:00:00`; default: now). Fixing it
    /// makes the log reproducible (see `movrek_inference::simulate`).
    #[arg(long)]
    pub start: Option<String>,
    /// Virtual seconds between two minute lines of a watch (60 is real time, but then
    /// watches longer than the 30 min attribution window are cut short by the evaluator).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub minute_seconds: u32,
    /// Write only the last minute of each watch instead of one line per minute.
    #[arg(long)]
    pub last_minute_only: bool,
    /// Seed of the split when the taste is held-out ratings (as `movrek eval --seed`).
    #[arg(long, default_value_t = 42)]
    pub split_seed: u64,
    /// Held-out fraction of that split.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    /// Live clock: log times are the wall clock, a user's next visit happens when it is due,
    /// and each line is written when its time comes (a live service's log, in time order), so
    /// a live evaluator can join it with impressions servers stamp now. Not with `--start`.
    #[arg(long, conflicts_with = "start")]
    pub live: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

fn share(name: &str, value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("--{name} must be within 0..1, not {value}"))
    }
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    if value.is_finite() && value > 0.0 && value <= 86_400.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!(
            "--{name} must be within (0, 86400] seconds, not {value}"
        ))
    }
}

/// The checked configuration of a command line (everything but the world and the sink).
///
/// # Errors
/// A message naming the bad flag.
pub fn config(args: &SimulateArgs) -> Result<SimConfig, String> {
    let mut target = parse_target(&args.target)?;
    if let Some(host) = &args.host {
        if host.is_empty()
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '/')
        {
            return Err(format!("--host {host:?} is not a host name"));
        }
        target.virtual_host = Some(host.clone());
    }
    let duration = args.duration.map(|d| seconds("duration", d)).transpose()?;
    let sessions = session_count(args.count, duration, args.rate)?;
    let mix = Mix {
        unknown: share("unknown-share", args.unknown_share)?,
        minors: args
            .minor_share
            .map(|m| share("minor-share", m))
            .transpose()?,
        malformed: share("malformed-share", args.malformed_share)?,
        burst: share("burst-share", args.burst_share)?,
        burst_size: args.burst_size.max(1),
        ..Mix::default()
    };
    let start_time = match &args.start {
        Some(text) => crate::data::events::parse_time(text.as_bytes()).ok_or_else(|| {
            format!("--start {text:?} is not an ISO time such as 2024-05-01T12:00:00")
        })?,
        None => chrono::Utc::now().timestamp(),
    };
    Ok(SimConfig {
        target,
        rate: args.rate,
        sessions,
        concurrency: args.concurrency as usize,
        seed: args.seed,
        mix,
        behaviour: Behaviour::default(),
        start_time,
        // An hour, or longer than the longest watch (240 min of minute lines) when minutes
        // are slow, so one visit's lines never reach the user's next impression.
        visit_gap_secs: if args.live {
            0
        } else {
            3600.max(300 * i64::from(args.minute_seconds))
        },
        minute_seconds: args.minute_seconds,
        every_minute: !args.last_minute_only,
        timeout: seconds("timeout", args.timeout)?,
        progress: !args.quiet,
        live: args.live,
    })
}

/// Runs `movrek simulate`: loads the world, runs, prints the summary to stderr.
///
/// # Errors
/// A one-line message for bad flags, unreadable data, a failing sink or client, or a run in
/// which no request got an answer (after the summary is printed).
pub fn simulate(args: &SimulateArgs) -> Result<(), String> {
    let config = config(args)?;
    let sink = SinkSpec::parse(&args.sink)?;
    let test_fraction = args.test_fraction;
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(format!(
            "--test-fraction must be within (0, 1), not {test_fraction}"
        ));
    }
    let world = load_world(&WorldSource {
        dir: &args.data,
        split_seed: args.split_seed,
        test_fraction,
    })?;
    eprintln!("simulate: {}", world.source);
    let sink = sink.open()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let summary = runtime.block_on(super::run(config, Arc::new(world), sink))?;
    runtime.shutdown_timeout(Duration::from_millis(100));
    eprint!("{}", summary.to_table());
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_string_pretty(&summary)
            .map_err(|e| format!("cannot encode the summary: {e}"))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let tally = &summary.tally;
    if tally.requests > 0 && tally.transport_errors == tally.requests {
        return Err(format!("no request got an answer from {}", args.target));
    }
    Ok(())
}
