//! `movrek`: command-line entry point (generate, ingest, train, publish, eval, serve,
//! recommend, …).
//!
//! Each subcommand parses its flags, calls one library function, and turns errors into a
//! one-line message (the whole cause chain) and a non-zero exit code: 1 for a failure at run
//! time, 2 for bad usage (clap's convention).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use movrek_contract::env as pod_env;
use movrek_inference::bus::KafkaUri;
use movrek_inference::bus::publish::{Compression, PublisherConfig};
use movrek_inference::bus::read::ReadBounds;
use movrek_inference::data::synth::SynthParams;
use movrek_inference::data::{self, Dataset, QualityReport, RatingScale};
use movrek_inference::server::{
    self, ConnLimits, DrainPolicy, Faults, FetchLimits, ModelSource, ModelUri, ServeConfig,
    StateConfig, Track,
};
use movrek_inference::{artifact, eval, train};

#[derive(Debug, Parser)]
#[command(
    name = "movrek",
    version,
    about = "Movie recommendations: data, kNN model, evaluation, HTTP serving"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a deterministic synthetic data set in MovieLens-1M format.
    Generate(GenerateArgs),
    /// Turn a simulator event log into a data directory (ML-1M layout + `watches.dat`).
    Ingest(IngestArgs),
    /// Train the served model on a data directory and write one artifact file.
    Train(TrainArgs),
    /// Publish an artifact and its record to the model store:
    /// `<prefix>/<release>/<version>/model.movrek` and `model.json`, never overwriting.
    Publish(PublishArgs),
    /// Evaluate offline: a seeded 80/20 split of `--data`, or explicit `--train`/`--test`.
    Eval(EvalArgs),
    /// Serve recommendations over HTTP (the inference pod).
    Serve(ServeArgs),
    /// Print the recommendation list of one user from an artifact.
    Recommend(RecommendArgs),
    /// Score an event log offline with the online-evaluation rule, per answering host.
    OnlineEval(OnlineEvalArgs),
    /// Run the online evaluator: join impressions and events from Kafka, export scores.
    Evaluate(EvaluateArgs),
    /// Send simulated users' traffic to a local server and log what they did.
    Simulate(movrek_inference::simulate::cli::SimulateArgs),
    /// Retrain from the events since the stable version, gate against it, publish, notify
    /// (exit 0: published or nothing to do; 3: refused by a gate; 1: failed).
    Retrain(movrek_inference::retrain::cli::RetrainArgs),
    /// Print a retrained version's fairness report (`fairness.json`, a path or a store URI)
    /// per group, candidate beside stable; `--svg DIR` also draws one chart per dimension.
    Report(movrek_inference::retrain::report::ReportArgs),
}

#[derive(Debug, Args)]
struct GenerateArgs {
    /// Number of users.
    #[arg(long, default_value_t = SynthParams::default().users)]
    users: usize,
    /// Number of movies.
    #[arg(long, default_value_t = SynthParams::default().movies)]
    movies: usize,
    /// Number of ratings.
    #[arg(long, default_value_t = SynthParams::default().ratings)]
    ratings: usize,
    /// Random seed.
    #[arg(long, default_value_t = SynthParams::default().seed)]
    seed: u64,
    /// Output directory (`ratings.dat`, `users.dat`, `movies.dat`).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["log", "from"])))]
struct IngestArgs {
    /// Event log file (`-` reads standard input).
    #[arg(long)]
    log: Option<PathBuf>,
    /// Topic of event lines, `kafka://HOST:PORT[,HOST:PORT…]/TOPIC`, one line per record:
    /// read from the earliest offset (or `--since`) up to the end offsets seen at start
    /// (or `--until`, or `--max-records`), so the command always ends.
    #[arg(long)]
    from: Option<KafkaUri>,
    /// With `--from`: start at the first record whose Kafka timestamp is at or after TIME
    /// (RFC 3339, or `2026-12-04T08:00:00` read as UTC).
    #[arg(long, conflicts_with = "log", value_parser = parse_time_bound)]
    since: Option<i64>,
    /// With `--from`: stop before the first record whose Kafka timestamp is at or after
    /// TIME.
    #[arg(long, conflicts_with = "log", value_parser = parse_time_bound)]
    until: Option<i64>,
    /// With `--from`: stop after N records.
    #[arg(long, conflicts_with = "log")]
    max_records: Option<u64>,
    /// With `--from`: seconds the broker has to answer, and a read to advance.
    #[arg(long, conflicts_with = "log", value_parser = parse_seconds, default_value = "10")]
    kafka_timeout_secs: Duration,
    /// Output directory; `quality.json` is written there too.
    #[arg(long)]
    out: PathBuf,
}

fn parse_time_bound(value: &str) -> Result<i64, String> {
    movrek_inference::bus::read::parse_time_bound(value)
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Data directory: a `MovieLens` layout (100k, 1M, "latest" CSV) or the ingest output.
    #[arg(long)]
    data: PathBuf,
    /// Artifact file to write (the quality report goes to `<out>.quality.json`).
    #[arg(long)]
    out: PathBuf,
    /// Model version recorded in the artifact (`spec.model.version`).
    #[arg(long)]
    version: String,
    /// Training parameters as a JSON object (missing fields take their defaults).
    #[arg(long)]
    params: Option<PathBuf>,
    /// Ranking learned for users with a history: `ease` (the default), `als`, or `user-knn`
    /// (overrides `algo` in `--params`).
    #[arg(long, value_parser = parse_algo)]
    algo: Option<train::Algo>,
}

fn parse_algo(value: &str) -> Result<train::Algo, String> {
    train::Algo::ALL
        .into_iter()
        .find(|a| a.name() == value)
        .ok_or_else(|| {
            let names: Vec<&str> = train::Algo::ALL.iter().map(|a| a.name()).collect();
            format!("unknown algorithm {value:?}; one of {}", names.join(", "))
        })
}

/// `--params FILE` (a partial `TrainParams` JSON object) over `base`, then `--algo`.
fn train_params(
    path: Option<&Path>,
    algo: Option<train::Algo>,
    base: train::TrainParams,
) -> Result<train::TrainParams, String> {
    let mut params = match path {
        Some(path) => base.overlaid_with_file(path)?,
        None => base,
    };
    if let Some(algo) = algo {
        params.algo = algo;
    }
    Ok(params)
}

#[derive(Debug, Args)]
struct PublishArgs {
    /// Artifact file written by `movrek train`.
    #[arg(long)]
    model: PathBuf,
    /// Store prefix: `s3://bucket/prefix`, `gs://…`, `az://container/…`, `file:///dir` or a
    /// directory. Credentials come from the provider's usual environment variables.
    #[arg(long, env = "MOVREK_STORE")]
    to: String,
    /// Release name (the `RecommenderRelease`), the first path segment under the prefix.
    #[arg(long, env = pod_env::RELEASE)]
    release: String,
    /// Model version; must be the artifact's own (the default).
    #[arg(long = "model-version")]
    model_version: Option<String>,
    /// Offline evaluation report to record (`movrek eval --json` output).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Data-quality report to record (default: `<model>.quality.json` when it exists).
    #[arg(long)]
    quality: Option<PathBuf>,
    /// Deadline for each store operation, in seconds.
    #[arg(long, env = "MOVREK_MODEL_TIMEOUT_SECS", default_value_t = FetchLimits::default().timeout.as_secs())]
    timeout_secs: u64,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["data", "train"])))]
struct EvalArgs {
    /// Data directory, split 80/20 with `--seed`.
    #[arg(long, conflicts_with_all = ["train", "test"])]
    data: Option<PathBuf>,
    /// Training ratings file (any supported ratings format).
    #[arg(long, requires = "test")]
    train: Option<PathBuf>,
    /// Test ratings file.
    #[arg(long, requires = "train")]
    test: Option<PathBuf>,
    /// Seed of the split.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Held-out fraction of the split.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Rank for at most this many test users (seeded sample); all by default.
    #[arg(long)]
    max_ranking_users: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Write SVG charts (and the data-quality JSON) into this directory.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Write the split as `train.csv`, `test.csv` and `split.json` into this directory, so a
    /// peer evaluates exactly the same pairs.
    #[arg(long)]
    split_out: Option<PathBuf>,
    /// Write each ranker's per-user precision, recall and NDCG as CSV to this file, for a
    /// paired comparison with peers on the same split (`bench/quality.sh`).
    #[arg(long)]
    per_user_out: Option<PathBuf>,
    /// Served model's training parameters as a JSON object (missing fields take the
    /// evaluation's defaults).
    #[arg(long)]
    params: Option<PathBuf>,
    /// Ranking the served model learns (see `movrek train --algo`).
    #[arg(long, value_parser = parse_algo)]
    algo: Option<train::Algo>,
}

#[derive(Debug, Args)]
struct RecommendArgs {
    /// Artifact file.
    #[arg(long)]
    model: PathBuf,
    /// External user id.
    #[arg(long, value_parser = parse_user)]
    user: u32,
    /// List length.
    #[arg(long, default_value_t = server::LIST_LEN)]
    n: usize,
    /// Expected SHA-256 of the artifact.
    #[arg(long)]
    sha256: Option<String>,
}

/// Runtime assumed for every movie when no `--movies` file is given: a typical feature
/// length, so that watch fractions are comparable across versions.
const DEFAULT_RUNTIME_MINUTES: u32 = 100;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["log", "events"])))]
struct OnlineEvalArgs {
    /// Event log in the original line format (`-` reads standard input). Its
    /// recommendation-request lines are the impressions; `<host>:<port>` names the version.
    #[arg(long)]
    log: Option<PathBuf>,
    /// Topic of event lines, `kafka://HOST:PORT[,…]/TOPIC` (as `movrek evaluate
    /// --events-topic`), read to the end offsets seen at start. Without `--impressions`
    /// its recommendation-request lines are the impressions, as in `--log`.
    #[arg(long)]
    events: Option<KafkaUri>,
    /// Topic of impression records from `movrek serve`, `kafka://HOST:PORT[,…]/TOPIC`
    /// (as `movrek evaluate --impressions-topic`), merged with `--events` in event-time
    /// order.
    #[arg(long, conflicts_with = "log")]
    impressions: Option<KafkaUri>,
    /// With `--impressions`: count recommendation-request lines on the events topic as
    /// impressions too (as `movrek evaluate --log-impressions`).
    #[arg(long, requires = "impressions", conflicts_with = "log")]
    log_impressions: bool,
    /// With `--events`: read records whose Kafka timestamp is at or after TIME (RFC 3339,
    /// or `2026-12-04T08:00:00` read as UTC).
    #[arg(long, conflicts_with = "log", value_parser = parse_time_bound)]
    since: Option<i64>,
    /// With `--events`: read records whose Kafka timestamp is before TIME.
    #[arg(long, conflicts_with = "log", value_parser = parse_time_bound)]
    until: Option<i64>,
    /// With `--events`: seconds the broker has to answer, and a read to advance.
    #[arg(long, conflicts_with = "log", value_parser = parse_seconds, default_value = "10")]
    kafka_timeout_secs: Duration,
    /// Movie metadata CSV with a header naming `movieId` and a runtime column (`runtime`,
    /// `runtimeMinutes` or `length`, whole minutes). Watches of movies it lacks are
    /// unscored unless `--default-runtime` is given.
    #[arg(long)]
    movies: Option<PathBuf>,
    /// Runtime in minutes for movies without one (default without `--movies`: 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    default_runtime: Option<u32>,
    /// Attribution window in seconds: an action counts for the user's latest list shown at
    /// most this long before it.
    #[arg(long, default_value_t = movrek_inference::online::DEFAULT_WINDOW_SECONDS)]
    window_secs: i64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct EvaluateArgs {
    /// Kafka brokers, `host:port[,host:port…]`.
    #[arg(long, env = pod_env::KAFKA_BROKERS)]
    brokers: String,
    /// Topic of impression records (from `movrek serve`).
    #[arg(long, env = pod_env::IMPRESSIONS_TOPIC, default_value = movrek_inference::bus::IMPRESSIONS_TOPIC)]
    impressions_topic: String,
    /// Topic of event lines (watches, ratings, recommendation requests).
    #[arg(long, env = "MOVREK_EVENTS_TOPIC", default_value = movrek_inference::bus::EVENTS_TOPIC)]
    events_topic: String,
    /// Compacted topic the evaluator checkpoints to (created when missing).
    #[arg(long, env = "MOVREK_STATE_TOPIC", default_value = movrek_inference::bus::evaluate::STATE_TOPIC)]
    state_topic: String,
    /// Evaluator name: consumer group and checkpoint key.
    #[arg(long, env = "MOVREK_EVALUATOR_NAME", default_value = "movrek-evaluate")]
    name: String,
    /// Partitions of both topics to read, e.g. `0,2` (default: all). Topics must then be
    /// partitioned alike.
    #[arg(long, value_delimiter = ',')]
    partitions: Option<Vec<i32>>,
    /// Attribution window in seconds.
    #[arg(long, default_value_t = movrek_inference::online::DEFAULT_WINDOW_SECONDS)]
    window_secs: i64,
    /// Seconds a record may arrive behind the newest one of its topic and still count.
    #[arg(long, default_value_t = 60)]
    lateness_secs: i64,
    /// Treat recommendation-request lines on the events topic as impressions too.
    #[arg(long)]
    log_impressions: bool,
    /// Seconds a record's event time may be ahead of this machine's clock; a record further
    /// ahead (clock skew, a bad producer) is counted
    /// (`movrek_online_record_outcomes_total{outcome="future"}`) and not joined.
    #[arg(long, default_value_t = movrek_inference::online::stream::StreamConfig::DEFAULT_MAX_AHEAD,
          value_parser = clap::value_parser!(i64).range(0..))]
    max_ahead_secs: i64,
    /// Records held waiting for the watermark, at most; beyond, the oldest are joined
    /// early (`movrek_online_released_early_total`).
    #[arg(long, default_value_t = movrek_inference::online::stream::StreamConfig::DEFAULT_MAX_QUEUED,
          value_parser = parse_count)]
    max_queued: usize,
    /// Movie metadata CSV with runtimes (as for `online-eval`).
    #[arg(long)]
    movies: Option<PathBuf>,
    /// Runtime in minutes for movies without one (default without `--movies`: 100).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    default_runtime: Option<u32>,
    /// Address `/metrics` listens on.
    #[arg(long, env = "MOVREK_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port `/metrics` listens on.
    #[arg(long, env = pod_env::PORT, default_value_t = 9102)]
    port: u16,
    /// Milliseconds between checkpoints (metrics follow each one).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    checkpoint_ms: u64,
    /// Stop (after a last checkpoint) when no record arrived for this many seconds.
    #[arg(long, value_parser = parse_seconds)]
    exit_when_idle_secs: Option<Duration>,
}

fn parse_user(value: &str) -> Result<u32, String> {
    server::parse_user_id(value).map_err(|reason| reason.to_string())
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Model artifact: a path, or a `file://`, `s3://`, `gs://`, `az://` or `http(s)://` URI
    /// (store credentials from `AWS_*`, `GOOGLE_*`, `AZURE_*`). Without one, a default
    /// synthetic data set is generated and trained on at start.
    #[arg(long, env = pod_env::MODEL_URI)]
    model: Option<String>,
    /// Expected SHA-256 of the artifact file; a different artifact is refused.
    #[arg(long, env = pod_env::MODEL_SHA256)]
    sha256: Option<String>,
    /// Model version announced by the operator; an artifact of another version is refused.
    #[arg(long = "model-version", env = pod_env::MODEL_VERSION)]
    model_version: Option<String>,
    /// Release name (metrics label `release`).
    #[arg(long, env = pod_env::RELEASE, default_value = "movrek")]
    release: String,
    /// Track (metrics label `track`).
    #[arg(long, env = pod_env::TRACK, value_enum, default_value = "stable")]
    track: Track,
    /// Address to bind.
    #[arg(long, env = "MOVREK_BIND", default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port to listen on (0 picks a free one; the log says which).
    #[arg(long, env = pod_env::PORT, default_value_t = 8082)]
    port: u16,
    /// `/recommend` requests in flight at once (waiting or running); beyond it, 503 at once.
    #[arg(long, env = "MOVREK_MAX_INFLIGHT", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_inflight: u32,
    /// Longest a `/recommend` may wait for a compute thread, in milliseconds; a request that
    /// would wait longer gets 503 with `Retry-After` at once.
    #[arg(long, env = "MOVREK_MAX_QUEUE_WAIT_MS",
          default_value_t = StateConfig::DEFAULT_MAX_QUEUE_WAIT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_queue_wait_ms: u64,
    /// Threads that run the model (default: one per CPU); 0 runs it on the async workers.
    #[arg(long, env = "MOVREK_MODEL_THREADS")]
    model_threads: Option<usize>,
    /// Open connections at most (default: the descriptor limit minus 64). At the cap a new
    /// connection evicts the one idle longest, so probes always get in.
    #[arg(long, env = "MOVREK_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,
    /// Seconds a client has to send a complete request head.
    #[arg(long, env = "MOVREK_HEADER_TIMEOUT_SECS", value_parser = parse_seconds,
          default_value = "10")]
    header_timeout_secs: Duration,
    /// Seconds a keep-alive connection may stay idle between requests.
    #[arg(long, env = "MOVREK_IDLE_TIMEOUT_SECS", value_parser = parse_seconds,
          default_value = "75")]
    idle_timeout_secs: Duration,
    /// Seconds to keep serving after SIGTERM with `/readyz` at 503 and `Connection: close`
    /// on every answer, so endpoint removal reaches load balancers first; then requests in
    /// progress get 0.5 s and the process exits. A second signal ends the period at once.
    #[arg(long, env = "MOVREK_DRAIN_SECS", value_parser = parse_seconds, default_value = "5")]
    drain_secs: Duration,
    /// Chaos: delay added to every `/recommend`, in milliseconds.
    #[arg(long, env = "MOVREK_FAULT_DELAY_MS", default_value_t = 0)]
    fault_delay_ms: u64,
    /// Chaos: busy CPU time added to every model call, in microseconds (a slower model).
    #[arg(long, env = "MOVREK_FAULT_CPU_US", default_value_t = 0)]
    fault_cpu_us: u64,
    /// Chaos: fraction of `/recommend` requests answered with 500 (0..1, spread evenly).
    #[arg(long, env = "MOVREK_FAULT_ERROR_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    fault_error_rate: f64,
    /// Memory budget of the per-user memo of answers, in MiB (a user's list is computed once
    /// and kept while the budget lasts); 0 turns the memo off.
    #[arg(long, env = "MOVREK_MEMO_MIB",
          default_value_t = (server::memo::DEFAULT_BUDGET_BYTES >> 20) as u64,
          value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    memo_mib: u64,
    /// Largest artifact accepted from a store or over http(s), in bytes.
    #[arg(long, env = "MOVREK_MODEL_MAX_BYTES", default_value_t = FetchLimits::default().max_bytes)]
    model_max_bytes: u64,
    /// Deadline for downloading the artifact, in seconds.
    #[arg(long, env = "MOVREK_MODEL_TIMEOUT_SECS", default_value_t = FetchLimits::default().timeout.as_secs())]
    model_timeout_secs: u64,
    /// Runtime worker threads (default: one per CPU).
    #[arg(long, env = "MOVREK_THREADS")]
    threads: Option<usize>,
    /// Kafka brokers (`host:port[,host:port…]`) to publish an impression to for every 200
    /// from `/recommend`; unset: impressions are not published.
    #[arg(long, env = pod_env::KAFKA_BROKERS)]
    kafka_brokers: Option<String>,
    /// Topic of impressions.
    #[arg(long, env = pod_env::IMPRESSIONS_TOPIC, default_value = movrek_inference::bus::IMPRESSIONS_TOPIC)]
    impressions_topic: String,
    /// Impressions held at most while the broker is away; beyond, new ones are dropped and
    /// counted (`movrek_impressions_dropped_total{reason="queue_full"}`).
    #[arg(long, env = "MOVREK_IMPRESSION_QUEUE",
          default_value_t = PublisherConfig::DEFAULT_QUEUE_RECORDS,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    impression_queue: u32,
    /// Milliseconds an impression may wait for others to fill its batch (`linger.ms`).
    #[arg(long, env = "MOVREK_IMPRESSION_LINGER_MS",
          default_value_t = u64::try_from(PublisherConfig::DEFAULT_LINGER.as_millis()).unwrap_or(100),
          value_parser = clap::value_parser!(u64).range(0..=60_000))]
    impression_linger_ms: u64,
    /// Compression of impression batches.
    #[arg(long, env = "MOVREK_IMPRESSION_COMPRESSION", value_enum, default_value_t = Compression::default())]
    impression_compression: Compression,
    /// Impressions per partition batch at most (`batch.num.messages`).
    #[arg(long, env = "MOVREK_IMPRESSION_BATCH_RECORDS",
          default_value_t = PublisherConfig::DEFAULT_BATCH_RECORDS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    impression_batch_records: u32,
}

/// A count of at least 1.
fn parse_count(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{value:?} is not a whole number of at least 1")),
    }
}

/// Seconds as a decimal number, 0 to one hour.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number of seconds"))?;
    if (0.0..=3600.0).contains(&seconds) {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err(format!("{seconds} is outside 0..3600 seconds"))
    }
}

fn parse_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value
        .parse()
        .map_err(|_| format!("{value:?} is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is outside 0..1"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Retrain(args) = &cli.command {
        init_text_logs();
        let (_, code) = movrek_inference::retrain::cli::run(args);
        return ExitCode::from(code);
    }
    let result = match cli.command {
        Command::Generate(args) => generate(&args),
        Command::Ingest(args) => ingest(&args),
        Command::Train(args) => train_cmd(&args),
        Command::Publish(args) => publish(&args),
        Command::Eval(args) => eval_cmd(&args),
        Command::Serve(args) => serve(args),
        Command::Recommend(args) => recommend(&args),
        Command::OnlineEval(args) => online_eval(&args),
        Command::Evaluate(args) => evaluate(&args),
        Command::Simulate(args) => movrek_inference::simulate::cli::simulate(&args),
        Command::Report(args) => movrek_inference::retrain::report::run(&args),
        Command::Retrain(_) => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("movrek: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// JSON log lines on stderr through a non-blocking writer; `MOVREK_LOG` (or `RUST_LOG`)
/// filters, default `info`. Per-request lines use target `movrek::request`, so
/// `MOVREK_LOG=info,movrek::request=off` turns just them off.
fn init_json_logs() -> (
    tracing_appender::non_blocking::WorkerGuard,
    tracing_appender::non_blocking::ErrorCounter,
) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("MOVREK_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(64 * 1024)
        .lossy(true)
        // The worker drains every queued line, then flushes: under load one write(2)
        // carries many lines instead of one each.
        .finish(std::io::BufWriter::with_capacity(
            1 << 16,
            std::io::stderr(),
        ));
    let counter = writer.error_counter();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(writer)
        .init();
    (guard, counter)
}

/// The model source: the URI when given; the synthetic default only for a bare
/// `movrek serve`. A version or digest without a URI would make the pod claim a model it
/// does not serve, so that is a usage error. (`MOVREK_RELEASE`/`MOVREK_TRACK` are labels,
/// not model claims: they may come without a URI, as in local runs and tests.)
fn model_source(args: &ServeArgs) -> Result<ModelSource, String> {
    let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
    if given(&args.model) {
        let uri = args.model.as_deref().unwrap_or_default();
        return ModelUri::parse(uri)
            .map(ModelSource::Uri)
            .map_err(|e| e.to_string());
    }
    let claims: Vec<&str> = [
        (
            given(&args.model_version),
            "MOVREK_MODEL_VERSION (--model-version)",
        ),
        (given(&args.sha256), "MOVREK_MODEL_SHA256 (--sha256)"),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if claims.is_empty() {
        Ok(ModelSource::DefaultSynthetic)
    } else {
        Err(format!(
            "{} set but no model URI (MOVREK_MODEL_URI or --model): refusing to serve the \
             synthetic default under the operator's model identity",
            claims.join(" and ")
        ))
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let (_guard, dropped) = init_json_logs();
    server::install_panic_hook();
    let source = model_source(&args).inspect_err(|message| {
        tracing::error!(error = %message, "invalid model configuration");
    })?;
    let expected_sha256 = args
        .sha256
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(server::load::parse_expected_sha256)
        .transpose()
        .map_err(|e| e.to_string())?;
    let impressions = args
        .kafka_brokers
        .as_deref()
        .map(str::trim)
        .filter(|brokers| !brokers.is_empty())
        .map(|brokers| PublisherConfig {
            brokers: brokers.to_owned(),
            topic: args.impressions_topic.clone(),
            queue_records: args.impression_queue,
            delivery_timeout: PublisherConfig::DEFAULT_DELIVERY_TIMEOUT,
            client_id: format!("movrek-serve-{}-{}", args.release, args.track.as_str()),
            linger: Duration::from_millis(args.impression_linger_ms),
            compression: args.impression_compression,
            batch_records: args.impression_batch_records,
        });
    let max_connections = server::max_connections(
        args.max_connections
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        server::descriptor_limit(),
    );
    let config = ServeConfig {
        addr: SocketAddr::new(args.bind, args.port),
        source,
        expected_sha256,
        fetch: FetchLimits {
            max_bytes: args.model_max_bytes,
            timeout: Duration::from_secs(args.model_timeout_secs),
        },
        state: StateConfig {
            release: args.release,
            track: args.track,
            announced_version: args.model_version.filter(|v| !v.trim().is_empty()),
            max_inflight: args.max_inflight as usize,
            max_queue_wait: Duration::from_millis(args.max_queue_wait_ms),
            model_threads: args
                .model_threads
                .unwrap_or_else(StateConfig::default_model_threads),
            drain: DrainPolicy {
                period: args.drain_secs,
                grace: DrainPolicy::DEFAULT_GRACE,
            },
            faults: Faults {
                delay: Duration::from_millis(args.fault_delay_ms),
                cpu: Duration::from_micros(args.fault_cpu_us),
                error_rate: args.fault_error_rate,
            },
            memo_bytes: usize::try_from(args.memo_mib << 20).unwrap_or(usize::MAX),
        },
        connections: ConnLimits {
            max_connections,
            header_timeout: args.header_timeout_secs,
            idle_timeout: args.idle_timeout_secs,
            write_timeout: ConnLimits::DEFAULT_WRITE_TIMEOUT,
        },
        impressions,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let runtime = runtime
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let result = runtime.block_on(server::serve(config, Some(dropped)));
    // Connection tasks still parked are dropped here; never wait on them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    result.map_err(|e| {
        let message = server::error_chain(&e);
        tracing::error!(error = %message, "server stopped with an error");
        message
    })
}

/// Plain-text logs on stderr for the batch commands (`MOVREK_LOG`, default `info`).
fn init_text_logs() {
    let filter = std::env::var("MOVREK_LOG").unwrap_or_else(|_| "info".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}

fn chain(error: &dyn std::error::Error) -> String {
    server::error_chain(error)
}

/// Writes the per-user ranking metrics of `report` to `path` (CSV).
fn write_per_user(report: &eval::EvalReport, path: &Path) -> Result<(), String> {
    let write = || -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        report.write_per_user(&mut out)?;
        std::io::Write::flush(&mut out)
    };
    write().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote the per-user metrics: {}", path.display());
    Ok(())
}

/// Prints the quality table to stderr and writes its JSON to `json_path`.
fn write_quality(report: &QualityReport, json_path: Option<&Path>) -> Result<(), String> {
    eprintln!("{}", report.to_table());
    if let Some(path) = json_path {
        let json = serde_json::to_string_pretty(report)
            .map_err(|e| format!("cannot encode the quality report: {e}"))?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("data-quality report: {}", path.display());
    }
    Ok(())
}

/// `<file>.quality.json` beside `file`.
fn quality_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".quality.json");
    PathBuf::from(name)
}

fn generate(args: &GenerateArgs) -> Result<(), String> {
    init_text_logs();
    if args.users == 0 || args.movies == 0 {
        return Err("--users and --movies must be at least 1".to_owned());
    }
    let params = SynthParams {
        users: args.users,
        movies: args.movies,
        ratings: args.ratings,
        seed: args.seed,
        ..SynthParams::default()
    };
    let started = std::time::Instant::now();
    let (dataset, hidden) = data::synth::generate_with_truth(&params);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    data::write_ml1m(&dataset, &args.out).map_err(|e| chain(&e))?;
    data::synth::write_hidden(&hidden, &args.out)
        .map_err(|e| format!("cannot write the hidden taste: {e}"))?;
    eprintln!(
        "wrote {} users, {} movies, {} ratings to {} in {:.2} s",
        dataset.users.len(),
        dataset.movies.len(),
        dataset.ratings.len(),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn ingest(args: &IngestArgs) -> Result<(), String> {
    init_text_logs();
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let report = match (&args.from, &args.log) {
        (Some(uri), _) => {
            let bounds = ReadBounds {
                since_ms: args.since,
                until_ms: args.until,
                max_records: args.max_records,
            };
            let (report, records) = movrek_inference::bus::batch::ingest(
                uri,
                &bounds,
                args.kafka_timeout_secs,
                &args.out,
            )?;
            eprintln!(
                "read {records} records from kafka://{}/{}",
                uri.brokers, uri.topic
            );
            report
        }
        (None, Some(log)) if log.as_os_str() == "-" => {
            data::events::ingest(std::io::stdin().lock(), &args.out).map_err(|e| chain(&e))?
        }
        (None, Some(log)) => {
            let file = std::fs::File::open(log)
                .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
            data::events::ingest(std::io::BufReader::new(file), &args.out).map_err(|e| chain(&e))?
        }
        (None, None) => return Err("give --log FILE or --from kafka://HOST:PORT/TOPIC".to_owned()),
    };
    eprintln!("{}", report.to_table());
    eprintln!(
        "wrote {} (data-quality report: {})",
        args.out.display(),
        args.out.join("quality.json").display()
    );
    Ok(())
}

fn train_cmd(args: &TrainArgs) -> Result<(), String> {
    init_text_logs();
    let params = train_params(
        args.params.as_deref(),
        args.algo,
        train::TrainParams::default(),
    )?;
    let loaded = data::load_dir(&args.data).map_err(|e| chain(&e))?;
    write_quality(&loaded.report, Some(&quality_path(&args.out)))?;
    let started = std::time::Instant::now();
    let model = train::train(&loaded.dataset, &params, &args.version, &loaded.sha256)
        .map_err(|e| chain(&e))?;
    let seconds = started.elapsed().as_secs_f64();
    let sha256 = artifact::write(&model, &args.out).map_err(|e| chain(&e))?;
    let meta = model.metadata();
    eprintln!(
        "trained {} ({}) in {seconds:.2} s: {} users, {} movies, {} ratings; hold-out RMSE {}",
        meta.version,
        meta.params.algo.name(),
        meta.counts.users,
        meta.counts.movies,
        meta.counts.ratings,
        meta.holdout_rmse
            .map_or_else(|| "not measured".to_owned(), |r| format!("{r:.4}"))
    );
    eprintln!("wrote {}", args.out.display());
    println!("{sha256}");
    Ok(())
}

/// Reads an optional JSON report file.
fn read_report(path: Option<&Path>) -> Result<Option<serde_json::Value>, String> {
    path.map(|path| {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
    })
    .transpose()
}

fn publish(args: &PublishArgs) -> Result<(), String> {
    use movrek_inference::store::layout::{self, ModelRecord, Prefix};
    init_text_logs();
    let prefix = Prefix::parse(&args.to)?;
    layout::check_name("release", &args.release)?;
    let bytes = std::fs::read(&args.model)
        .map_err(|e| format!("cannot read {}: {e}", args.model.display()))?;
    let sha256 = server::load::sha256_hex(&bytes);
    // Only a valid artifact is published: decode it (checksums included) first.
    let model = artifact::from_bytes(bytes.clone(), Some(&sha256)).map_err(|e| chain(&e))?;
    let meta = model.metadata().clone();
    let version = args
        .model_version
        .clone()
        .unwrap_or_else(|| meta.version.clone());
    if version != meta.version {
        return Err(format!(
            "--model-version {version:?} but {} holds version {:?}",
            args.model.display(),
            meta.version
        ));
    }
    layout::check_name("version", &version)?;
    let quality_default = quality_path(&args.model);
    let quality = match &args.quality {
        Some(path) => read_report(Some(path))?,
        None if quality_default.exists() => read_report(Some(&quality_default))?,
        None => None,
    };
    let record = ModelRecord {
        release: args.release.clone(),
        version: version.clone(),
        uri: prefix
            .entry(&args.release, &version, layout::ARTIFACT_NAME)
            .to_string(),
        sha256: sha256.clone(),
        size_bytes: bytes.len() as u64,
        model: meta,
        offline: read_report(args.report.as_deref())?,
        quality,
    };
    let limits = FetchLimits {
        timeout: Duration::from_secs(args.timeout_secs),
        ..FetchLimits::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let published = runtime
        .block_on(layout::publish(&prefix, &record, bytes, limits))
        .map_err(|e| chain(&e))?;
    let said = |wrote: bool| {
        if wrote {
            "wrote"
        } else {
            "already there, same contents:"
        }
    };
    eprintln!("{} {}", said(published.wrote_artifact), published.artifact);
    eprintln!("{} {}", said(published.wrote_record), published.record);
    // `spec.model` of the RecommenderRelease, ready to paste.
    println!("version: {version:?}");
    println!("uri: {:?}", published.artifact);
    println!("sha256: {sha256:?}");
    if let Some(rmse) = record.model.holdout_rmse {
        println!("offlineRmse: {rmse:.4}");
    }
    Ok(())
}

fn eval_cmd(args: &EvalArgs) -> Result<(), String> {
    init_text_logs();
    let quality_json = args.plots.as_deref().map(|dir| dir.join("quality.json"));
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let (train_set, test) = match (&args.data, &args.train, &args.test) {
        (Some(dir), _, _) => {
            let loaded = data::load_dir(dir).map_err(|e| chain(&e))?;
            write_quality(&loaded.report, quality_json.as_deref())?;
            eval::split(&loaded.dataset, args.test_fraction, args.seed).map_err(|e| chain(&e))?
        }
        (None, Some(train_file), Some(test_file)) => {
            let (ratings, report) = data::load_ratings_file(train_file).map_err(|e| chain(&e))?;
            write_quality(&report, quality_json.as_deref())?;
            let (test, test_report) = data::load_ratings_file(test_file).map_err(|e| chain(&e))?;
            write_quality(
                &test_report,
                args.plots
                    .as_deref()
                    .map(|d| d.join("quality-test.json"))
                    .as_deref(),
            )?;
            let scale = if report.format == data::quality::Format::MlLatest {
                RatingScale::HALF_STARS
            } else {
                RatingScale::WHOLE_STARS
            };
            let train_set = Dataset {
                users: Vec::new(),
                movies: Vec::new(),
                ratings,
                watches: Vec::new(),
                scale,
            };
            (train_set, test)
        }
        _ => return Err("give --data DIR, or both --train FILE and --test FILE".to_owned()),
    };
    if let Some(dir) = &args.split_out {
        let files = eval::write_split(&train_set, &test, dir).map_err(|e| chain(&e))?;
        eprintln!(
            "wrote the split: {}, {}, {}",
            files.train.display(),
            files.test.display(),
            files.meta.display()
        );
    }
    let defaults = eval::EvalParams::default();
    let params = eval::EvalParams {
        max_ranking_users: args.max_ranking_users,
        train: train_params(args.params.as_deref(), args.algo, defaults.train.clone())?,
        ..defaults
    };
    let report = eval::evaluate(&train_set, &test, &params).map_err(|e| chain(&e))?;
    if let Some(path) = &args.per_user_out {
        write_per_user(&report, path)?;
    }
    if args.json {
        let json =
            serde_json::to_string(&report).map_err(|e| format!("cannot encode the report: {e}"))?;
        println!("{json}");
    } else {
        println!("{}", report.to_table());
    }
    if let Some(dir) = &args.plots {
        let written = eval::plots::write_svgs(&report, dir).map_err(|e| chain(&e))?;
        for path in written {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn recommend(args: &RecommendArgs) -> Result<(), String> {
    let expected = args
        .sha256
        .as_deref()
        .map(server::load::parse_expected_sha256)
        .transpose()
        .map_err(|e| e.to_string())?;
    let model = artifact::read(&args.model, expected.as_deref()).map_err(|e| chain(&e))?;
    let list = model.recommend(args.user, args.n);
    eprintln!(
        "model {} · user {} · path {:?}",
        model.metadata().version,
        args.user,
        list.path
    );
    println!("{}", server::join_ids(&list.movies));
    Ok(())
}

fn online_eval(args: &OnlineEvalArgs) -> Result<(), String> {
    use movrek_inference::online::{self, MovieKeys};
    let mut movies = MovieKeys::default();
    let (runtimes, source) =
        online_runtimes(args.movies.as_deref(), args.default_runtime, &mut movies)?;
    let report = match (&args.events, &args.log) {
        (Some(events), _) => {
            let topics = movrek_inference::bus::batch::OnlineEvalTopics {
                events: events.clone(),
                impressions: args.impressions.clone(),
                log_impressions: args.log_impressions,
            };
            let bounds = ReadBounds {
                since_ms: args.since,
                until_ms: args.until,
                max_records: None,
            };
            movrek_inference::bus::batch::online_eval(
                &topics,
                &bounds,
                args.kafka_timeout_secs,
                args.window_secs,
                (&runtimes, &source),
                &mut movies,
            )?
        }
        (None, Some(log)) => {
            let mut evaluate = |input: &mut dyn std::io::BufRead| {
                online::evaluate_log(input, &mut movies, &runtimes, args.window_secs, &source)
            };
            if log.as_os_str() == "-" {
                evaluate(&mut std::io::stdin().lock())
            } else {
                let file = std::fs::File::open(log)
                    .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
                evaluate(&mut std::io::BufReader::new(file))
            }
            .map_err(|e| format!("cannot read {}: {e}", log.display()))?
        }
        (None, None) => {
            return Err("give --log FILE or --events kafka://HOST:PORT/TOPIC".to_owned());
        }
    };
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}

/// Runtimes from `--movies` (others per `--default-runtime`, else unscored), or
/// `--default-runtime` (100 min unless given) for every movie; and that choice in words.
fn online_runtimes(
    movie_csv: Option<&Path>,
    default_runtime: Option<u32>,
    movies: &mut movrek_inference::online::MovieKeys,
) -> Result<(movrek_inference::online::Runtimes, String), String> {
    use movrek_inference::online::{Runtimes, parse_runtimes};
    let Some(path) = movie_csv else {
        let minutes = default_runtime.unwrap_or(DEFAULT_RUNTIME_MINUTES);
        let runtimes = Runtimes {
            known: std::collections::HashMap::new(),
            default: Some(minutes),
        };
        return Ok((runtimes, format!("every movie {minutes} min (no --movies)")));
    };
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (known, bad) =
        parse_runtimes(&bytes, movies).map_err(|e| format!("{}: {e}", path.display()))?;
    let fallback = default_runtime.map_or_else(
        || "others unscored".to_owned(),
        |m| format!("others {m} min"),
    );
    let source = format!(
        "{} movies from {} ({bad} unreadable rows), {fallback}",
        known.len(),
        path.display()
    );
    let default = default_runtime;
    Ok((Runtimes { known, default }, source))
}

fn evaluate(args: &EvaluateArgs) -> Result<(), String> {
    use movrek_inference::bus::evaluate::{self, EvaluateConfig};
    use movrek_inference::online::MovieKeys;
    use movrek_inference::online::stream::StreamConfig;
    let (_guard, _dropped) = init_json_logs();
    if args.window_secs < 0 || args.lateness_secs < 0 {
        return Err("--window-secs and --lateness-secs must not be negative".to_owned());
    }
    let mut movies = MovieKeys::default();
    let (runtimes, source) =
        online_runtimes(args.movies.as_deref(), args.default_runtime, &mut movies)?;
    tracing::info!(runtimes = %source, "movie runtimes");
    let config = EvaluateConfig {
        brokers: args.brokers.clone(),
        impressions_topic: args.impressions_topic.clone(),
        events_topic: args.events_topic.clone(),
        state_topic: args.state_topic.clone(),
        name: args.name.clone(),
        partitions: args.partitions.clone(),
        stream: StreamConfig {
            window: args.window_secs,
            lateness: args.lateness_secs,
            log_impressions: args.log_impressions,
            max_ahead: args.max_ahead_secs,
            max_queued: args.max_queued,
        },
        metrics_addr: SocketAddr::new(args.bind, args.port),
        checkpoint_interval: Duration::from_millis(args.checkpoint_ms),
        exit_when_idle: args.exit_when_idle_secs,
    };
    let stop = evaluate::stop_on_signals()?;
    evaluate::run(&config, runtimes, movies, &stop)
        .map(|_| ())
        .inspect_err(|message| {
            tracing::error!(error = %message, "evaluator stopped with an error");
        })
}
