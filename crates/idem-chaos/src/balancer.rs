//! The fault-injecting load balancer: an HTTP/1 proxy in front of the nodes that spreads
//! requests round-robin and, per the schedule, drops answers, duplicates requests to two
//! nodes and delays deliveries past the client's timeout.
//!
//! Each forwarded request runs in its own task, so a client that gave up never cancels the
//! node's work: the node finishes what it was sent, as over a real network.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::task::JoinHandle;

use crate::faults::{Fault, FaultRates, FaultStats};
use crate::Error;

/// The header a chaos client names its request with (`<order id>#<attempt>`); the balancer
/// draws the request's fault from it and strips it before forwarding.
pub const REQUEST_ID_HEADER: &str = "chaos-request-id";

/// The header the balancer adds to each forwarded request: `<node index>.<incarnation>`, the
/// node slot and how many times it was (re)started, so that an upstream behind the nodes can
/// record which node process sent it (the proxy target matches executions to kills by it).
pub const NODE_HEADER: &str = "chaos-node";

/// How the balancer misbehaves.
#[derive(Debug, Clone, Copy)]
pub struct BalancerConfig {
    /// Seed of the per-request fault draw.
    pub seed: u64,
    /// Per-request fault rates.
    pub rates: FaultRates,
    /// How long a delayed request or answer is held (past the client's timeout).
    pub delay: Duration,
}

/// One node slot: its address while it is up, its requests in flight, and how many times a
/// node was put in it (the incarnation of the process now there, from 1).
#[derive(Debug, Default)]
struct Slot {
    addr: RwLock<Option<SocketAddr>>,
    in_flight: AtomicU64,
    incarnation: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    config: BalancerConfig,
    slots: Vec<Slot>,
    next: AtomicUsize,
    faults_on: AtomicBool,
    stats: Arc<FaultStats>,
    upstream: Client<HttpConnector, Full<Bytes>>,
}

/// A running balancer; stops when dropped.
#[derive(Debug)]
pub struct Balancer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// The answer a node gave to one forwarded request.
#[derive(Debug)]
struct Upstream {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

/// The error that makes hyper close the client's connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("response dropped by the chaos balancer")]
struct Dropped;

impl Balancer {
    /// Binds `127.0.0.1:0` and serves `nodes` slots, all down until [`Balancer::set_node`].
    ///
    /// # Errors
    /// [`Error::Io`] when the port cannot be bound.
    pub async fn start(
        nodes: usize,
        config: BalancerConfig,
        stats: Arc<FaultStats>,
    ) -> Result<Self, Error> {
        let (listener, addr) = crate::bind_loopback("balancer").await?;
        let upstream = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(10))
            .build_http();
        let shared = Arc::new(Shared {
            config,
            slots: (0..nodes).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            faults_on: AtomicBool::new(true),
            stats,
            upstream,
        });
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = accept.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    // A connection that ends in an error is how a dropped answer looks.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The address clients send to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Marks node `index` up at `addr` (a new incarnation), or down with `None`.
    pub fn set_node(&self, index: usize, addr: Option<SocketAddr>) {
        if let Some(slot) = self.shared.slots.get(index) {
            if let Ok(mut a) = slot.addr.write() {
                if addr.is_some() {
                    slot.incarnation.fetch_add(1, Ordering::Relaxed);
                }
                *a = addr;
            }
        }
    }

    /// The incarnation of node `index`: how many times a process was put in its slot.
    pub fn incarnation(&self, index: usize) -> u64 {
        self.shared
            .slots
            .get(index)
            .map_or(0, |s| s.incarnation.load(Ordering::Relaxed))
    }

    /// Requests in flight on node `index` right now.
    pub fn in_flight(&self, index: usize) -> u64 {
        self.shared
            .slots
            .get(index)
            .map_or(0, |s| s.in_flight.load(Ordering::Relaxed))
    }

    /// Turns per-request faults on or off (off while the run drains).
    pub fn set_faults(&self, on: bool) {
        self.shared.faults_on.store(on, Ordering::Relaxed);
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (mut parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Err(Dropped);
    };
    let id = parts.headers.remove(REQUEST_ID_HEADER);
    let fault = match id.as_ref().and_then(|v| v.to_str().ok()) {
        Some(id) if shared.faults_on.load(Ordering::Relaxed) => {
            shared.config.rates.decide(shared.config.seed, id)
        }
        _ => Fault::None,
    };
    let request = Arc::new((parts, body));
    let stats = &shared.stats;
    match fault {
        Fault::None => Ok(answer(send(&shared, pick(&shared), &request).await)),
        Fault::DropResponse => {
            stats.drop_response.injected();
            if send(&shared, pick(&shared), &request).await.is_ok() {
                stats.drop_response.hit(1);
            }
            Err(Dropped)
        }
        Fault::DelayRequest | Fault::DelayResponse => {
            stats.delay.injected();
            let hold = shared.config.delay;
            // Its own task: hyper drops this handler when the client hangs up, but a late
            // packet still arrives.
            let late = shared.clone();
            let result = tokio::spawn(async move {
                if fault == Fault::DelayRequest {
                    tokio::time::sleep(hold).await;
                }
                let result = send(&late, pick(&late), &request).await;
                if result.is_ok() {
                    late.stats.delay.hit(1);
                }
                result
            })
            .await
            .unwrap_or(Err(()));
            if fault == Fault::DelayResponse {
                tokio::time::sleep(hold).await;
            }
            Ok(answer(result))
        }
        Fault::Duplicate => {
            stats.duplicate.injected();
            let first = pick(&shared);
            let second = pick(&shared);
            let (mut a, mut b) = (
                spawn_send(shared.clone(), first, request.clone()),
                spawn_send(shared.clone(), second, request),
            );
            // Both copies run to the end; the client gets whichever answer comes first.
            let (winner, loser) = tokio::select! {
                r = &mut a => (r, b),
                r = &mut b => (r, a),
            };
            let winner = winner.unwrap_or(Err(()));
            let shared2 = shared.clone();
            let both_answered = winner.is_ok();
            tokio::spawn(async move {
                if matches!(loser.await, Ok(Ok(_))) && both_answered {
                    shared2.stats.duplicate.hit(1);
                }
            });
            Ok(answer(winner))
        }
    }
}

type Forwarded = (http::request::Parts, Bytes);

fn spawn_send(
    shared: Arc<Shared>,
    slot: Option<usize>,
    request: Arc<Forwarded>,
) -> JoinHandle<Result<Upstream, ()>> {
    tokio::spawn(async move { send(&shared, slot, &request).await })
}

/// The next node that is up, round-robin.
fn pick(shared: &Shared) -> Option<usize> {
    let n = shared.slots.len();
    let start = shared.next.fetch_add(1, Ordering::Relaxed);
    (0..n).map(|i| (start + i) % n).find(|&i| {
        shared.slots[i]
            .addr
            .read()
            .map(|a| a.is_some())
            .unwrap_or(false)
    })
}

/// Forwards `request` to node `slot` in a task of its own (so it is never cancelled), and
/// waits for the node's whole answer.
async fn send(
    shared: &Arc<Shared>,
    slot: Option<usize>,
    request: &Arc<Forwarded>,
) -> Result<Upstream, ()> {
    let slot = slot.ok_or(())?;
    let addr = shared.slots[slot].addr.read().map_err(|_| ())?.ok_or(())?;
    let shared = shared.clone();
    let request = request.clone();
    let task = tokio::spawn(async move {
        let (parts, body) = &*request;
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::builder()
            .method(parts.method.clone())
            .uri(format!("http://{addr}{path}"));
        for (name, value) in &parts.headers {
            if name != http::header::HOST && name != http::header::CONNECTION {
                builder = builder.header(name, value);
            }
        }
        let incarnation = shared.slots[slot].incarnation.load(Ordering::Relaxed);
        builder = builder.header(NODE_HEADER, format!("{slot}.{incarnation}"));
        let forwarded = builder.body(Full::new(body.clone())).map_err(|_| ())?;
        let in_flight = &shared.slots[slot].in_flight;
        in_flight.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let response = shared.upstream.request(forwarded).await.map_err(|_| ())?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map_err(|_| ())?.to_bytes();
            Ok(Upstream {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        }
        .await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    });
    task.await.unwrap_or(Err(()))
}

/// The node's answer passed back, or 502 when the node could not be reached or died.
fn answer(result: Result<Upstream, ()>) -> Response<Full<Bytes>> {
    match result {
        Ok(up) => {
            let mut response = Response::new(Full::new(up.body));
            *response.status_mut() = up.status;
            for (name, value) in &up.headers {
                if name != http::header::CONNECTION && name != http::header::TRANSFER_ENCODING {
                    response.headers_mut().append(name, value.clone());
                }
            }
            response
        }
        Err(()) => {
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"no node answered (chaos balancer)",
            )));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use tokio::net::TcpListener;

    use super::*;

    /// A real HTTP upstream that counts the requests it answered.
    async fn counting_upstream() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let count = Arc::new(AtomicU64::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                        async move {
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from(n.to_string()),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (addr, count)
    }

    /// A balancer over two counting nodes that injects the fault kind `kind` picks on every
    /// request.
    async fn balancer_always(
        kind: fn(&mut FaultRates) -> &mut f64,
    ) -> (Balancer, Arc<AtomicU64>, Arc<FaultStats>) {
        let mut rates = FaultRates::default();
        *kind(&mut rates) = 1.0;
        let (upstream, count) = counting_upstream().await;
        let stats = Arc::new(FaultStats::default());
        let config = BalancerConfig {
            seed: 1,
            rates,
            delay: Duration::from_millis(300),
        };
        let balancer = Balancer::start(2, config, stats.clone())
            .await
            .expect("balancer starts");
        balancer.set_node(0, Some(upstream));
        balancer.set_node(1, Some(upstream));
        (balancer, count, stats)
    }

    async fn post(balancer: &Balancer, timeout: Duration) -> reqwest::Result<reqwest::Response> {
        reqwest::Client::new()
            .post(format!("http://{}/v1/payments", balancer.addr()))
            .header(REQUEST_ID_HEADER, "o-1#1")
            .timeout(timeout)
            .body("{}")
            .send()
            .await
    }

    /// Waits up to 5 s for `count` to reach `n`, then asserts it is exactly `n`.
    async fn assert_count(count: &AtomicU64, n: u64, what: &str) {
        for _ in 0..250 {
            if count.load(Ordering::SeqCst) >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(count.load(Ordering::SeqCst), n, "{what}");
    }

    #[tokio::test]
    async fn a_dropped_answer_reaches_the_node_but_not_the_client() {
        let (balancer, count, stats) = balancer_always(|r| &mut r.drop_response).await;
        assert!(post(&balancer, Duration::from_secs(5)).await.is_err());
        assert_eq!(count.load(Ordering::SeqCst), 1, "the node did the work");
        assert_eq!(
            stats.snapshot().drop_response,
            crate::faults::KindReport {
                injected: 1,
                hit: 1
            }
        );
    }

    #[tokio::test]
    async fn a_duplicate_reaches_two_nodes_and_the_client_gets_one_answer() {
        let (balancer, count, _) = balancer_always(|r| &mut r.duplicate).await;
        let answer = post(&balancer, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert!(answer.status().is_success());
        assert_count(&count, 2, "both copies were delivered").await;
    }

    #[tokio::test]
    async fn a_late_delivery_still_arrives_after_the_client_gave_up() {
        use tokio::io::AsyncWriteExt;
        let (balancer, count, _) = balancer_always(|r| &mut r.delay).await;
        // A client that sends its request and hangs up before any answer.
        let mut stream = tokio::net::TcpStream::connect(balancer.addr())
            .await
            .expect("connect");
        let request = format!(
            "POST /v1/payments HTTP/1.1\r\nhost: x\r\n{REQUEST_ID_HEADER}: o-1#1\r\ncontent-length: 2\r\n\r\n{{}}"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
        assert_count(&count, 1, "the held request was delivered").await;
        // Faults off: the request goes straight through.
        balancer.set_faults(false);
        let answer = post(&balancer, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(answer.text().await.expect("body"), "2");
    }
}
