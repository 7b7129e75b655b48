//! [`ProxyArgs`]: the options of `idem proxy`, each with an `IDEM_*` variable.

use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use idem_http::{Config, InFlight};

use crate::Error;

/// Options of `idem proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// The service to forward to, such as `http://127.0.0.1:3000` (plain HTTP).
    #[arg(long, env = "IDEM_UPSTREAM")]
    pub upstream: String,

    /// Where to listen; port 0 picks a free port. The bound address is printed on stdout.
    #[arg(long, env = "IDEM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// The SQL store: `sqlite://PATH`, `postgres://…` or `mysql://…`. Without it (and
    /// without `--redis`), records live in the SQLite file `./idem-data/proxy.db`.
    #[arg(long, env = "IDEM_DATABASE")]
    pub database: Option<String>,

    /// The Redis store, such as `redis://127.0.0.1:6379`. With `--database` as well, Redis
    /// answers replays in front and the database stays the truth.
    #[arg(long, env = "IDEM_REDIS")]
    pub redis: Option<String>,

    /// Keep records in this process's memory only (one proxy, lost on restart).
    #[arg(long, env = "IDEM_MEMORY", conflicts_with_all = ["database", "redis"])]
    pub memory: bool,

    /// The methods guarded, comma-separated; the others pass through.
    #[arg(
        long,
        env = "IDEM_METHODS",
        value_delimiter = ',',
        default_value = "POST,PATCH"
    )]
    pub methods: Vec<String>,

    /// Pass guarded requests without a key through unguarded instead of refusing them (400).
    #[arg(long, env = "IDEM_KEY_OPTIONAL")]
    pub key_optional: bool,

    /// The header naming the principal keys are scoped by (hashed before it is stored).
    #[arg(long, env = "IDEM_PRINCIPAL_HEADER", default_value = "authorization")]
    pub principal_header: String,

    /// Let a duplicate wait up to this long for the first request's answer instead of
    /// answering 409 at once.
    #[arg(long, env = "IDEM_IN_FLIGHT_WAIT_MS")]
    pub in_flight_wait_ms: Option<u64>,

    /// How long a running request holds its key before another node may take it over.
    #[arg(long, env = "IDEM_LEASE_MS", default_value_t = 60_000)]
    pub lease_ms: u64,

    /// How long answers are kept for replay.
    #[arg(long, env = "IDEM_TTL_SECS", default_value_t = 86_400)]
    pub ttl_secs: u64,

    /// How often expired records are deleted from the store (0: never; Redis also expires
    /// them by itself).
    #[arg(long, env = "IDEM_PURGE_EVERY_SECS", default_value_t = 60)]
    pub purge_every_secs: u64,

    /// Serve `/metrics`, `/healthz` and `/readyz` on this address, apart from the guarded
    /// listener (off when not given; port 0 picks a free port, printed).
    #[arg(long, env = "IDEM_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,

    /// How long `/readyz` waits for the store to answer before it says 503.
    #[arg(long, env = "IDEM_READY_TIMEOUT_MS", default_value_t = 1_000)]
    pub ready_timeout_ms: u64,

    /// The largest guarded request body; larger ones get 413.
    #[arg(long, env = "IDEM_BODY_LIMIT_BYTES", default_value_t = idem_http::BODY_LIMIT_BYTES_DEFAULT)]
    pub body_limit_bytes: usize,
}

impl ProxyArgs {
    /// The layer configuration these options describe.
    ///
    /// # Errors
    /// [`Error::Config`] for an unknown method, a bad header name or a zero lease.
    pub fn layer_config(&self) -> Result<Config, Error> {
        let methods = self
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.trim().to_ascii_uppercase().as_bytes())
                    .map_err(|_| Error::Config(format!("--methods: {m:?} is not a method")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let header = HeaderName::from_bytes(self.principal_header.as_bytes()).map_err(|_| {
            Error::Config(format!(
                "--principal-header: {:?} is not a header name",
                self.principal_header
            ))
        })?;
        if self.lease_ms == 0 || self.ttl_secs == 0 {
            return Err(Error::Config(
                "--lease-ms and --ttl-secs must be above 0".into(),
            ));
        }
        let in_flight = match self.in_flight_wait_ms {
            Some(ms) => InFlight::Wait {
                max: Duration::from_millis(ms),
            },
            None => InFlight::Reject,
        };
        Ok(Config::default()
            .methods(methods)
            .key_required(!self.key_optional)
            .principal(move |parts| parts.headers.get(&header).map(|v| digest(v.as_bytes())))
            .lease(Duration::from_millis(self.lease_ms))
            .ttl(Duration::from_secs(self.ttl_secs))
            .body_limit_bytes(self.body_limit_bytes)
            .in_flight(in_flight))
    }
}

/// A credential's stand-in: long enough never to collide, useless to a reader of the store.
fn digest(value: &[u8]) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(value);
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
