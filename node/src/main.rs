use std::process::ExitCode;

use clap::Parser;
use upswarm::cli::{Cli, run};

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    upswarm::http::install_crypto_provider();
    run(Cli::parse())
}

/// `upswarm releases | head -1`: when whoever reads our output goes away, end quietly, as
/// a command killed by SIGPIPE would, instead of panicking in `println!`. (Rust ignores
/// SIGPIPE, and restoring its default would take `unsafe`.)
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // `println!` ("failed printing to stdout: Broken pipe"), and libraries that write
        // to a pipe and panic the same way.
        if msg.contains("Broken pipe") {
            // 128 + SIGPIPE, what a shell reports for a command ended by a broken pipe.
            std::process::exit(141);
        }
        default(info);
    }));
}
