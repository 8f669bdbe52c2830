//! Rust side of `bench/compare.sh`: loads a data set, makes the seeded split, writes it
//! as `train.csv`/`test.csv`/`split.json` for the Surprise peer, evaluates, and prints the
//! report as JSON on stdout (the readable table goes to stderr).
//!
//! ```text
//! cargo run --release -p movrek-inference --example eval_compare -- \
//!     --data data/ml-latest-small --split-out /var/tmp/movrek/compare/split
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use movrek_inference::data::load_dir;
use movrek_inference::eval::{self, EvalParams};
use movrek_inference::model::knn_basic::KnnBasic;

/// Evaluate movrek on a seeded split and write the split for a peer.
#[derive(Debug, Parser)]
struct Args {
    /// Data set directory (any layout `data::load_dir` reads).
    #[arg(long)]
    data: PathBuf,
    /// Where to write `train.csv`, `test.csv` and `split.json`.
    #[arg(long)]
    split_out: PathBuf,
    /// Fraction of ratings held out.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Split seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Rank for at most this many test users (seeded sample).
    #[arg(long)]
    max_ranking_users: Option<usize>,
    /// Also write SVG charts here.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Write `user,movie,actual,estimate` of knn-basic for every test pair here.
    #[arg(long)]
    dump_predictions: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("eval_compare: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprint!(": {s}");
                source = s.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let loaded = load_dir(&args.data)?;
    let (train, test) = eval::split(&loaded.dataset, args.test_fraction, args.seed)?;
    eval::write_split(&train, &test, &args.split_out)?;
    let params = EvalParams {
        max_ranking_users: args.max_ranking_users,
        ..EvalParams::default()
    };
    let report = eval::evaluate(&train, &test, &params)?;
    if let Some(dir) = &args.plots {
        eval::plots::write_svgs(&report, dir)?;
    }
    if let Some(path) = &args.dump_predictions {
        let knn = KnnBasic::fit(
            &train.ratings,
            train.scale,
            params.train.k,
            params.train.min_k,
        );
        let pairs: Vec<(u32, u32)> = test.iter().map(|r| (r.user, r.movie)).collect();
        let estimates = knn.predict_batch(&pairs);
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(out, "user,movie,actual,estimate")?;
        for (r, e) in test.iter().zip(estimates) {
            writeln!(out, "{},{},{},{}", r.user, r.movie, r.value, e)?;
        }
        out.flush()?;
    }
    eprint!("{}", report.to_table());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
