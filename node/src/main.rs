use std::process::ExitCode;

use clap::Parser;
use upswarm::cli::{Cli, run};

fn main() -> ExitCode {
    run(Cli::parse())
}
