//! The retraining tests' data: a synthetic data set whose ratings a hash splits into the
//! base v1 is trained on and the rating events of the following day. Included by path where
//! the Kafka helpers of `support` are not wanted.

use std::path::{Path, PathBuf};

use movrek_inference::data::synth::{SynthParams, generate};
use movrek_inference::data::{Dataset, write_ml1m};

/// Base data and events: a synthetic data set whose ratings are split by a hash into the
/// data v1 is trained on and the rating events that arrive afterwards.
pub fn world(dir: &Path) -> (PathBuf, Vec<String>) {
    let data = generate(&SynthParams {
        users: 300,
        movies: 250,
        ratings: 24_000,
        ..SynthParams::default()
    });
    let (later, earlier): (Vec<_>, Vec<_>) = data.ratings.iter().partition(|r| {
        movrek_inference::util::mix(u64::from(r.user) << 32 | u64::from(r.movie)).is_multiple_of(7)
    });
    let base = Dataset {
        ratings: earlier,
        ..data.clone()
    };
    let base_dir = dir.join("base");
    std::fs::create_dir_all(&base_dir).unwrap();
    write_ml1m(&base, &base_dir).unwrap();
    let lines = later
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let minute = i % 1440;
            format!(
                "2026-12-01T{:02}:{:02}:00,{},GET /rate/{}={}",
                minute / 60,
                minute % 60,
                r.user,
                r.movie,
                r.value as u8
            )
        })
        .collect();
    (base_dir, lines)
}
