//! Model benchmark: generates a synthetic data set, trains, writes and reloads the artifact,
//! then measures in-process top-20 latency over random users. Prints figures; asserts
//! nothing. Size from the environment:
//! `MOVREK_BENCH_USERS` (20000), `MOVREK_BENCH_MOVIES` (5000), `MOVREK_BENCH_RATINGS`
//! (1000000), `MOVREK_BENCH_QUERIES` (20000), `MOVREK_BENCH_DIR` (/var/tmp/movrek),
//! `MOVREK_BENCH_PARAMS` (partial `TrainParams` JSON).
//! With `MOVREK_BENCH_ARTIFACT=<file>` it skips generation and training and only measures
//! loading that artifact (raw read, SHA-256 throughput, load with and without an expected
//! digest) and latency.
//!
//! With `MOVREK_BENCH_EVAL=<data dir>` it instead makes the evaluation's seeded 80/20
//! split of that data set and prints the served ranking's NDCG@10 (every test user with a
//! held-out rating ≥ 4) next to popularity's, once per parameter set in
//! `MOVREK_BENCH_PARAMS_LIST` (a JSON array of partial `TrainParams`; default `[{}]`).
//!
//! `MOVREK_BENCH_PARAMS` may set `algo` (`ease`, the default; `als`; `user-knn`).
//!
//! Run: `cargo bench -p movrek-inference --bench model`

use std::path::PathBuf;
use std::time::Instant;

use movrek_inference::artifact;
use movrek_inference::data::synth::{SynthParams, generate};
use movrek_inference::model::RecommendPath;
use movrek_inference::train::{TrainParams, train};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size of this process so far, in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn main() {
    if let Ok(dir) = std::env::var("MOVREK_BENCH_EVAL") {
        ranking_quality(&PathBuf::from(dir));
        return;
    }
    if let Ok(path) = std::env::var("MOVREK_BENCH_ARTIFACT") {
        let queries = env_usize("MOVREK_BENCH_QUERIES", 20_000);
        let model = measure_load(&PathBuf::from(path));
        let (users, movies) = (model.user_count(), model.movie_count());
        measure_latency(&model, users, movies, queries);
        println!("final_peak_rss_mib {:.0}", peak_rss_mib());
        return;
    }
    let users = env_usize("MOVREK_BENCH_USERS", 20_000);
    let movies = env_usize("MOVREK_BENCH_MOVIES", 5_000);
    let ratings = env_usize("MOVREK_BENCH_RATINGS", 1_000_000);
    let queries = env_usize("MOVREK_BENCH_QUERIES", 20_000);
    let dir = PathBuf::from(
        std::env::var("MOVREK_BENCH_DIR").unwrap_or_else(|_| "/var/tmp/movrek".into()),
    );
    std::fs::create_dir_all(&dir).expect("bench directory");
    println!(
        "size: {users} users x {movies} movies x {ratings} ratings, {} threads",
        rayon::current_num_threads()
    );

    let t = Instant::now();
    let dataset = generate(&SynthParams {
        users,
        movies,
        ratings,
        ..SynthParams::default()
    });
    println!(
        "generate_seconds {:.2} (ratings {})",
        t.elapsed().as_secs_f64(),
        dataset.ratings.len()
    );
    let rss_after_generate = peak_rss_mib();

    // Optional partial JSON over the defaults, e.g. MOVREK_BENCH_PARAMS='{"rerank_candidates":50}'.
    let params: TrainParams = match std::env::var("MOVREK_BENCH_PARAMS") {
        Ok(json) => serde_json::from_str(&json).expect("MOVREK_BENCH_PARAMS is TrainParams JSON"),
        Err(_) => TrainParams::default(),
    };
    let t = Instant::now();
    let model = train(&dataset, &params, "bench", "synthetic").expect("training");
    let train_seconds = t.elapsed().as_secs_f64();
    println!(
        "train_seconds {train_seconds:.2} (model {:.2} incl. hold-out)",
        model.metadata().train_seconds
    );
    println!(
        "peak_rss_mib {:.0} (after generate {:.0})",
        peak_rss_mib(),
        rss_after_generate
    );
    println!(
        "holdout_rmse {:?} on {} ratings",
        model.metadata().holdout_rmse,
        model.metadata().holdout_ratings
    );
    print_learned(model.metadata());
    drop(dataset);

    let path = dir.join(format!("bench-{users}x{movies}x{ratings}.movrek"));
    let t = Instant::now();
    let digest = artifact::write(&model, &path).expect("write artifact");
    println!("write_seconds {:.2}", t.elapsed().as_secs_f64());
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    println!(
        "artifact_mib {:.1} ({})",
        size as f64 / 1_048_576.0,
        path.display()
    );
    drop(model);
    let t = Instant::now();
    let model = artifact::read(&path, Some(&digest)).expect("read artifact");
    println!(
        "load_seconds {:.2} (with sha256 check)",
        t.elapsed().as_secs_f64()
    );

    measure_latency(&model, users, movies, queries);
    println!("final_peak_rss_mib {:.0}", peak_rss_mib());
}

/// Served vs popularity NDCG@10 on the evaluation's split of the data set in `dir`, per
/// parameter set (see the module docs).
fn ranking_quality(dir: &std::path::Path) {
    use std::collections::{HashMap, HashSet};

    use movrek_inference::eval::{self, metrics::ndcg_at_k};
    let loaded = movrek_inference::data::load_dir(dir).expect("load data set");
    let (train_set, test) = eval::split(&loaded.dataset, 0.2, 42).expect("split");
    let mut relevant: HashMap<u32, HashSet<u32>> = HashMap::new();
    for r in test.iter().filter(|r| r.value >= 4.0) {
        relevant.entry(r.user).or_default().insert(r.movie);
    }
    let mut rated: HashMap<u32, HashSet<u32>> = HashMap::new();
    for r in &train_set.ratings {
        rated.entry(r.user).or_default().insert(r.movie);
    }
    let mut users: Vec<u32> = relevant.keys().copied().collect();
    users.sort_unstable();
    let popular = eval::popularity_order(&train_set.ratings);
    let empty = HashSet::new();
    let mean = |lists: &dyn Fn(u32) -> Vec<u32>| {
        let sum: f64 = users
            .iter()
            .filter_map(|u| ndcg_at_k(&lists(*u), &relevant[u], 10))
            .sum();
        sum / users.len() as f64
    };
    let popularity = mean(&|u| eval::top_unrated(&popular, rated.get(&u).unwrap_or(&empty), 20));
    println!(
        "eval {}: {} train ratings, {} ranked users; popularity NDCG@10 {popularity:.4}",
        dir.display(),
        train_set.ratings.len(),
        users.len()
    );
    let list = std::env::var("MOVREK_BENCH_PARAMS_LIST").unwrap_or_else(|_| "[{}]".into());
    let variants: Vec<serde_json::Value> =
        serde_json::from_str(&list).expect("MOVREK_BENCH_PARAMS_LIST is a JSON array");
    for variant in variants {
        let mut params: TrainParams =
            serde_json::from_value(variant.clone()).expect("partial TrainParams JSON");
        params.holdout_fraction = 0.0;
        let t = Instant::now();
        let model = train(&train_set, &params, "eval", "").expect("training");
        let seconds = t.elapsed().as_secs_f64();
        let served = mean(&|u| model.recommend(u, 20).movies);
        print_learned(model.metadata());
        println!(
            "served NDCG@10 {served:.4} ({:.2}x popularity), popularity weight {}, train {seconds:.1} s, params {variant}",
            served / popularity,
            model.metadata().params.popularity_weight
        );
    }
}

/// The learned algorithm, its chosen hyper-parameters and how long choosing took.
fn print_learned(meta: &movrek_inference::model::ModelMetadata) {
    let p = &meta.params;
    println!(
        "algo {} (learned_max_items {}, ease_lambda {}, ease_neighbours {}, als {:?} x {} sweeps)",
        p.algo.name(),
        p.learned_max_items,
        p.ease_lambda,
        p.ease_neighbours,
        p.als,
        p.als_iterations
    );
    if let Some(v) = &meta.validation {
        println!(
            "validation_seconds {:.2}: {} ratings, {} users, chosen {}, candidates {:?}",
            v.seconds, v.ratings, v.users, v.chosen, v.candidates
        );
    }
}

/// Loads the artifact at `path` and prints where the time goes: a plain read of the file,
/// SHA-256 over it (MB/s shows whether the CPU's SHA extensions are in use), then
/// `artifact::read` with the expected digest (the serving path) and without one.
fn measure_load(path: &std::path::Path) -> movrek_inference::model::Model {
    use sha2::{Digest, Sha256};
    let t = Instant::now();
    let bytes = std::fs::read(path).expect("read artifact file");
    let read_seconds = t.elapsed().as_secs_f64();
    let mib = bytes.len() as f64 / 1_048_576.0;
    println!("artifact_mib {mib:.1} ({})", path.display());
    println!("read_seconds {read_seconds:.2} (plain fs::read)");
    let t = Instant::now();
    let digest = hex::encode(Sha256::digest(&bytes));
    let sha_seconds = t.elapsed().as_secs_f64();
    println!(
        "sha256_seconds {sha_seconds:.2} ({:.0} MiB/s)",
        mib / sha_seconds
    );
    drop(bytes);
    let t = Instant::now();
    let model = artifact::read(path, None).expect("read artifact");
    println!(
        "load_seconds {:.2} (no expected digest: trailing checksum)",
        t.elapsed().as_secs_f64()
    );
    drop(model);
    let t = Instant::now();
    let model = artifact::read(path, Some(&digest)).expect("read artifact");
    println!(
        "load_seconds {:.2} (with sha256 check)",
        t.elapsed().as_secs_f64()
    );
    model
}

/// Top-20 latency over `queries` random users (5% unknown ids), printed as p50/p99/max.
fn measure_latency(
    model: &movrek_inference::model::Model,
    users: usize,
    movies: usize,
    queries: usize,
) {
    // Random known users (deterministic), plus a share of unknown ids.
    let mut state = 0x1234_5678_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut personal = Vec::with_capacity(queries);
    let mut all = Vec::with_capacity(queries);
    for _ in 0..1000 {
        let _ = model.recommend(1 + (next() as u32 % users as u32), 20); // warm-up
    }
    for _ in 0..queries {
        let user = 1 + (next() as u32 % (users as u32 + users as u32 / 20));
        let t = Instant::now();
        let recs = model.recommend(user, 20);
        let nanos = t.elapsed().as_nanos() as u64;
        assert!(
            recs.movies.len() == 20 || movies < 40,
            "short list for {user}"
        );
        all.push(nanos);
        if recs.path == RecommendPath::Personal {
            personal.push(nanos);
        }
    }
    for (name, mut v) in [("all", all), ("personal", personal)] {
        v.sort_unstable();
        if v.is_empty() {
            continue;
        }
        println!(
            "top20_{name}_us n={} p50 {:.1} p99 {:.1} max {:.1}",
            v.len(),
            percentile(&v, 0.5) as f64 / 1e3,
            percentile(&v, 0.99) as f64 / 1e3,
            *v.last().unwrap() as f64 / 1e3
        );
    }
}
