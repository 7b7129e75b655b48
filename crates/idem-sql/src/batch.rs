//! [`Batcher`]: group commit for the transactional mode. Concurrent items — each a claim and
//! its business writes — run one after another in one database transaction with one
//! commit, instead of one transaction each.
//!
//! A worker takes whatever is queued (up to [`BatchOptions::items_max`]), so an idle system
//! waits for nothing: a lone item runs at once, alone, by its own path; under load the
//! queue fills while the workers' commits are in flight, and the next batch closes when a
//! worker is free again (PostgreSQL's group commit, TigerBeetle's batches).
//!
//! Each item runs behind a savepoint: an item that refuses (a 402, a conflict) rolls back to
//! it, and the others' writes stay. Items run in arrival order in the one transaction, so
//! two items of one key decide as two transactions would (the second sees the first's
//! record), and items of one account take its lock once and apply in order. Every answer is
//! held until the commit returns. If anything in the batch fails — a statement, a deadlock,
//! the commit — the answers computed are dropped unsent and every item runs again alone
//! ([`BatchItem::run_alone`]): an item is answered exactly once, and a commit whose outcome
//! was lost is resolved by the claim, which finds the record and replays.
//!
//! Items that lock rows as they run lock them in arrival order, not in the order other
//! transactions do, so two batches (or a batch and a lone item) could each wait on the
//! other. An item that names its rows ([`BatchItem::rows`]) has them locked with the whole
//! batch's, in one order, before the first item runs ([`BatchItem::lock_rows`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Database, Transaction};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::TransactionalStore;

/// Any failure inside a batch: it is only logged, as the batch's items then run alone and
/// answer for themselves.
pub type BatchFailure = Box<dyn std::error::Error + Send + Sync>;

/// What an item did inside a batch, with its answer (sent once the batch has committed).
#[derive(Debug)]
pub enum Step<A> {
    /// Its writes stay and commit with the batch.
    Keep(A),
    /// Its writes are rolled back (to its savepoint); the others' stay.
    Undo(A),
}

/// One unit of work a [`Batcher`] runs: in a batch's transaction, or alone.
#[async_trait]
pub trait BatchItem<DB: Database>: Send + 'static {
    /// What the item answers its caller.
    type Answer: Send + 'static;

    /// Runs the item's claim and writes in the batch's transaction `tx`, writing nothing
    /// outside it, and says whether its writes stay. It may run more than once (a failed
    /// batch runs it again alone), so it must not consume what a second run needs.
    ///
    /// # Errors
    /// Any failure; the whole batch is then rolled back and its items run alone.
    async fn run_in(
        &mut self,
        tx: &mut Transaction<'static, DB>,
    ) -> Result<Step<Self::Answer>, BatchFailure>;

    /// Runs the item in a transaction of its own, committed before it answers: the path of
    /// a lone item, and of every item of a batch that failed.
    async fn run_alone(self: Box<Self>) -> Self::Answer;

    /// The rows this item will lock, each named so that the batch can merge its items'
    /// rows (sorted, without duplicates) and lock them all with [`BatchItem::lock_rows`]
    /// before its first item runs. Items that lock rows as they go, in arrival order, can
    /// wait on another batch that waits on them; locked up front in one order, they
    /// cannot. None (the default): the item locks its rows as it runs.
    fn rows(&self) -> Vec<String> {
        Vec::new()
    }

    /// Locks `rows`, the merged [`BatchItem::rows`] of the whole batch, in `tx`, in the
    /// order every transaction of the application locks them. Called on the batch's first
    /// item, before any item runs. The default locks nothing.
    ///
    /// # Errors
    /// Any failure; the batch then fails and its items run alone.
    async fn lock_rows(
        &mut self,
        _tx: &mut Transaction<'static, DB>,
        _rows: &[String],
    ) -> Result<(), BatchFailure> {
        Ok(())
    }
}

/// How a [`Batcher`] groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Items in one transaction at most; 1 runs every item alone (no batching).
    pub items_max: usize,
    /// How long a worker that found fewer than `items_max` items queued waits for more
    /// before it starts; zero (the default) waits for nothing.
    pub wait: Duration,
    /// Batches in flight at once, each on its own connection.
    pub workers: usize,
    /// The longest one batch's transaction may take; past it the batch counts as failed
    /// (its items run alone, and a claim resolves whatever its lost commit did).
    pub transaction_max: Duration,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            items_max: 32,
            wait: Duration::ZERO,
            workers: 4,
            transaction_max: Duration::from_secs(8),
        }
    }
}

/// The name of the savepoint each item of a batch runs behind.
const SAVEPOINT: &str = "SAVEPOINT idem_batch_item";
/// Keeps the last item's writes and opens the next item's savepoint, in one round trip (a
/// released savepoint does not pile up as a nested subtransaction on PostgreSQL).
const NEXT_SAVEPOINT: &str = "RELEASE SAVEPOINT idem_batch_item; SAVEPOINT idem_batch_item";
/// Undoes the last item's writes; the savepoint stays, as the next item's.
const UNDO: &str = "ROLLBACK TO SAVEPOINT idem_batch_item";

type Item<DB, A> = Box<dyn BatchItem<DB, Answer = A>>;

/// The queue's receiving end, shared by the workers (one takes a batch at a time).
type SharedQueue<DB, A> = Arc<Mutex<mpsc::UnboundedReceiver<Queued<DB, A>>>>;

/// An item waiting in the queue, and where its answer goes.
struct Queued<DB: Database, A> {
    item: Item<DB, A>,
    reply: oneshot::Sender<A>,
}

/// Why [`Batcher::submit`] has no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The batcher's workers are gone (the runtime is shutting down): nothing ran, or
    /// what ran is resolved by the item's claim when the caller retries.
    #[error("the batcher is closed")]
    Closed,
}

/// A group-commit queue over one store: items submitted concurrently share transactions
/// and commits; see the [module](self) docs for the rules.
///
/// # Example
///
/// ```no_run
/// # #[cfg(feature = "postgres")]
/// # async fn run(store: idem_sql::PostgresStore) -> Result<(), Box<dyn std::error::Error>> {
/// use idem_sql::{BatchFailure, BatchItem, BatchOptions, Batcher, Step};
/// use sqlx::{Postgres, Transaction};
///
/// struct Touch(idem_sql::PostgresStore);
///
/// #[async_trait::async_trait]
/// impl BatchItem<Postgres> for Touch {
///     type Answer = bool;
///     async fn run_in(&mut self, tx: &mut Transaction<'static, Postgres>) -> Result<Step<bool>, BatchFailure> {
///         sqlx::query("UPDATE t SET n = n + 1").execute(&mut **tx).await?;
///         Ok(Step::Keep(true))
///     }
///     async fn run_alone(self: Box<Self>) -> bool {
///         sqlx::query("UPDATE t SET n = n + 1").execute(idem_sql::TransactionalStore::pool(&self.0)).await.is_ok()
///     }
/// }
///
/// let batcher = Batcher::new(store.clone(), BatchOptions::default());
/// let done = batcher.submit(Touch(store)).await?;
/// # Ok(()) }
/// ```
pub struct Batcher<S: TransactionalStore, A> {
    queue: mpsc::UnboundedSender<Queued<S::Database, A>>,
    options: BatchOptions,
}

impl<S: TransactionalStore, A> Clone for Batcher<S, A> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            options: self.options,
        }
    }
}

impl<S: TransactionalStore, A> std::fmt::Debug for Batcher<S, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<S, A> Batcher<S, A>
where
    S: TransactionalStore,
    A: Send + 'static,
{
    /// Starts `options.workers` workers on the current tokio runtime; they end when the
    /// last clone of the batcher is dropped.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn new(store: S, options: BatchOptions) -> Self {
        let options = BatchOptions {
            items_max: options.items_max.max(1),
            workers: options.workers.max(1),
            ..options
        };
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..options.workers {
            let (store, receiver) = (store.clone(), Arc::clone(&receiver));
            tokio::spawn(async move { work(store, receiver, options).await });
        }
        Self { queue, options }
    }
}

impl<S: TransactionalStore, A: Send + 'static> Batcher<S, A> {
    /// How this batcher groups.
    pub fn options(&self) -> BatchOptions {
        self.options
    }

    /// Queues `item` and waits for its answer, which comes after its batch committed (or
    /// from its own run alone).
    ///
    /// # Errors
    /// [`BatchError::Closed`] when the workers are gone.
    pub async fn submit(
        &self,
        item: impl BatchItem<S::Database, Answer = A>,
    ) -> Result<A, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued {
                item: Box::new(item),
                reply,
            })
            .map_err(|_| BatchError::Closed)?;
        answer.await.map_err(|_| BatchError::Closed)
    }
}

/// One worker: takes a batch off the queue (one taker at a time), runs it, and again.
async fn work<S, A>(store: S, receiver: SharedQueue<S::Database, A>, options: BatchOptions)
where
    S: TransactionalStore,
    A: Send + 'static,
{
    loop {
        let batch = {
            let mut queue = receiver.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut batch = vec![first];
            take_queued(&mut queue, &mut batch, options).await;
            batch
        };
        run_batch(&store, batch, options).await;
    }
}

/// Adds to `batch` what is queued, up to `items_max`; with a `wait`, what arrives within it.
async fn take_queued<T>(
    queue: &mut mpsc::UnboundedReceiver<T>,
    batch: &mut Vec<T>,
    options: BatchOptions,
) {
    while batch.len() < options.items_max {
        match queue.try_recv() {
            Ok(queued) => batch.push(queued),
            Err(_) => break,
        }
    }
    if options.wait.is_zero() {
        return;
    }
    let deadline = tokio::time::Instant::now() + options.wait;
    while batch.len() < options.items_max {
        match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(queued)) => batch.push(queued),
            Ok(None) | Err(_) => break,
        }
    }
}

/// Runs `batch`: a lone item alone; more in one transaction, answered after its commit, or,
/// when it fails, each alone.
async fn run_batch<S, A>(store: &S, mut batch: Vec<Queued<S::Database, A>>, options: BatchOptions)
where
    S: TransactionalStore,
    A: Send + 'static,
{
    if batch.len() == 1 {
        if let Some(Queued { item, reply }) = batch.pop() {
            // The caller may have given up (its timeout): nobody to answer.
            let _ = reply.send(item.run_alone().await);
        }
        return;
    }
    let size = batch.len();
    let together =
        tokio::time::timeout(options.transaction_max, run_together(store, &mut batch)).await;
    match together {
        Ok(Ok(answers)) => {
            idem::metrics::batch(idem::Store::name(store), size, true);
            for (Queued { reply, .. }, answer) in batch.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
        }
        failed => {
            let reason = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => format!("no commit within {:?}", options.transaction_max),
            };
            tracing::debug!(size, %reason, "a batch failed; its items run alone");
            idem::metrics::batch(idem::Store::name(store), size, false);
            for Queued { item, reply } in batch {
                tokio::spawn(async move {
                    let _ = reply.send(item.run_alone().await);
                });
            }
        }
    }
}

/// Runs every item of `batch` in one transaction, each behind a savepoint, and commits;
/// the answers in order. On an error nothing is kept (the transaction is dropped).
async fn run_together<S, A>(
    store: &S,
    batch: &mut [Queued<S::Database, A>],
) -> Result<Vec<A>, BatchFailure>
where
    S: TransactionalStore,
    A: Send + 'static,
{
    debug_assert!(batch.len() > 1, "a lone item runs alone");
    let mut tx = store.begin_write().await?;
    let mut rows: Vec<String> = batch.iter().flat_map(|queued| queued.item.rows()).collect();
    rows.sort_unstable();
    rows.dedup();
    if let (Some(first), false) = (batch.first_mut(), rows.is_empty()) {
        first.item.lock_rows(&mut tx, &rows).await?;
    }
    let mut answers = Vec::with_capacity(batch.len());
    store.execute_raw_in(&mut tx, SAVEPOINT).await?;
    let mut kept_last = false;
    for queued in batch.iter_mut() {
        if kept_last {
            store.execute_raw_in(&mut tx, NEXT_SAVEPOINT).await?;
        }
        match queued.item.run_in(&mut tx).await? {
            Step::Keep(answer) => {
                kept_last = true;
                answers.push(answer);
            }
            Step::Undo(answer) => {
                store.execute_raw_in(&mut tx, UNDO).await?;
                kept_last = false;
                answers.push(answer);
            }
        }
    }
    tx.commit().await?;
    Ok(answers)
}
