//! Data-layer benchmark: synthetic generation + ML-1M write, and `load_dir` parse speed.
//! Prints wall times, throughput and peak RSS (Linux `VmHWM`).
//!
//! Build once, then run the binary directly (frees the cargo lock for others):
//! ```text
//! cargo bench -p movrek-inference --bench data --no-run   # prints the executable path
//! $BIN gen /var/tmp/movrek/synth-1m 1000000 27000 10000000 42
//! $BIN load /var/tmp/movrek/synth-1m
//! ```
//! Run `gen` and `load` as separate processes so each peak RSS is its own.

use std::path::Path;
use std::time::Instant;

use movrek_inference::data::synth::{SynthParams, generate};
use movrek_inference::data::{load_dir, write_ml1m};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize, default: T) -> T {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; with no mode, run a small smoke configuration.
    let mode = args.get(1).map_or("smoke", String::as_str);
    let threads = rayon::current_num_threads();
    match mode {
        "gen" => {
            let dir = Path::new(&args[2]);
            let params = SynthParams {
                users: arg(&args, 3, 1_000_000),
                movies: arg(&args, 4, 27_000),
                ratings: arg(&args, 5, 10_000_000),
                seed: arg(&args, 6, 42),
                ..SynthParams::default()
            };
            gen_and_write(dir, &params, threads);
        }
        "load" => load(Path::new(&args[2]), threads),
        "phases" => phases(Path::new(&args[2])),
        _ => {
            let dir =
                std::env::temp_dir().join(format!("movrek-bench-data-{}", std::process::id()));
            let params = SynthParams {
                users: 20_000,
                movies: 5_000,
                ratings: 1_000_000,
                ..SynthParams::default()
            };
            gen_and_write(&dir, &params, threads);
            load(&dir, threads);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn gen_and_write(dir: &Path, params: &SynthParams, threads: usize) {
    let start = Instant::now();
    let data = generate(params);
    let generated = start.elapsed();
    let start = Instant::now();
    if let Err(e) = write_ml1m(&data, dir) {
        eprintln!("write failed: {e}");
        std::process::exit(1);
    }
    let written = start.elapsed();
    print_shape(&data);
    println!(
        "generate users={} movies={} ratings={} threads={threads}: generate {:.2} s, write_ml1m {:.2} s, total {:.2} s, peak RSS {:.0} MiB",
        params.users,
        params.movies,
        data.ratings.len(),
        generated.as_secs_f64(),
        written.as_secs_f64(),
        (generated + written).as_secs_f64(),
        peak_rss_mib()
    );
}

/// What the generator drew: activity and popularity tails, minors, adult movies.
fn print_shape(data: &movrek_inference::data::Dataset) {
    let users = data.users.len().max(1);
    let mut per_user = vec![0u32; users + 1];
    let mut per_movie = vec![0u32; data.movies.len() + 1];
    for r in &data.ratings {
        per_user[r.user as usize] += 1;
        per_movie[r.movie as usize] += 1;
    }
    let light = per_user[1..].iter().filter(|&&n| n < 5).count();
    let max_user = per_user.iter().max().copied().unwrap_or(0);
    per_movie.sort_unstable_by(|a, b| b.cmp(a));
    let head: u64 = per_movie[..data.movies.len() / 10]
        .iter()
        .map(|&n| u64::from(n))
        .sum();
    let minors = data
        .users
        .iter()
        .filter(|u| {
            u.age
                .is_some_and(movrek_inference::data::AgeBucket::is_minor)
        })
        .count();
    let adult = data.movies.iter().filter(|m| m.adult).count();
    let mean = data.ratings.iter().map(|r| f64::from(r.value)).sum::<f64>()
        / data.ratings.len().max(1) as f64;
    println!(
        "shape: users with < 5 ratings {:.1}%, heaviest user {max_user}, top 10% of movies hold {:.1}% of ratings, minors {:.1}%, adult movies {:.1}%, mean rating {mean:.2}",
        100.0 * light as f64 / users as f64,
        100.0 * head as f64 / data.ratings.len().max(1) as f64,
        100.0 * minors as f64 / users as f64,
        100.0 * adult as f64 / data.movies.len().max(1) as f64,
    );
}

fn load(dir: &Path, threads: usize) {
    let start = Instant::now();
    let loaded = match load_dir(dir) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("load failed: {e}");
            std::process::exit(1);
        }
    };
    let elapsed = start.elapsed().as_secs_f64();
    let lines = loaded.report.files.iter().map(|f| f.rows).sum::<u64>();
    println!(
        "load_dir {} threads={threads}: {lines} lines ({} ratings) in {elapsed:.2} s = {:.2} M lines/s, peak RSS {:.0} MiB, sha256 {}",
        dir.display(),
        loaded.report.ratings,
        lines as f64 / elapsed / 1e6,
        peak_rss_mib(),
        &loaded.sha256[..16]
    );
    print!("{}", loaded.report.to_table());
}

/// Times the parts of a ratings load separately (read, digest, parse, dedup check).
fn phases(dir: &Path) {
    use movrek_inference::data::RatingScale;
    use movrek_inference::data::clean::dedup_ratings;
    use movrek_inference::data::movielens::rating_line;
    use movrek_inference::data::parse::parse_lines;
    use sha2::Digest;

    let start = Instant::now();
    let bytes = std::fs::read(dir.join("ratings.dat")).expect("ratings.dat");
    let read = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let digest = sha2::Sha256::digest(&bytes);
    let hashed = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut parsed = parse_lines(&bytes, 1, |l| {
        rating_line(l, b"::", RatingScale::WHOLE_STARS)
    });
    let parse = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let duplicates = dedup_ratings(&mut parsed.items);
    let dedup = start.elapsed().as_secs_f64();
    println!(
        "phases: read {read:.2} s, sha256 {hashed:.2} s, parse {parse:.2} s ({:.2} M lines/s), dedup check {dedup:.2} s ({duplicates} duplicates, digest {:02x}{:02x})",
        parsed.rows as f64 / parse / 1e6,
        digest[0],
        digest[1]
    );
}
