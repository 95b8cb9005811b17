//! The `chronicle` binary: parse the command line, set up logging, run.
//! Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;

use chronicle::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    chronicle::telemetry::init(cli.log_format);
    match cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            cli::exit_code(&error)
        }
    }
}
