//! The peer comparison's workload, the same for every idempotency library: `POST /work`
//! with an `Idempotency-Key` header and a small JSON body, answered by a handler that does
//! a small fixed amount of work (1 ms of waiting, as for a downstream call) and counts its
//! runs, readable at `GET /runs`. Three phases: fresh keys, replays of those keys, then
//! rounds of identical requests racing on one new key, where the right number of handler
//! runs is 1. A server may need a session first (`GET /session`, its cookie sent after).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, COOKIE};
use http::Method;
use serde::Serialize;
use tokio::sync::Barrier;

use crate::client::{Conn, Target};
use crate::error::{BenchError, Result};
use crate::load::{drive, LoadClient, Pace, Step};
use crate::stats::Figures;

/// Keys each client remembers from the fresh phase to replay.
const REMEMBERED_MAX: usize = 4096;

/// Options of one peer's measurement.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// The peer's name in the table.
    #[arg(long)]
    pub name: String,
    /// Base URL of the peer's server.
    #[arg(long)]
    pub url: String,
    /// Concurrent clients in the fresh and replay phases.
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// How long each of the fresh and replay phases runs.
    #[arg(long, default_value = "10s", value_parser = crate::args::parse_duration)]
    pub duration: Duration,
    /// Rounds of racing identical requests.
    #[arg(long, default_value_t = 5)]
    pub race_rounds: usize,
    /// Identical requests per round.
    #[arg(long, default_value_t = 32)]
    pub racers: usize,
    /// Prefix of this run's keys.
    #[arg(long, default_value = "bench")]
    pub key_prefix: String,
}

/// One peer's row of the comparison.
#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    /// The peer.
    pub name: String,
    /// New key on every request.
    pub fresh: Figures,
    /// Keys of the fresh phase again.
    pub replay: Figures,
    /// Handler runs during the fresh phase (right answer: its successful requests).
    pub fresh_runs: u64,
    /// Handler runs during the replay phase (right answer: 0).
    pub replay_runs: u64,
    /// Handler runs in each race round (right answer: 1 each).
    pub race_runs: Vec<u64>,
    /// Unexpected answers by "phase: cause".
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// Measures one peer: fresh, replay, race.
///
/// # Errors
/// The server cannot be reached, or its `/runs` does not answer a number.
pub async fn measure(args: &PeerArgs, quiet: bool) -> Result<PeerReport> {
    let base = Target::resolve(&args.url, &[]).await?;
    let headers = match session_cookie(&base).await? {
        Some(cookie) => vec![(COOKIE, cookie)],
        None => Vec::new(),
    };
    let target = Target::at(base.addr, headers);
    let key_header = HeaderName::from_static("idempotency-key");
    let pace = Pace {
        clients: args.clients.max(1),
        rate: None,
        duration: args.duration,
        requests: None,
    };

    let fresh_clients: Vec<WorkClient> = (0..pace.clients)
        .map(|i| WorkClient {
            conn: Conn::new(target.clone()),
            key_header: key_header.clone(),
            prefix: format!("{}-{i}", args.key_prefix),
            seq: 0,
            keys: Vec::new(),
            replay_at: None,
        })
        .collect();
    let mut probe = Conn::new(target.clone());
    let runs_at_start = runs(&mut probe).await?;
    let (fresh_tally, fresh_elapsed) = drive_collect(pace, "fresh", quiet, fresh_clients).await;
    let runs_after_fresh = runs(&mut probe).await?;
    let (fresh, mut errors, mut clients) = fresh_tally;
    let fresh = fresh.figures(fresh_elapsed);
    for client in &mut clients {
        client.replay_at = Some(0);
    }
    let ((replay, replay_errors, _), replay_elapsed) =
        drive_collect(pace, "replay", quiet, clients).await;
    errors.extend(replay_errors);
    let replay = replay.figures(replay_elapsed);
    let runs_after_replay = runs(&mut probe).await?;

    let mut race_runs = Vec::with_capacity(args.race_rounds);
    for round in 0..args.race_rounds {
        let key = format!("{}-race-{round}", args.key_prefix);
        race_runs.push(race(&target, &key_header, &key, args.racers).await?);
    }
    // A server holding state per session (axum-idempotent) deletes it; others answer 404.
    let _ = Conn::new(target.clone())
        .send(Method::POST, "/cleanup", None, None)
        .await;
    Ok(PeerReport {
        name: args.name.clone(),
        fresh,
        replay,
        fresh_runs: runs_after_fresh.saturating_sub(runs_at_start),
        replay_runs: runs_after_replay.saturating_sub(runs_after_fresh),
        race_runs,
        errors,
    })
}

type Collected = (
    crate::stats::Recorder,
    std::collections::BTreeMap<String, u64>,
    Vec<WorkClient>,
);

/// Drives `clients` and hands them back (their keys are the replay phase's).
async fn drive_collect(
    pace: Pace,
    label: &str,
    quiet: bool,
    clients: Vec<WorkClient>,
) -> (Collected, Duration) {
    let shared: Vec<Arc<tokio::sync::Mutex<WorkClient>>> = clients
        .into_iter()
        .map(|c| Arc::new(tokio::sync::Mutex::new(c)))
        .collect();
    let handles: Vec<Shared> = shared.iter().cloned().map(Shared).collect();
    let (tally, elapsed) = drive(pace, label, quiet, handles).await;
    // drive() has joined every client task, so each Arc is the last one.
    let back = shared
        .into_iter()
        .filter_map(|client| {
            Arc::try_unwrap(client)
                .ok()
                .map(tokio::sync::Mutex::into_inner)
        })
        .collect();
    ((tally.total(), tally.errors, back), elapsed)
}

/// A client the driver can own while the caller keeps it for the next phase.
struct Shared(Arc<tokio::sync::Mutex<WorkClient>>);

impl LoadClient for Shared {
    async fn step(&mut self) -> Step {
        self.0.lock().await.step().await
    }
}

struct WorkClient {
    conn: Conn,
    key_header: HeaderName,
    prefix: String,
    seq: u64,
    keys: Vec<HeaderValue>,
    /// `None`: fresh phase; `Some(i)`: replaying `keys[i]` next.
    replay_at: Option<usize>,
}

impl WorkClient {
    async fn step(&mut self) -> Step {
        let (phase, key) = match self.replay_at {
            Some(i) if !self.keys.is_empty() => {
                self.replay_at = Some((i + 1) % self.keys.len());
                ("replay", self.keys[i % self.keys.len()].clone())
            }
            _ => {
                self.seq += 1;
                let key = format!("{}-{}", self.prefix, self.seq);
                match HeaderValue::from_str(&key) {
                    Ok(value) => ("fresh", value),
                    Err(_) => {
                        return Step {
                            kind: "fresh",
                            error: Some("key is not a header value".into()),
                        }
                    }
                }
            }
        };
        let body = Bytes::from(format!(
            r#"{{"key":"{}","n":1}}"#,
            key.to_str().unwrap_or_default()
        ));
        let answer = self
            .conn
            .send(
                Method::POST,
                "/work",
                Some((&self.key_header, &key)),
                Some(body),
            )
            .await;
        let error = match answer {
            Ok(a) if a.status.is_success() => None,
            Ok(a) => Some(a.status.to_string()),
            Err(e) => Some(e),
        };
        if phase == "fresh" && error.is_none() && self.keys.len() < REMEMBERED_MAX {
            self.keys.push(key);
        }
        Step { kind: phase, error }
    }
}

/// `GET /session`; the cookie it sets, if any.
async fn session_cookie(target: &Target) -> Result<Option<HeaderValue>> {
    let mut conn = Conn::new(target.clone());
    let answer = conn
        .send(Method::GET, "/session", None, None)
        .await
        .map_err(|e| BenchError::Setup(format!("GET /session: {e}")))?;
    Ok(answer.set_cookie.and_then(|c| {
        let pair = c.to_str().ok()?.split(';').next()?.trim().to_owned();
        HeaderValue::from_str(&pair).ok()
    }))
}

/// The handler's run count.
async fn runs(conn: &mut Conn) -> Result<u64> {
    let answer = conn
        .send(Method::GET, "/runs", None, None)
        .await
        .map_err(|e| BenchError::Setup(format!("GET /runs: {e}")))?;
    std::str::from_utf8(&answer.body)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            BenchError::Setup(format!("GET /runs answered {}, not a count", answer.status))
        })
}

/// `racers` identical requests on `key`, released together; the handler runs they caused.
async fn race(target: &Target, key_header: &HeaderName, key: &str, racers: usize) -> Result<u64> {
    let mut probe = Conn::new(target.clone());
    let before = runs(&mut probe).await?;
    let value =
        HeaderValue::from_str(key).map_err(|_| BenchError::Setup(format!("race key {key}")))?;
    let barrier = Arc::new(Barrier::new(racers.max(1)));
    let mut tasks = Vec::with_capacity(racers);
    for _ in 0..racers.max(1) {
        let mut conn = Conn::new(target.clone());
        // Open the connection before the start line, so the requests leave together.
        runs(&mut conn).await?;
        let (barrier, key_header, value) = (barrier.clone(), key_header.clone(), value.clone());
        let body = Bytes::from(format!(r#"{{"key":"{key}","n":1}}"#));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let _ = conn
                .send(
                    Method::POST,
                    "/work",
                    Some((&key_header, &value)),
                    Some(body),
                )
                .await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    // Handlers still running when their request was refused (409) finish meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(runs(&mut probe).await?.saturating_sub(before))
}
