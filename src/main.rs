//! `movrek-operator`: placeholder entry point until the operator core lands (issue 3).

fn main() {
    eprintln!("movrek-operator: the operator core is not built yet");
    std::process::exit(2);
}
