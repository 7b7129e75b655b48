//! The options of `idem bench`, and the small parsers they need (durations, the mix).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::BenchError;
use crate::skew::Skew;

/// Options of `idem bench`, flattened into the `idem` binary's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Base URL of a running `idem serve`, such as http://127.0.0.1:8080.
    #[arg(long, env = "IDEM_BENCH_URL", required_unless_present = "spawn")]
    pub url: Option<String>,
    /// Start `idem serve` for the run on `--database` (a free loopback port), stop it after.
    #[arg(
        long,
        env = "IDEM_BENCH_SPAWN",
        conflicts_with = "url",
        requires = "database"
    )]
    pub spawn: bool,
    /// Database of the spawned server and of the SQL baseline: sqlite://…, postgres://…, mysql://….
    #[arg(long, env = "IDEM_BENCH_DATABASE")]
    pub database: Option<String>,
    /// Create a fresh database (PostgreSQL, MySQL) or file (SQLite) next to `--database` for
    /// the spawned server, and drop it afterwards: runs never see each other's rows.
    #[arg(long, env = "IDEM_BENCH_FRESH_DATABASE")]
    pub fresh_database: bool,
    /// The `idem` binary `--spawn` starts [default: the `idem` running this command].
    #[arg(long, env = "IDEM_BENCH_IDEM_BIN", requires = "spawn")]
    pub idem_bin: Option<PathBuf>,
    /// Extra argument passed to the spawned `idem serve` (repeat for several).
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    pub serve_args: Vec<String>,
    /// Concurrent clients, each with its own keep-alive connection.
    #[arg(long, env = "IDEM_BENCH_CLIENTS", default_value_t = 32)]
    pub clients: usize,
    /// Fixed request rate (requests/s over all clients) instead of as fast as the server
    /// answers; latency is then measured from each request's scheduled time.
    #[arg(long, env = "IDEM_BENCH_RATE")]
    pub rate: Option<f64>,
    /// How long to send requests: 10s, 500ms, 2m.
    #[arg(long, env = "IDEM_BENCH_DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Send this many requests instead of running for `--duration`.
    #[arg(long, env = "IDEM_BENCH_REQUESTS")]
    pub requests: Option<u64>,
    /// Weights of the request kinds: fresh payments, replays of a completed payment, and
    /// conflicting reuses of a paid order_id (other amount).
    #[arg(
        long,
        env = "IDEM_BENCH_MIX",
        default_value = "fresh=80,replay=15,conflict=5"
    )]
    pub mix: Mix,
    /// Accounts opened before the run; each payment moves money between two of them.
    #[arg(long, env = "IDEM_BENCH_ACCOUNTS", default_value_t = 1000)]
    pub accounts: usize,
    /// Who pays whom, for the load and both baselines: `uniform`, or `hot[:PAYEES[:SHARE]]`
    /// (`hot` = `hot:10:0.8`: 80 % of payments go to 10 payees, the rest uniformly to the
    /// other accounts).
    #[arg(long, env = "IDEM_BENCH_ACCOUNTS_SKEW", default_value = "uniform")]
    pub accounts_skew: Skew,
    /// Header sent with every request, as `Name: value` (repeat for several).
    #[arg(long = "header", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// Send `Authorization: Bearer KEY` with every request. `new`, with `--spawn`: create a
    /// key in the spawned server's database (`idem keys create --tenant bench`) and start
    /// the server with `--auth api-keys`, to measure what authentication costs.
    #[arg(long, env = "IDEM_BENCH_API_KEY")]
    pub api_key: Option<String>,
    /// Also run the same money movement as a bare SQL transaction on a fresh database
    /// beside `--database`, with the same concurrency, and report the ratio.
    #[arg(long, env = "IDEM_BENCH_BASELINE_SQL", requires = "database")]
    pub baseline_sql: bool,
    /// Also run the same money movement and payment row as ONE statement per payment,
    /// autocommit (PostgreSQL: a data-modifying CTE; MariaDB and SQLite: an insert whose
    /// triggers move the money), with the same concurrency, and report the ratio.
    #[arg(long, env = "IDEM_BENCH_BASELINE_STATEMENT", requires = "database")]
    pub baseline_statement: bool,
    /// Load the broker path instead of HTTP: a NATS (nats://…) or RabbitMQ (amqp://…) URL.
    /// The spawned `idem serve` consumes from a stream and subject, or a queue, of the run's
    /// own (deleted at the end); each client publishes a fresh order (its order_id as the
    /// message id) and waits for the reply; replies/s and latency are reported.
    #[arg(
        long,
        env = "IDEM_BENCH_BROKER",
        requires = "spawn",
        conflicts_with_all = ["sweep", "mix", "api_key", "baseline_sql", "baseline_statement"]
    )]
    pub broker: Option<String>,
    /// With --broker: first run the same consumer loop with the node spawned with
    /// `--unsafe-disable-idempotency`, on the same stream and database, and report idem's
    /// replies/s ÷ that. Needs an `idem` built with
    /// `--features unsafe-disable-idempotency` as --idem-bin.
    #[arg(long, env = "IDEM_BENCH_BASELINE_UNSAFE", requires = "broker")]
    pub baseline_unsafe: bool,
    /// With --baseline-unsafe: run the baseline after idem's node instead of before, so
    /// that alternating runs cancel what running second gains or loses (warm caches,
    /// fuller tables and stream).
    #[arg(long, env = "IDEM_BENCH_BASELINE_LAST", requires = "baseline_unsafe")]
    pub baseline_last: bool,
    /// Run fresh-only and replay-only loads at each of these client counts instead of one run.
    #[arg(long, env = "IDEM_BENCH_SWEEP", value_delimiter = ',')]
    pub sweep: Vec<usize>,
    /// Where to write the sweep's plot (PNG) of throughput and p99 against clients.
    #[arg(long, env = "IDEM_BENCH_PLOT", requires = "sweep")]
    pub plot: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long, env = "IDEM_BENCH_JSON")]
    pub json: bool,
    /// No progress bar.
    #[arg(long, env = "IDEM_BENCH_QUIET")]
    pub quiet: bool,
}

/// The `--api-key` value that creates a key for a spawned server.
pub(crate) const NEW_API_KEY: &str = "new";

/// The kinds of request the load mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A payment with a new `order_id`: money moves.
    Fresh,
    /// The exact request of a completed payment again: the first answer, replayed.
    Replay,
    /// A completed payment's `order_id` with another amount: 422 `order_id_conflict`.
    Conflict,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 3] = [Kind::Fresh, Kind::Replay, Kind::Conflict];

    /// The kind's name in the mix and the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fresh => "fresh",
            Kind::Replay => "replay",
            Kind::Conflict => "conflict",
        }
    }
}

/// Integer weights of the request kinds, such as `fresh=80,replay=15,conflict=5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 3],
}

impl Mix {
    /// Only this kind.
    pub fn only(kind: Kind) -> Self {
        let mut weights = [0; 3];
        weights[kind as usize] = 1;
        Mix { weights }
    }

    /// The weight of one kind.
    pub fn weight(&self, kind: Kind) -> u32 {
        self.weights[kind as usize]
    }

    /// The kind for a uniform draw `roll` in `0..total()`.
    pub fn pick(&self, roll: u32) -> Kind {
        let mut rest = roll;
        for kind in Kind::ALL {
            let w = self.weight(kind);
            if rest < w {
                return kind;
            }
            rest -= w;
        }
        Kind::Fresh
    }

    /// The sum of the weights (never 0).
    pub fn total(&self) -> u32 {
        self.weights.iter().sum()
    }
}

impl FromStr for Mix {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| BenchError::InvalidArgument {
            what: "--mix",
            reason,
        };
        let mut weights = [0u32; 3];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("`{part}` is not kind=weight")))?;
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == name.trim())
                .ok_or_else(|| {
                    invalid(format!("unknown kind `{name}` (fresh, replay, conflict)"))
                })?;
            weights[kind as usize] = weight
                .trim()
                .parse()
                .map_err(|_| invalid(format!("`{weight}` is not a whole number")))?;
        }
        if weights.iter().sum::<u32>() == 0 {
            return Err(invalid("the weights add up to 0".into()));
        }
        Ok(Mix { weights })
    }
}

/// Parses `250ms`, `10s`, `2m` or a bare number of seconds.
///
/// # Errors
/// A value that is not a number with one of those units.
pub fn parse_duration(s: &str) -> Result<Duration, BenchError> {
    let s = s.trim();
    let invalid = || BenchError::InvalidArgument {
        what: "duration",
        reason: format!("`{s}` is not like 250ms, 10s or 2m"),
    };
    let (number, scale_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        (s, 1_000.0)
    };
    let value: f64 = number.trim().parse().map_err(|_| invalid())?;
    if !value.is_finite() || value < 0.0 {
        return Err(invalid());
    }
    Ok(Duration::from_secs_f64(value * scale_ms / 1_000.0))
}

/// Parses `Name: value` into a header pair.
///
/// # Errors
/// A value without a colon.
pub fn parse_header(s: &str) -> Result<(String, String), BenchError> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| BenchError::InvalidArgument {
            what: "--header",
            reason: format!("`{s}` is not `Name: value`"),
        })?;
    Ok((name.trim().to_owned(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_and_picks_by_weight() {
        let mix: Mix = "fresh=80, replay=15,conflict=5".parse().expect("valid mix");
        assert_eq!(mix.total(), 100);
        assert_eq!(mix.pick(0), Kind::Fresh);
        assert_eq!(mix.pick(79), Kind::Fresh);
        assert_eq!(mix.pick(80), Kind::Replay);
        assert_eq!(mix.pick(95), Kind::Conflict);
        assert!("fresh=0".parse::<Mix>().is_err());
        assert!("other=3".parse::<Mix>().is_err());
        assert_eq!(
            "replay=1".parse::<Mix>().expect("valid"),
            Mix::only(Kind::Replay)
        );
    }

    #[test]
    fn durations_have_units() {
        assert_eq!(
            parse_duration("250ms").expect("ms"),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("3s").expect("s"), Duration::from_secs(3));
        assert_eq!(parse_duration("2m").expect("m"), Duration::from_secs(120));
        assert_eq!(
            parse_duration("1.5").expect("bare"),
            Duration::from_millis(1500)
        );
        assert!(parse_duration("soon").is_err());
    }
}
