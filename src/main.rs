//! The `docstore` command: parse arguments, set up the log and the progress bars on
//! standard error, run, print one clear error line and exit non-zero on failure.

mod cli;
mod progress;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    let bars = progress::Bars::new(args.display());
    args.init_logging(&bars);
    match cli::run(args, &bars).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            bars.suspend(|| eprintln!("error: {e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
