//! The payment API workload (DESIGN §5): open accounts, then fresh payments, replays of
//! completed ones and conflicting reuses of their `order_id`, each answer checked against
//! the contract. Any other answer is an error of that kind.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::args::{Kind, Mix};
use crate::client::{Answer, Conn, Target};
use crate::error::{BenchError, Result};
use crate::load::{LoadClient, Step};
use crate::skew::Skew;

/// Opening balance of every bench account: payments of at most 100 never exhaust it.
const OPENING_BALANCE: i64 = 1_000_000_000_000;
/// Completed payments each client remembers for replays and conflicts.
const REMEMBERED_MAX: usize = 64;

/// What every client of one run shares: the run's id (a prefix no other run uses), the
/// accounts, the mix and who pays whom.
#[derive(Debug)]
pub struct Workload {
    run_id: String,
    accounts: Vec<String>,
    mix: Mix,
    skew: Skew,
}

impl Workload {
    /// Opens `accounts` accounts named after `run_id` on the server, `parallel` at a time;
    /// fresh payments will pick their accounts by `skew`.
    ///
    /// # Errors
    /// An account could not be opened (the server is down, or refused it).
    pub async fn open(
        target: &Target,
        run_id: &str,
        accounts: usize,
        parallel: usize,
        mix: Mix,
        skew: Skew,
    ) -> Result<Arc<Self>> {
        let ids: Vec<String> = (0..accounts.max(2))
            .map(|i| format!("{run_id}-a{i}"))
            .collect();
        let parallel = parallel.clamp(1, 16);
        let mut tasks = Vec::with_capacity(parallel);
        for lane in 0..parallel {
            let mine: Vec<String> = ids.iter().skip(lane).step_by(parallel).cloned().collect();
            let mut conn = Conn::new(target.clone());
            tasks.push(tokio::spawn(async move {
                for id in mine {
                    let body = format!(r#"{{"account_id":"{id}","balance":{OPENING_BALANCE}}}"#);
                    let answer = conn
                        .send(Method::POST, "/v1/accounts", None, Some(Bytes::from(body)))
                        .await
                        .map_err(|e| BenchError::Setup(format!("POST /v1/accounts {id}: {e}")))?;
                    if answer.status != StatusCode::CREATED {
                        return Err(BenchError::Setup(format!(
                            "POST /v1/accounts {id}: {}",
                            describe(&answer)
                        )));
                    }
                }
                Ok(())
            }));
        }
        for task in tasks {
            task.await
                .map_err(|e| BenchError::Setup(format!("setup task: {e}")))??;
        }
        Ok(Arc::new(Workload {
            run_id: run_id.to_owned(),
            accounts: ids,
            mix,
            skew,
        }))
    }

    /// A fresh payment's payer, payee and amount, drawn by the run's skew.
    pub(crate) fn draw(&self, rng: &mut StdRng) -> (usize, usize, i64) {
        let (payer, payee) = self.skew.pick(rng, self.accounts.len());
        (payer, payee, rng.gen_range(1..=100))
    }

    /// The body of `POST /v1/payments` for an order between two of the run's accounts.
    pub(crate) fn body(&self, order_id: &str, payer: usize, payee: usize, amount: i64) -> Bytes {
        Bytes::from(format!(
            r#"{{"order_id":"{order_id}","payer":"{}","payee":"{}","amount":{amount}}}"#,
            self.accounts[payer], self.accounts[payee]
        ))
    }

    /// The run's id, the prefix of its accounts and orders.
    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The client with index `index`, on its own connection.
    pub fn client(self: &Arc<Self>, target: &Target, index: usize) -> PaymentClient {
        PaymentClient {
            conn: Conn::new(target.clone()),
            workload: self.clone(),
            index,
            seq: 0,
            rng: StdRng::seed_from_u64(index as u64 ^ 0x1de4),
            paid: VecDeque::with_capacity(REMEMBERED_MAX),
        }
    }
}

/// A completed payment: what was sent and the first answer's body.
#[derive(Debug)]
struct Paid {
    order_id: String,
    payer: usize,
    payee: usize,
    amount: i64,
    request: Bytes,
    response: Bytes,
}

/// One client of the payment workload.
#[derive(Debug)]
pub struct PaymentClient {
    conn: Conn,
    workload: Arc<Workload>,
    index: usize,
    seq: u64,
    rng: StdRng,
    paid: VecDeque<Paid>,
}

impl PaymentClient {
    fn body(&self, order_id: &str, payer: usize, payee: usize, amount: i64) -> Bytes {
        self.workload.body(order_id, payer, payee, amount)
    }

    async fn post(&mut self, body: Bytes) -> std::result::Result<Answer, String> {
        self.conn
            .send(Method::POST, "/v1/payments", None, Some(body))
            .await
    }

    async fn fresh(&mut self) -> Option<String> {
        self.seq += 1;
        let order_id = format!("{}-{}-{}", self.workload.run_id, self.index, self.seq);
        let (payer, payee, amount) = self.workload.draw(&mut self.rng);
        let request = self.body(&order_id, payer, payee, amount);
        let answer = match self.post(request.clone()).await {
            Ok(answer) => answer,
            Err(e) => return Some(e),
        };
        if answer.status != StatusCode::CREATED || answer.replayed {
            return Some(describe(&answer));
        }
        if self.paid.len() == REMEMBERED_MAX {
            self.paid.pop_front();
        }
        self.paid.push_back(Paid {
            order_id,
            payer,
            payee,
            amount,
            request,
            response: answer.body,
        });
        None
    }

    async fn replay(&mut self, which: usize) -> Option<String> {
        let request = self.paid[which].request.clone();
        let answer = match self.post(request).await {
            Ok(answer) => answer,
            Err(e) => return Some(e),
        };
        if answer.status != StatusCode::CREATED || !answer.replayed {
            return Some(describe(&answer));
        }
        (answer.body != self.paid[which].response)
            .then(|| "replayed body differs from the first".to_owned())
    }

    async fn conflict(&mut self, which: usize) -> Option<String> {
        let p = &self.paid[which];
        let request = self.body(&p.order_id, p.payer, p.payee, p.amount + 1);
        let answer = match self.post(request).await {
            Ok(answer) => answer,
            Err(e) => return Some(e),
        };
        let coded =
            std::str::from_utf8(&answer.body).is_ok_and(|b| b.contains("order_id_conflict"));
        (answer.status != StatusCode::UNPROCESSABLE_ENTITY || !coded).then(|| describe(&answer))
    }
}

impl LoadClient for PaymentClient {
    async fn step(&mut self) -> Step {
        let mix = self.workload.mix;
        let mut kind = mix.pick(self.rng.gen_range(0..mix.total()));
        // Nothing paid yet by this client: nothing to replay or reuse, so pay first.
        if self.paid.is_empty() {
            kind = Kind::Fresh;
        }
        let which = self.rng.gen_range(0..self.paid.len().max(1));
        let error = match kind {
            Kind::Fresh => self.fresh().await,
            Kind::Replay => self.replay(which).await,
            Kind::Conflict => self.conflict(which).await,
        };
        Step {
            kind: kind.name(),
            error,
        }
    }
}

/// An unexpected answer in a few words: the status, the problem `code` if any, and whether
/// it was marked as a replay.
pub(crate) fn describe(answer: &Answer) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned));
    let mut text = answer.status.to_string();
    if let Some(code) = code {
        text.push(' ');
        text.push_str(&code);
    }
    if answer.replayed {
        text.push_str(" (replayed)");
    }
    text
}
