//! The `idem` binary: thin by design. Each command's options and logic live in a library
//! crate; `main` parses the command line and maps the result to an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// idem: exactly-once writes for distributed services.
#[derive(Debug, Parser)]
#[command(name = "idem", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the payment service (DESIGN §5): one node; many nodes may share a database.
    Serve(idem_pay::serve::ServeArgs),
    /// Put the idempotency layer in front of any HTTP service, as a reverse proxy.
    Proxy(idem_http::proxy::ProxyArgs),
    /// Run the payment service under injected faults and check no order is paid twice.
    Chaos(idem_chaos::ChaosArgs),
    /// Load-test the payment API: fresh payments, replays and conflicts; against bare SQL.
    Bench(idem_bench::BenchArgs),
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("idem: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => idem_pay::serve::run(args),
        Command::Proxy(args) => {
            tokio::runtime::Runtime::new()?.block_on(idem_http::proxy::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Chaos(args) => Ok(idem_chaos::run(args)?),
        Command::Bench(args) => {
            let summary = idem_bench::run_blocking(&args, &std::env::current_exe()?)?;
            println!("{}", summary.render(args.json));
            // Any unexpected answer fails the command, so a smoke run in CI cannot rot.
            Ok(ExitCode::from(u8::from(summary.error_count() > 0)))
        }
    }
}
