//! The `idem` binary: thin by design. Each command's options and logic live in a library
//! crate; the binary parses the command line, does the wiring a library must not do (the
//! log subscriber, the shutdown signal), and maps the result to an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod limits;
mod logging;
#[cfg(feature = "otel")]
mod otel;
mod shutdown;
mod telemetry;

use limits::LimitArgs;
use logging::LogArgs;

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
    Serve {
        #[command(flatten)]
        args: idem_pay::serve::ServeArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Create, list and revoke the API keys of `idem serve --auth api-keys` (DESIGN §5a).
    Keys(idem_pay::keys::KeysArgs),
    /// Put the idempotency layer in front of any HTTP service, as a reverse proxy.
    Proxy {
        #[command(flatten)]
        args: idem_proxy::ProxyArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Run the payment service (or `idem proxy`, `--target proxy`) under injected faults and
    /// check no order is paid twice (no key runs twice but for the proxy's limit).
    Chaos(Box<idem_chaos::ChaosArgs>),
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
        Command::Serve { args, limits, log } => {
            let _logging = logging::init(&log)?;
            let exposition = telemetry::install()?;
            let limits = limits.limits();
            tokio::runtime::Runtime::new()?.block_on(async {
                telemetry::spawn_upkeep(exposition.clone());
                let metrics = idem_pay::metrics::Metrics::global(Some(exposition));
                idem_pay::serve::serve(args, limits, metrics, shutdown::listen()?).await
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy { args, limits, log } => {
            let _logging = logging::init(&log)?;
            let exposition = telemetry::install()?;
            let limits = limits.limits();
            tokio::runtime::Runtime::new()?.block_on(async {
                telemetry::spawn_upkeep(exposition.clone());
                let shutdown = shutdown::listen()?;
                anyhow::Ok(idem_proxy::run(args, limits, Some(exposition), shutdown).await?)
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(args) => {
            tokio::runtime::Runtime::new()?.block_on(idem_pay::keys::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        // Nodes start from the `idem` binary running this command unless told otherwise
        // (`--idem-bin`): only the binary knows that it is `idem`.
        Command::Chaos(args) => Ok(idem_chaos::run(*args, &std::env::current_exe()?)?),
        Command::Bench(args) => {
            let summary = idem_bench::run_blocking(&args, &std::env::current_exe()?)?;
            println!("{}", summary.render(args.json));
            // Any unexpected answer fails the command, so a smoke run in CI cannot rot.
            Ok(ExitCode::from(u8::from(summary.error_count() > 0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use logging::LogFormat;

    fn log_format(argv: &[&str]) -> LogFormat {
        match Cli::try_parse_from(argv)
            .expect("the command line parses")
            .command
        {
            Command::Serve { log, .. } | Command::Proxy { log, .. } => log.log_format,
            other => panic!("not a serving command: {other:?}"),
        }
    }

    #[test]
    fn serve_and_proxy_take_the_same_log_format_option() {
        assert_eq!(log_format(&["idem", "serve"]), LogFormat::Text);
        assert_eq!(
            log_format(&["idem", "serve", "--log-format", "json"]),
            LogFormat::Json
        );
        let proxy = ["idem", "proxy", "--upstream", "http://127.0.0.1:1"];
        assert_eq!(log_format(&proxy), LogFormat::Text);
        assert_eq!(
            log_format(&[&proxy[..], &["--log-format", "json"]].concat()),
            LogFormat::Json
        );
        assert!(Cli::try_parse_from(["idem", "serve", "--log-format", "yaml"]).is_err());
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
