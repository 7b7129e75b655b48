//! What one HTTP client may take of `idem serve` and `idem proxy`: the same options, and the
//! same server (`idem_http::server`), for both.

use std::time::Duration;

use clap::{value_parser, Args};
use idem_http::server::{
    Limits, BODY_TIMEOUT_DEFAULT, HEADER_TIMEOUT_DEFAULT, MAX_CLIENTS_DEFAULT,
    MAX_HEADER_BYTES_DEFAULT,
};

/// The limits options, shared by every command that serves HTTP.
#[derive(Debug, Clone, Args)]
pub(crate) struct LimitArgs {
    /// Close a connection that has not sent a whole request head within this long of
    /// opening or of its previous answer: a client trickling headers, an idle keep-alive.
    #[arg(
        long,
        env = "IDEM_HEADER_TIMEOUT_MS",
        default_value_t = millis(HEADER_TIMEOUT_DEFAULT),
        value_parser = value_parser!(u64).range(1..)
    )]
    pub(crate) header_timeout_ms: u64,

    /// Answer 408 (and run nothing) when a request body has not arrived whole within this
    /// long of its head.
    #[arg(
        long,
        env = "IDEM_BODY_TIMEOUT_MS",
        default_value_t = millis(BODY_TIMEOUT_DEFAULT),
        value_parser = value_parser!(u64).range(1..)
    )]
    pub(crate) body_timeout_ms: u64,

    /// Answer 431 to a request whose head (request line and headers) is larger.
    #[arg(
        long,
        env = "IDEM_MAX_HEADER_BYTES",
        default_value_t = MAX_HEADER_BYTES_DEFAULT as u64,
        value_parser = value_parser!(u64).range(1024..=256 * 1024)
    )]
    pub(crate) max_header_bytes: u64,

    /// Open connections at most; past it a new connection is closed at once, the open ones
    /// carry on.
    #[arg(
        long,
        env = "IDEM_MAX_CLIENTS",
        default_value_t = MAX_CLIENTS_DEFAULT as u64,
        value_parser = value_parser!(u64).range(1..)
    )]
    pub(crate) max_clients: u64,
}

impl LimitArgs {
    /// The server limits these options describe.
    pub(crate) fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.header_timeout = Duration::from_millis(self.header_timeout_ms);
        limits.body_timeout = Duration::from_millis(self.body_timeout_ms);
        // Both ranges are checked by clap, far below `usize::MAX` on any platform idem runs on.
        limits.max_header_bytes = usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX);
        limits.max_clients = usize::try_from(self.max_clients).unwrap_or(usize::MAX);
        limits
    }
}

/// A default duration as the whole milliseconds its option takes.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        limits: LimitArgs,
    }

    #[test]
    fn defaults_are_the_servers_and_flags_override_them() {
        let cli = Cli::try_parse_from(["idem"]).expect("no flags parse");
        assert_eq!(cli.limits.limits(), Limits::default());
        let cli = Cli::try_parse_from([
            "idem",
            "--header-timeout-ms",
            "1500",
            "--body-timeout-ms",
            "900",
            "--max-header-bytes",
            "8192",
            "--max-clients",
            "3",
        ])
        .expect("flags parse");
        let limits = cli.limits.limits();
        assert_eq!(limits.header_timeout, Duration::from_millis(1500));
        assert_eq!(limits.body_timeout, Duration::from_millis(900));
        assert_eq!((limits.max_header_bytes, limits.max_clients), (8192, 3));
    }

    #[test]
    fn zero_limits_are_refused() {
        for flag in ["--header-timeout-ms", "--body-timeout-ms", "--max-clients"] {
            assert!(
                Cli::try_parse_from(["idem", flag, "0"]).is_err(),
                "{flag} 0"
            );
        }
        assert!(Cli::try_parse_from(["idem", "--max-header-bytes", "10"]).is_err());
    }
}
