//! Request-path cost of one impression record: the encoder `movrek serve` uses
//! (`ImpressionEncoder`, fixed fields serialized once, the second's date cached per thread)
//! against building an `Impression` and serializing it with serde, as the server did before.
//! Both write the same bytes (a unit test pins that); this measures only the encoding, not
//! librdkafka's queueing (see `bench/impressions.sh` for the whole cost in a server).
//!
//! ```text
//! cargo bench -p movrek-inference --bench impressions            # 2,000,000 records each
//! cargo bench -p movrek-inference --bench impressions -- 5000000
//! ```

use std::hint::black_box;
use std::time::Instant;

use movrek_inference::bus::impression::{
    FORMAT_VERSION, Impression, ImpressionEncoder, ImpressionIds, Millis,
};

const RELEASE: &str = "movies";
const TRACK: &str = "canary";
const VERSION: &str = "v7";

fn main() {
    let records: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let sha = "ab".repeat(32);
    let movies: Vec<u32> = (0..20).map(|i| 1_000 + i * 7_919).collect();
    let ids = ImpressionIds::new(7);
    let encoder = ImpressionEncoder::new(RELEASE, TRACK, VERSION, &sha);

    // Alternate the two sides in rounds so drift on a shared machine hits both alike.
    let rounds = 4;
    let per_round = records / rounds;
    let (mut serde_ns, mut encoder_ns, mut bytes) = (0f64, 0f64, 0usize);
    let mut out = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        for user in 0..per_round {
            let record = Impression {
                v: FORMAT_VERSION,
                id: ids.next(),
                time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                user,
                movies: movies.clone(),
                release: RELEASE.to_owned(),
                track: TRACK.to_owned(),
                model_version: VERSION.to_owned(),
                artifact_sha256: sha.clone(),
            };
            bytes += black_box(record.to_json()).len();
        }
        serde_ns += start.elapsed().as_secs_f64() * 1e9;

        let start = Instant::now();
        for user in 0..per_round {
            let id = ids.next();
            encoder.encode_into(&mut out, &id, Millis::now(), user, &movies);
            bytes += black_box(&out).len();
        }
        encoder_ns += start.elapsed().as_secs_f64() * 1e9;
    }
    let n = f64::from(per_round * rounds);
    println!(
        "impression record ({} bytes): serde struct {:.0} ns, encoder {:.0} ns, ratio {:.2}x ({} records each)",
        out.len(),
        serde_ns / n,
        encoder_ns / n,
        serde_ns / encoder_ns,
        per_round * rounds
    );
    black_box(bytes);
}
