//! The careful client: pays random orders between the run's accounts and retries each one
//! as a real client should — on a timeout, a connection error, a 5xx or a 409, with
//! exponential backoff and full jitter, with the same `order_id` and the same bytes — until
//! a final answer (201, 402, 422, or any other 4xx, which the checker then judges).
//!
//! Some orders that were paid are sent again later on purpose: unchanged (the answer must
//! be the first one replayed) or with another amount (the answer must be 422).
//!
//! The same clients drive both targets: the payment service (`POST /v1/payments`, the
//! `order_id` is the key) and the proxy's upstream (`POST /v1/transfers` with the order id as
//! the `Idempotency-Key` header, the same body).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use crate::balancer::REQUEST_ID_HEADER;

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The balancer's base URL (`http://127.0.0.1:port`).
    pub base_url: String,
    /// Where orders are posted: `/v1/payments`, or `/v1/transfers` behind the proxy.
    pub path: String,
    /// Whether each order carries its id as the `Idempotency-Key` header (the proxy target).
    pub idempotency_keys: bool,
    /// The `Authorization` header every request carries, if any (the proxy scopes keys by it,
    /// so a run's keys never meet another run's on a shared store).
    pub authorization: Option<String>,
    /// How long one attempt may take before the client gives up on it and retries.
    pub timeout: Duration,
    /// First backoff cap; doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    /// Largest backoff cap.
    pub backoff_max: Duration,
    /// Number of accounts (`acct-0` …) to pay between.
    pub accounts: usize,
    /// Largest amount of one order (amounts are 1 to this).
    pub amount_max: i64,
    /// Share of paid orders sent again unchanged later (expect a replay).
    pub replay_rate: f64,
    /// Share of paid orders sent again later with another amount (expect 422).
    pub conflict_rate: f64,
    /// The run's seed.
    pub seed: u64,
}

/// One final (or missing) answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, as sent.
    pub body: String,
    /// Whether `Idempotent-Replayed: true` came with it.
    pub replayed: bool,
}

impl Answer {
    /// The problem+json `code` member, if any.
    pub fn code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v.get("code")?.as_str().map(str::to_owned)
    }
}

/// One request sent until it got a final answer (or the run ended first).
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    /// Attempts made (1 when the first one got a final answer).
    pub attempts: u32,
    /// The final answer; `None` when the run ended before one came.
    pub answer: Option<Answer>,
}

/// An order: who pays whom how much.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    /// The business key.
    pub order_id: String,
    /// Paying account.
    pub payer: String,
    /// Paid account.
    pub payee: String,
    /// Minor units.
    pub amount: i64,
}

impl Order {
    /// The JSON body of `POST /v1/payments` for this order, with `amount` in place.
    pub fn body(&self, amount: i64) -> Bytes {
        Bytes::from(
            serde_json::json!({
                "order_id": self.order_id,
                "payer": self.payer,
                "payee": self.payee,
                "amount": amount,
            })
            .to_string(),
        )
    }
}

/// A deliberate re-send of a paid order.
#[derive(Debug, Clone, Serialize)]
pub enum Resend {
    /// The same order again: expect the first answer replayed.
    Same(Sent),
    /// The same `order_id` with this other amount: expect 422 `order_id_conflict`.
    OtherAmount(i64, Sent),
}

/// Everything one order went through.
#[derive(Debug, Clone, Serialize)]
pub struct OrderHistory {
    /// The order.
    pub order: Order,
    /// Its first sending, with retries.
    pub first: Sent,
    /// Later deliberate re-sends.
    pub resends: Vec<Resend>,
}

/// Counters shared by every client while the run goes on.
#[derive(Debug, Default)]
pub struct ClientStats {
    /// Orders with a final answer (or given up at the end).
    pub orders_done: AtomicU64,
    /// Orders started.
    pub orders_started: AtomicU64,
    /// Attempts beyond the first of each request.
    pub retries: AtomicU64,
    /// Every attempt's outcome: an HTTP status, or `timeout`, `connection`, `other`.
    pub answers: Mutex<BTreeMap<String, u64>>,
}

impl ClientStats {
    /// Counts one attempt's outcome: an HTTP status, or `timeout`, `connection`, `other`.
    pub(crate) fn count(&self, what: String) {
        if let Ok(mut answers) = self.answers.lock() {
            *answers.entry(what).or_default() += 1;
        }
    }
}

/// When clients stop: no new order after `soft`, no more retries after `hard`.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// No order starts after this.
    pub soft: Instant,
    /// No attempt starts after this (the run's drain ends).
    pub hard: Instant,
    /// No order starts once this many have started.
    pub orders_max: u64,
}

/// What one client hands back.
#[derive(Debug)]
pub struct ClientResult {
    /// Its orders.
    pub orders: Vec<OrderHistory>,
    /// Order latencies, first attempt to final answer, in microseconds.
    pub latency_us: Histogram<u64>,
}

/// Sends one order's request until a final answer, as a careful client does: over HTTP
/// through the balancer ([`Retrier`]), or as a broker message ([`crate::broker`]).
pub trait Sender: Send + 'static {
    /// Sends `body` for `order_id` until a final answer or `hard`; `request_id` names this
    /// sending (the order id, or `<order id>/r<n>` for a deliberate re-send).
    fn send_order(
        &mut self,
        body: &Bytes,
        order_id: &str,
        request_id: &str,
        rng: &mut StdRng,
        hard: Instant,
    ) -> impl std::future::Future<Output = Sent> + Send;
}

/// A sender of requests that retries as a careful client does.
#[derive(Debug, Clone)]
pub struct Retrier {
    http: reqwest::Client,
    config: Arc<ClientConfig>,
    stats: Arc<ClientStats>,
}

impl Retrier {
    /// A retrier sending to the balancer named in `config`.
    pub fn new(http: reqwest::Client, config: Arc<ClientConfig>, stats: Arc<ClientStats>) -> Self {
        Self {
            http,
            config,
            stats,
        }
    }

    /// The clients' configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Posts `body` to `path` until a final answer or `hard`; `request_id` names the request
    /// for the balancer's fault draw (the attempt number is added), `key` is sent as the
    /// `Idempotency-Key` header when given.
    pub async fn send(
        &self,
        path: &str,
        body: &Bytes,
        (request_id, key): (&str, Option<&str>),
        rng: &mut StdRng,
        hard: Instant,
    ) -> Sent {
        let url = format!("{}{path}", self.config.base_url);
        let mut attempts = 0u32;
        loop {
            if Instant::now() >= hard {
                return Sent {
                    attempts,
                    answer: None,
                };
            }
            attempts += 1;
            if attempts > 1 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
            }
            let mut request = self.http.post(&url);
            if let Some(key) = key {
                request = request.header("idempotency-key", key);
            }
            if let Some(auth) = &self.config.authorization {
                request = request.header(http::header::AUTHORIZATION, auth);
            }
            let result = request
                .header(REQUEST_ID_HEADER, format!("{request_id}#{attempts}"))
                .header(http::header::CONTENT_TYPE, "application/json")
                .timeout(self.config.timeout)
                .body(body.clone())
                .send()
                .await;
            let mut wait_at_least = Duration::ZERO;
            match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    self.stats.count(status.to_string());
                    let replayed = response
                        .headers()
                        .get("idempotent-replayed")
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok());
                    match response.bytes().await {
                        Ok(bytes) if is_final(status) => {
                            return Sent {
                                attempts,
                                answer: Some(Answer {
                                    status,
                                    body: String::from_utf8_lossy(&bytes).into_owned(),
                                    replayed,
                                }),
                            }
                        }
                        Ok(_) => {}
                        // The body was cut: as good as no answer.
                        Err(_) => self.stats.count("connection".into()),
                    }
                    if status == 409 {
                        // Honour the server's hint, but never sleep past the backoff cap.
                        wait_at_least = Duration::from_secs(retry_after.unwrap_or(0))
                            .min(self.config.backoff_max);
                    }
                }
                Err(e) if e.is_timeout() => self.stats.count("timeout".into()),
                Err(e) if e.is_connect() || e.is_request() => self.stats.count("connection".into()),
                Err(_) => self.stats.count("other".into()),
            }
            let jitter = backoff(&self.config, attempts, rng);
            tokio::time::sleep(jitter.max(wait_at_least)).await;
        }
    }
}

impl Sender for Retrier {
    async fn send_order(
        &mut self,
        body: &Bytes,
        order_id: &str,
        request_id: &str,
        rng: &mut StdRng,
        hard: Instant,
    ) -> Sent {
        let key = self.config.idempotency_keys.then_some(order_id);
        let path = self.config.path.clone();
        self.send(&path, body, (request_id, key), rng, hard).await
    }
}

/// The backoff before attempt `attempts + 1`: full jitter under a cap that doubles per
/// attempt from `config.backoff_base` up to `config.backoff_max`.
pub(crate) fn backoff(config: &ClientConfig, attempts: u32, rng: &mut StdRng) -> Duration {
    let cap = config
        .backoff_base
        .saturating_mul(1u32 << attempts.min(16))
        .min(config.backoff_max);
    cap.mul_f64(rng.gen_range(0.0..1.0))
}

/// An empty latency histogram: three significant digits from 1 µs to an hour.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant bounds are valid")
}

/// A final answer ends the retries: every 2xx and 4xx but 409 (still in flight).
pub(crate) fn is_final(status: u16) -> bool {
    (200..500).contains(&status) && status != 409
}

/// One client's whole life: orders until a deadline, then its pending re-sends, each sent
/// through `sender`.
pub async fn run_client<S: Sender>(
    index: usize,
    mut sender: S,
    (config, stats): (Arc<ClientConfig>, Arc<ClientStats>),
    deadlines: Deadlines,
) -> ClientResult {
    let mut rng = StdRng::seed_from_u64(config.seed ^ (index as u64).wrapping_mul(0x9e37_79b9));
    let mut latency_us = histogram();
    let mut orders: Vec<OrderHistory> = Vec::new();
    // (orders sent by then, index into `orders`, other amount or none)
    let mut due: VecDeque<(usize, usize, Option<i64>)> = VecDeque::new();
    loop {
        if Instant::now() >= deadlines.soft {
            break;
        }
        if stats.orders_started.fetch_add(1, Ordering::Relaxed) >= deadlines.orders_max {
            break;
        }
        let k = orders.len();
        let payer = rng.gen_range(0..config.accounts);
        let payee = (payer + rng.gen_range(1..config.accounts.max(2))) % config.accounts.max(2);
        let order = Order {
            order_id: format!("o{index}-{k}"),
            payer: format!("acct-{payer}"),
            payee: format!("acct-{payee}"),
            amount: rng.gen_range(1..=config.amount_max),
        };
        let started = Instant::now();
        let first = sender
            .send_order(
                &order.body(order.amount),
                &order.order_id,
                &order.order_id,
                &mut rng,
                deadlines.hard,
            )
            .await;
        let _ = latency_us.record(started.elapsed().as_micros().max(1) as u64);
        stats.orders_done.fetch_add(1, Ordering::Relaxed);
        if first.answer.as_ref().is_some_and(|a| a.status == 201) {
            let p: f64 = rng.gen_range(0.0..1.0);
            let later = k + rng.gen_range(1..20);
            if p < config.replay_rate {
                due.push_back((later, k, None));
            } else if p < config.replay_rate + config.conflict_rate {
                let other = order.amount + rng.gen_range(1..=10);
                due.push_back((later, k, Some(other)));
            }
        }
        orders.push(OrderHistory {
            order,
            first,
            resends: Vec::new(),
        });
        while due.front().is_some_and(|(at, _, _)| *at <= orders.len()) {
            if let Some(resend) = due.pop_front() {
                resend_one(&mut sender, &mut orders, resend, &mut rng, deadlines.hard).await;
            }
        }
    }
    while let Some(resend) = due.pop_front() {
        resend_one(&mut sender, &mut orders, resend, &mut rng, deadlines.hard).await;
    }
    ClientResult { orders, latency_us }
}

async fn resend_one(
    sender: &mut impl Sender,
    orders: &mut [OrderHistory],
    (_, k, other): (usize, usize, Option<i64>),
    rng: &mut StdRng,
    hard: Instant,
) {
    let Some(history) = orders.get_mut(k) else {
        return;
    };
    let n = history.resends.len();
    let id = format!("{}/r{n}", history.order.order_id);
    let amount = other.unwrap_or(history.order.amount);
    let sent = sender
        .send_order(
            &history.order.body(amount),
            &history.order.order_id,
            &id,
            rng,
            hard,
        )
        .await;
    history.resends.push(match other {
        Some(amount) => Resend::OtherAmount(amount, sent),
        None => Resend::Same(sent),
    });
}
