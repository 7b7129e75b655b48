//! The peer comparison's load driver: fresh keys, replays, then races of identical
//! requests against one peer's `POST /work`, printed as one JSON object.
//!
//! `bench/peers/run.sh` starts each peer's server and runs this against it:
//!
//! ```text
//! cargo run --release -p idem-bench --example peer_load -- --name idem --url http://127.0.0.1:PORT
//! ```

use std::process::ExitCode;

use clap::Parser;

/// Measure one peer.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    peer: idem_bench::peers::PeerArgs,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("peer_load: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(idem_bench::peers::measure(&cli.peer, cli.quiet)) {
        Ok(report) => {
            println!("{}", serde_json::to_string(&report).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("peer_load: {e}");
            ExitCode::FAILURE
        }
    }
}
