//! `idem chaos`'s publishers: each order published with its id, published again on a
//! timeout (same message id and body), sometimes twice on purpose; every publication and
//! reply logged for the checker.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::broker::link::{Broker, Link, OnReply};
use crate::client::{self, Answer, ClientConfig, ClientStats, Sender, Sent};
use crate::faults::{Fault, FaultRates, FaultStats};
use crate::Error;

/// What every publisher of a run shares.
#[derive(Clone)]
pub(crate) struct Shared {
    /// The clients' configuration (timeout, backoff).
    pub(crate) config: Arc<ClientConfig>,
    /// The clients' counters (retries, outcomes).
    pub(crate) stats: Arc<ClientStats>,
    /// The run's fault counters (duplicates).
    pub(crate) faults: Arc<FaultStats>,
    /// The rate of deliberate duplicates.
    pub(crate) duplicates: FaultRates,
    /// The run's seed.
    pub(crate) seed: u64,
    /// Every publication and reply.
    pub(crate) log: Arc<ReplyLog>,
}

/// How long after a message its deliberate duplicate is published: past JetStream's
/// deduplication window, which would otherwise drop it.
const TWIN_AFTER: Duration = Duration::from_millis(150);

/// A client that publishes each order to the broker and waits for its reply: on a
/// timeout it publishes the same message (message id and body) again.
pub(crate) struct Publisher {
    link: Link,
    replies: mpsc::UnboundedReceiver<(String, Answer)>,
    shared: Shared,
}

impl Publisher {
    /// Publisher `index` on `broker`, sending as `shared` says and logging into its log;
    /// its reply reader runs until the returned handle is aborted.
    pub(crate) async fn start(
        broker: &Broker,
        index: usize,
        shared: Shared,
    ) -> Result<(Self, AbortHandle), Error> {
        let log = shared.clone();
        let on_reply: OnReply =
            Arc::new(move |tag: &str, answer: &Answer| log.replied(tag, answer));
        let endpoint = broker.endpoint(index, on_reply).await?;
        let publisher = Publisher {
            link: endpoint.link,
            replies: endpoint.replies,
            shared,
        };
        Ok((publisher, endpoint.reader))
    }

    /// Publishes a message for `request_id` (attempt tag `tag`); true when the broker
    /// stored it. Every try is logged, stored or not: one the broker stored without saying
    /// so must not pass for a redelivery.
    async fn publish(&self, tag: &str, order_id: &str, request_id: &str, body: &Bytes) -> bool {
        self.shared.log.published(request_id);
        let timeout = self.shared.config.timeout;
        self.link
            .publish(timeout, tag, order_id, body)
            .await
            .is_ok()
    }

    /// Publishes the same message again [`TWIN_AFTER`] from now, in the background, as a
    /// deliberate duplicate.
    fn publish_twin(&self, tag: &str, order_id: &str, request_id: &str, body: &Bytes) {
        self.shared.faults.duplicate.injected();
        let (link, shared) = (self.link.clone(), self.shared.clone());
        let twin = format!("{tag}{DUPLICATE_MARK}");
        let (order_id, request_id, body) =
            (order_id.to_owned(), request_id.to_owned(), body.clone());
        tokio::spawn(async move {
            tokio::time::sleep(TWIN_AFTER).await;
            shared.log.published(&request_id);
            let _ = link
                .publish(shared.config.timeout, &twin, &order_id, &body)
                .await;
        });
    }

    /// The first reply to `request_id` before `until`; replies to earlier orders, come
    /// late, are passed over (the log has them).
    async fn reply_to(&mut self, request_id: &str, until: Instant) -> Option<Answer> {
        loop {
            let (tag, answer) = tokio::time::timeout_at(until, self.replies.recv())
                .await
                .ok()??;
            if parse_tag(&tag).is_some_and(|(id, _)| id == request_id) {
                return Some(answer);
            }
        }
    }
}

impl Sender for Publisher {
    async fn send_order(
        &mut self,
        body: &Bytes,
        order_id: &str,
        request_id: &str,
        rng: &mut StdRng,
        hard: Instant,
    ) -> Sent {
        let shared = self.shared.clone();
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
                shared
                    .stats
                    .retries
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let tag = format!("{request_id}#{attempts}");
            if !self.publish(&tag, order_id, request_id, body).await {
                shared.stats.count("connection".into());
                tokio::time::sleep(client::backoff(&shared.config, attempts, rng)).await;
                continue;
            }
            if shared.duplicates.decide(shared.seed, &tag) == Fault::Duplicate {
                self.publish_twin(&tag, order_id, request_id, body);
            }
            let until = (Instant::now() + shared.config.timeout).min(hard);
            match self.reply_to(request_id, until).await {
                Some(answer) if client::is_final(answer.status) => {
                    shared.stats.count(answer.status.to_string());
                    return Sent {
                        attempts,
                        answer: Some(answer),
                    };
                }
                Some(answer) => shared.stats.count(answer.status.to_string()),
                None => shared.stats.count("timeout".into()),
            }
            tokio::time::sleep(client::backoff(&shared.config, attempts, rng)).await;
        }
    }
}

/// The mark after a reply tag of a deliberate duplicate's publication.
const DUPLICATE_MARK: char = 'd';

/// A reply tag's request id and whether it answers a deliberate duplicate: tags are
/// `<request id>#<attempt>`, with [`DUPLICATE_MARK`] after a duplicate's.
fn parse_tag(tag: &str) -> Option<(&str, bool)> {
    let (id, attempt) = tag.rsplit_once('#')?;
    Some((id, attempt.ends_with(DUPLICATE_MARK)))
}

impl Shared {
    /// Logs a reply, and counts a deliberate duplicate's first reply as that fault's hit.
    fn replied(&self, tag: &str, answer: &Answer) {
        if let Some((request_id, duplicate)) = parse_tag(tag) {
            if duplicate && self.log.first_reply_to_twin(tag) {
                self.faults.duplicate.hit(1);
            }
            self.log.replied(request_id, answer.clone());
        }
    }
}

/// One reply, with the sending it answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The sending: the order id, or `<order id>/r<n>` for a deliberate re-send.
    pub request_id: String,
    /// What came.
    pub answer: Answer,
}

/// An order's publications and replies.
#[derive(Debug, Clone, Default)]
pub struct OrderLog {
    /// Publications tried (re-publications and duplicates included) by sending.
    pub publications: BTreeMap<String, u32>,
    /// Every reply, in arrival order, late ones included.
    pub replies: Vec<Reply>,
}

/// Every publication and reply of a run, by order id.
#[derive(Debug, Default)]
pub struct ReplyLog {
    orders: Mutex<HashMap<String, OrderLog>>,
    /// The duplicates' tags answered so far (a redelivered duplicate is answered again).
    twins_answered: Mutex<HashSet<String>>,
}

/// The order id of a sending's request id (`<order id>` or `<order id>/r<n>`).
pub(crate) fn order_of(request_id: &str) -> &str {
    request_id.split('/').next().unwrap_or(request_id)
}

impl ReplyLog {
    fn with(&self, request_id: &str, f: impl FnOnce(&mut OrderLog)) {
        if let Ok(mut orders) = self.orders.lock() {
            f(orders.entry(order_of(request_id).to_owned()).or_default());
        }
    }

    /// Counts one publication of `request_id`.
    pub fn published(&self, request_id: &str) {
        self.with(request_id, |o| {
            *o.publications.entry(request_id.to_owned()).or_default() += 1;
        });
    }

    /// Logs a reply to `request_id`.
    pub fn replied(&self, request_id: &str, answer: Answer) {
        self.with(request_id, |o| {
            o.replies.push(Reply {
                request_id: request_id.to_owned(),
                answer,
            });
        });
    }

    /// Whether this is the first reply to the duplicate tagged `tag`.
    fn first_reply_to_twin(&self, tag: &str) -> bool {
        self.twins_answered
            .lock()
            .is_ok_and(|mut seen| seen.insert(tag.to_owned()))
    }

    /// The log as it stands.
    pub fn snapshot(&self) -> HashMap<String, OrderLog> {
        self.orders.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_name_their_sending_and_duplicates() {
        assert_eq!(parse_tag("o3-12#2"), Some(("o3-12", false)));
        assert_eq!(parse_tag("o3-12/r0#1d"), Some(("o3-12/r0", true)));
        assert_eq!(parse_tag("nonsense"), None);
        assert_eq!(order_of("o3-12/r0"), "o3-12");
        assert_eq!(order_of("o3-12"), "o3-12");
    }
}
