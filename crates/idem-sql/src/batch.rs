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
//! A batch first offers all its items to [`BatchItem::run_set`], which may decide many at
//! once — one multi-row claim ([`TransactionalStore::claim_fresh_in`]), its rows locked in
//! one order, the decisions made in memory, multi-row writes — and hands back what it did
//! not decide: to run behind a savepoint as above, or alone after the commit (an item whose
//! key has a record already: what it answers is settled by then).

use std::sync::atomic::{AtomicU64, Ordering};
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

/// What [`BatchItem::run_set`] did with one item of its batch.
#[derive(Debug)]
pub enum SetStep<A> {
    /// Decided: its writes (none, if it refused) are in the batch's transaction, and this
    /// answer goes once the batch has committed.
    Done(A),
    /// Not decided here: run it by [`BatchItem::run_in`], behind its own savepoint, after
    /// the set.
    Each,
    /// Not decided here: run it alone ([`BatchItem::run_alone`]) once the batch has
    /// committed, when what it waits on (a key another item or transaction holds) is
    /// settled.
    Alone,
}

/// One unit of work a [`Batcher`] runs: with others in a batch's transaction, or alone.
#[async_trait]
pub trait BatchItem<DB: Database>: Send + Sized + 'static {
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
    async fn run_alone(self) -> Self::Answer;

    /// Decides what it can of `items` (the whole batch, in arrival order) as one set in
    /// `tx`, before any item runs by itself: one step per item, in order. Whatever it locks
    /// it should lock in the order every transaction of the application does, so that two
    /// batches cannot wait on each other. The default decides nothing: every item runs
    /// [`BatchItem::run_in`] behind its savepoint.
    ///
    /// # Errors
    /// Any failure; the batch then fails and its items run alone.
    async fn run_set(
        items: &mut [Self],
        _tx: &mut Transaction<'static, DB>,
    ) -> Result<Vec<SetStep<Self::Answer>>, BatchFailure> {
        Ok(items.iter().map(|_| SetStep::Each).collect())
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

/// An item waiting in the queue, and where its answer goes.
struct Queued<I, A> {
    item: I,
    reply: oneshot::Sender<A>,
}

/// The queue's receiving end, shared by the workers (one takes a batch at a time).
type SharedQueue<I, A> = Arc<Mutex<mpsc::UnboundedReceiver<Queued<I, A>>>>;

/// Why [`Batcher::submit`] has no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The batcher's workers are gone (the runtime is shutting down): nothing ran, or
    /// what ran is resolved by the item's claim when the caller retries.
    #[error("the batcher is closed")]
    Closed,
}

/// What a [`Batcher`] has done since it started ([`Batcher::stats`]): how its batches
/// ended and how their items were decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Batches of two or more items that committed.
    pub committed: u64,
    /// Batches that failed (rolled back; their items then ran alone).
    pub failed: u64,
    /// Items of committed batches decided by [`BatchItem::run_set`].
    pub in_sets: u64,
    /// Items of committed batches run one by one behind a savepoint.
    pub each: u64,
    /// Items run alone: lone items, items a committed batch left to run alone, and every
    /// item of a failed batch.
    pub alone: u64,
}

/// The counters behind [`BatchStats`], shared by a batcher's workers.
#[derive(Debug, Default)]
struct Counters {
    committed: AtomicU64,
    failed: AtomicU64,
    in_sets: AtomicU64,
    each: AtomicU64,
    alone: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn read(&self) -> BatchStats {
        BatchStats {
            committed: self.committed.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            in_sets: self.in_sets.load(Ordering::Relaxed),
            each: self.each.load(Ordering::Relaxed),
            alone: self.alone.load(Ordering::Relaxed),
        }
    }
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
///     async fn run_alone(self) -> bool {
///         sqlx::query("UPDATE t SET n = n + 1").execute(idem_sql::TransactionalStore::pool(&self.0)).await.is_ok()
///     }
/// }
///
/// let batcher = Batcher::new(store.clone(), BatchOptions::default());
/// let done = batcher.submit(Touch(store)).await?;
/// # Ok(()) }
/// ```
pub struct Batcher<S: TransactionalStore, I: BatchItem<S::Database>> {
    queue: mpsc::UnboundedSender<Queued<I, I::Answer>>,
    options: BatchOptions,
    counters: Arc<Counters>,
}

impl<S: TransactionalStore, I: BatchItem<S::Database>> Clone for Batcher<S, I> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            options: self.options,
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<S: TransactionalStore, I: BatchItem<S::Database>> std::fmt::Debug for Batcher<S, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<S, I> Batcher<S, I>
where
    S: TransactionalStore,
    I: BatchItem<S::Database>,
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
        let counters = Arc::new(Counters::default());
        for _ in 0..options.workers {
            let (store, receiver) = (store.clone(), Arc::clone(&receiver));
            let counters = Arc::clone(&counters);
            tokio::spawn(async move { work(store, receiver, options, &counters).await });
        }
        Self {
            queue,
            options,
            counters,
        }
    }

    /// What this batcher (and its clones) has done so far.
    pub fn stats(&self) -> BatchStats {
        self.counters.read()
    }

    /// How this batcher groups.
    pub fn options(&self) -> BatchOptions {
        self.options
    }

    /// Queues `item` and waits for its answer, which comes after its batch committed (or
    /// from its own run alone).
    ///
    /// # Errors
    /// [`BatchError::Closed`] when the workers are gone.
    pub async fn submit(&self, item: I) -> Result<I::Answer, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { item, reply })
            .map_err(|_| BatchError::Closed)?;
        answer.await.map_err(|_| BatchError::Closed)
    }
}

/// One worker: takes a batch off the queue (one taker at a time), runs it, and again.
async fn work<S, I>(
    store: S,
    receiver: SharedQueue<I, I::Answer>,
    options: BatchOptions,
    counters: &Counters,
) where
    S: TransactionalStore,
    I: BatchItem<S::Database>,
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
        run_batch(&store, batch, options, counters).await;
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

/// Runs `item` alone in a task of its own and sends its answer (the caller may have given
/// up — its timeout — and then nobody is told).
fn spawn_alone<DB: Database, I: BatchItem<DB>>(item: I, reply: oneshot::Sender<I::Answer>) {
    tokio::spawn(async move {
        let _ = reply.send(item.run_alone().await);
    });
}

/// Runs `batch`: a lone item alone; more in one transaction, answered after its commit, or,
/// when it fails, each alone.
async fn run_batch<S, I>(
    store: &S,
    mut batch: Vec<Queued<I, I::Answer>>,
    options: BatchOptions,
    counters: &Counters,
) where
    S: TransactionalStore,
    I: BatchItem<S::Database>,
{
    if batch.len() == 1 {
        Counters::add(&counters.alone, 1);
        if let Some(Queued { item, reply }) = batch.pop() {
            let _ = reply.send(item.run_alone().await);
        }
        return;
    }
    let size = batch.len();
    let (mut items, replies): (Vec<I>, Vec<_>) = batch
        .into_iter()
        .map(|Queued { item, reply }| (item, reply))
        .unzip();
    let together =
        tokio::time::timeout(options.transaction_max, run_together(store, &mut items)).await;
    match together {
        Ok(Ok(answers)) => {
            idem::metrics::batch(idem::Store::name(store), size, true);
            Counters::add(&counters.committed, 1);
            for ran in &answers {
                let counter = match ran {
                    Ran::InSet(_) => &counters.in_sets,
                    Ran::Each(_) => &counters.each,
                    Ran::Alone => &counters.alone,
                };
                Counters::add(counter, 1);
            }
            for ((item, reply), answer) in items.into_iter().zip(replies).zip(answers) {
                match answer {
                    Ran::InSet(answer) | Ran::Each(answer) => {
                        let _ = reply.send(answer);
                    }
                    Ran::Alone => spawn_alone(item, reply),
                }
            }
        }
        failed => {
            let reason = match failed {
                Ok(Err(error)) => error.to_string(),
                _ => format!("no commit within {:?}", options.transaction_max),
            };
            tracing::debug!(size, %reason, "a batch failed; its items run alone");
            idem::metrics::batch(idem::Store::name(store), size, false);
            Counters::add(&counters.failed, 1);
            Counters::add(&counters.alone, size);
            for (item, reply) in items.into_iter().zip(replies) {
                spawn_alone(item, reply);
            }
        }
    }
}

/// Runs `items` in one transaction — first as a set ([`BatchItem::run_set`]), then each
/// the set left to it behind a savepoint — and commits. Per item, in order: how it ran. On
/// an error nothing is kept (the transaction is dropped).
async fn run_together<S, I>(store: &S, items: &mut [I]) -> Result<Vec<Ran<I::Answer>>, BatchFailure>
where
    S: TransactionalStore,
    I: BatchItem<S::Database>,
{
    debug_assert!(items.len() > 1, "a lone item runs alone");
    let mut tx = store.begin_write().await?;
    let steps = I::run_set(items, &mut tx).await?;
    if steps.len() != items.len() {
        return Err(format!(
            "run_set gave {} steps for {} items",
            steps.len(),
            items.len()
        )
        .into());
    }
    let mut answers = Vec::with_capacity(items.len());
    // The savepoint is opened before the first item that runs by itself.
    let mut savepoint = Savepoint::None;
    for (item, step) in items.iter_mut().zip(steps) {
        match step {
            SetStep::Done(answer) => answers.push(Ran::InSet(answer)),
            SetStep::Alone => answers.push(Ran::Alone),
            SetStep::Each => {
                let open = match savepoint {
                    Savepoint::None => Some(SAVEPOINT),
                    Savepoint::Kept => Some(NEXT_SAVEPOINT),
                    Savepoint::Open => None,
                };
                if let Some(sql) = open {
                    store.execute_raw_in(&mut tx, sql).await?;
                }
                match item.run_in(&mut tx).await? {
                    Step::Keep(answer) => {
                        savepoint = Savepoint::Kept;
                        answers.push(Ran::Each(answer));
                    }
                    Step::Undo(answer) => {
                        store.execute_raw_in(&mut tx, UNDO).await?;
                        savepoint = Savepoint::Open;
                        answers.push(Ran::Each(answer));
                    }
                }
            }
        }
    }
    tx.commit().await?;
    Ok(answers)
}

/// How one item of a committed batch ran.
#[derive(Debug)]
enum Ran<A> {
    /// Decided by [`BatchItem::run_set`]: its answer.
    InSet(A),
    /// Run by itself behind a savepoint: its answer.
    Each(A),
    /// Left to run alone after the commit.
    Alone,
}

/// Where the items' savepoint stands between two items that run by themselves.
#[derive(Debug, Clone, Copy)]
enum Savepoint {
    /// None is open yet.
    None,
    /// Open, holding the last item's kept writes: release it and open the next.
    Kept,
    /// Open and clean (the last item's writes were undone): the next item uses it.
    Open,
}
