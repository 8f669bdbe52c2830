//! `movrek-operator`: command-line entry point (`crd` prints the CRD YAML, `run` starts the
//! operator).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kubernetes operator that rolls out movie-recommendation models with canaries.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the custom resource definition as YAML.
    Crd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match movrek_operator::crd::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("movrek-operator: cannot render the CRD: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
