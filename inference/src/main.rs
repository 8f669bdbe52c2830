//! `movrek`: command-line entry point (generate, ingest, train, eval, serve, recommend).

fn main() {
    eprintln!("movrek: not built yet");
    std::process::exit(2);
}
