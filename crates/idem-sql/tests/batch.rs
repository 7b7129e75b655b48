//! [`Batcher`] on every backend, with items that claim a key with `begin_answered_in`:
//!
//! - N racers on one key through the batcher: one `Acquired`, N − 1 replays (in a batch the
//!   later items see the first one's record; across batches they wait on it);
//! - a batch with a refused item (its writes undone to its savepoint) and a mismatch keeps
//!   the others' claims, and the refused item's key stays free;
//! - a batch that fails (one item errs after writing) keeps nothing of itself, runs every
//!   item again alone, and answers each exactly once;
//! - items decided as a set (`run_set` with one `claim_fresh_in`): fresh keys are claimed
//!   in the set, a key named twice or with a record already runs alone after the commit
//!   and replays, and a key the set refuses (`forget_fresh_in`) stays free;
//! - concurrent sets racing for one fresh key: exactly one claims it, none fails.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use idem::{Claim, Fingerprint, Key, Outcome, Scope, StoredResponse, TTL_FOREVER};
use idem_sql::{
    AnsweredClaim, BatchFailure, BatchItem, BatchOptions, Batcher, SetStep, Step,
    TransactionalStore,
};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use idem_test_support::backend_url;
use sqlx::Transaction;

fn scope() -> Scope {
    Scope::new("tenant|POST /v1/orders").expect("valid scope")
}

fn fp(body: &[u8]) -> Fingerprint {
    Fingerprint::of_bytes("POST", "/v1/orders", body)
}

fn answer() -> StoredResponse {
    StoredResponse::new(201, "{\"order\":\"placed\"}")
}

/// What a test item answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Won,
    Replayed,
    Mismatch,
    Refused,
    Failed(String),
}

/// How often items ran in a batch and alone.
#[derive(Debug, Default)]
struct Runs {
    in_batch: AtomicUsize,
    alone: AtomicUsize,
}

/// Claims `key`; a `refuse` item then undoes its claim, a `fail_in_batch` one errs after
/// claiming when run in a batch (as a deadlock victim would). `in_set` items are decided by
/// `run_set`, with one `claim_fresh_in` for all of them.
struct ClaimItem<S> {
    store: S,
    key: Key,
    fingerprint: Fingerprint,
    refuse: bool,
    fail_in_batch: bool,
    in_set: bool,
    runs: Arc<Runs>,
}

impl<S: TransactionalStore> ClaimItem<S> {
    async fn claim(&self, tx: &mut Transaction<'_, S::Database>) -> Result<Answer, BatchFailure> {
        let s = scope();
        let claim = Claim::new(
            &s,
            &self.key,
            &self.fingerprint,
            Duration::ZERO,
            TTL_FOREVER,
        );
        Ok(
            match self.store.begin_answered_in(tx, claim, &answer()).await? {
                Outcome::Acquired { .. } if self.refuse => Answer::Refused,
                Outcome::Acquired { .. } => Answer::Won,
                Outcome::Replay(_) => Answer::Replayed,
                Outcome::Mismatch => Answer::Mismatch,
                other => Answer::Failed(format!("{other:?}")),
            },
        )
    }
}

#[async_trait::async_trait]
impl<S: TransactionalStore> BatchItem<S::Database> for ClaimItem<S> {
    type Answer = Answer;

    async fn run_in(
        &mut self,
        tx: &mut Transaction<'static, S::Database>,
    ) -> Result<Step<Answer>, BatchFailure> {
        self.runs.in_batch.fetch_add(1, Ordering::SeqCst);
        let answer = self.claim(tx).await?;
        if self.fail_in_batch {
            return Err("this item fails in a batch".into());
        }
        Ok(match answer {
            Answer::Won | Answer::Replayed | Answer::Mismatch => Step::Keep(answer),
            Answer::Refused | Answer::Failed(_) => Step::Undo(answer),
        })
    }

    async fn run_set(
        items: &mut [Self],
        tx: &mut Transaction<'static, S::Database>,
    ) -> Result<Vec<SetStep<Answer>>, BatchFailure> {
        let mut steps: Vec<SetStep<Answer>> = items.iter().map(|_| SetStep::Each).collect();
        let set: Vec<usize> = (0..items.len()).filter(|&i| items[i].in_set).collect();
        let Some(&first) = set.first() else {
            return Ok(steps);
        };
        let (s, answer) = (scope(), answer());
        let claims: Vec<AnsweredClaim<'_>> = set
            .iter()
            .map(|&i| AnsweredClaim {
                claim: Claim::new(
                    &s,
                    &items[i].key,
                    &items[i].fingerprint,
                    Duration::ZERO,
                    TTL_FOREVER,
                ),
                answer: &answer,
            })
            .collect();
        let store = &items[first].store;
        let claimed = store.claim_fresh_in(tx, &claims).await?;
        let mut forget = Vec::new();
        for (n, &i) in set.iter().enumerate() {
            items[i].runs.in_batch.fetch_add(1, Ordering::SeqCst);
            steps[i] = match (claimed[n], items[i].refuse) {
                (false, _) => SetStep::Alone,
                (true, true) => {
                    forget.push((&s, &items[i].key));
                    SetStep::Done(Answer::Refused)
                }
                (true, false) => SetStep::Done(Answer::Won),
            };
        }
        store.forget_fresh_in(tx, &forget).await?;
        Ok(steps)
    }

    async fn run_alone(self) -> Answer {
        self.runs.alone.fetch_add(1, Ordering::SeqCst);
        let run = async {
            let mut tx = self.store.begin_write().await?;
            let answer = self.claim(&mut tx).await?;
            if answer == Answer::Won {
                tx.commit().await?;
            }
            Ok::<_, BatchFailure>(answer)
        };
        run.await.unwrap_or_else(|e| Answer::Failed(e.to_string()))
    }
}

/// A batcher whose one worker waits long enough for every item submitted at once to join
/// the same batch.
fn one_batch<S: TransactionalStore>(store: &S, items_max: usize) -> Batcher<S, ClaimItem<S>> {
    let options = BatchOptions {
        items_max,
        wait: Duration::from_millis(300),
        workers: 1,
        ..BatchOptions::default()
    };
    Batcher::new(store.clone(), options)
}

/// Submits `items` at once (spawned in order, each a moment after the last so the queue
/// keeps their order) and collects their answers in order.
async fn submit_all<S: TransactionalStore>(
    batcher: &Batcher<S, ClaimItem<S>>,
    items: Vec<ClaimItem<S>>,
) -> Vec<Answer> {
    let mut tasks = Vec::new();
    for item in items {
        let batcher = batcher.clone();
        tasks.push(tokio::spawn(async move { batcher.submit(item).await }));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(
            task.await
                .expect("the task ran")
                .expect("the batcher answered"),
        );
    }
    answers
}

/// The answer a fresh claim of `key` gets now, in a transaction rolled back after.
async fn claimed_now<S: TransactionalStore>(store: &S, key: &str) -> Answer {
    let item = ClaimItem {
        store: store.clone(),
        key: Key::new(key).expect("valid key"),
        fingerprint: fp(b"a"),
        refuse: false,
        fail_in_batch: false,
        in_set: false,
        runs: Arc::default(),
    };
    let mut tx = store.begin_write().await.expect("begin_write");
    item.claim(&mut tx).await.expect("claim")
}

fn item<S: Clone>(store: &S, key: &str, body: &[u8], runs: &Arc<Runs>) -> ClaimItem<S> {
    ClaimItem {
        store: store.clone(),
        key: Key::new(key).expect("valid key"),
        fingerprint: fp(body),
        refuse: false,
        fail_in_batch: false,
        in_set: false,
        runs: Arc::clone(runs),
    }
}

async fn racers_on_one_key_have_one_winner<S: TransactionalStore>(store: S) {
    const RACERS: usize = 24;
    let options = BatchOptions {
        items_max: 8,
        wait: Duration::from_millis(1),
        workers: 3,
        ..BatchOptions::default()
    };
    let batcher = Batcher::new(store.clone(), options);
    let runs = Arc::new(Runs::default());
    let mut tasks = Vec::new();
    for _ in 0..RACERS {
        let (batcher, item) = (batcher.clone(), item(&store, "race", b"a", &runs));
        tasks.push(tokio::spawn(async move { batcher.submit(item).await }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(
            task.await
                .expect("the task ran")
                .expect("the batcher answered"),
        );
    }
    let won = answers.iter().filter(|a| **a == Answer::Won).count();
    let replayed = answers.iter().filter(|a| **a == Answer::Replayed).count();
    assert_eq!(won, 1, "exactly one racer claims the key: {answers:?}");
    assert_eq!(replayed, RACERS - 1, "the others replay: {answers:?}");
    assert!(
        runs.in_batch.load(Ordering::SeqCst) > 0,
        "some racers ran in a batch"
    );
}

async fn a_refused_item_leaves_the_others_kept<S: TransactionalStore>(store: S) {
    let batcher = one_batch(&store, 5);
    let runs = Arc::new(Runs::default());
    let refused = ClaimItem {
        refuse: true,
        ..item(&store, "b", b"a", &runs)
    };
    let items = vec![
        item(&store, "a", b"a", &runs),
        refused,
        item(&store, "c", b"a", &runs),
        item(&store, "a", b"other", &runs),
        item(&store, "d", b"a", &runs),
    ];
    let answers = submit_all(&batcher, items).await;
    assert_eq!(
        answers,
        [
            Answer::Won,
            Answer::Refused,
            Answer::Won,
            Answer::Mismatch,
            Answer::Won
        ]
    );
    assert_eq!(runs.in_batch.load(Ordering::SeqCst), 5, "one batch of five");
    assert_eq!(runs.alone.load(Ordering::SeqCst), 0, "none ran alone");
    for key in ["a", "c", "d"] {
        assert_eq!(
            claimed_now(&store, key).await,
            Answer::Replayed,
            "{key} committed"
        );
    }
    assert_eq!(
        claimed_now(&store, "b").await,
        Answer::Won,
        "the refused key is free"
    );
}

async fn a_failed_batch_runs_its_items_alone_answering_each_once<S: TransactionalStore>(store: S) {
    let batcher = one_batch(&store, 4);
    let runs = Arc::new(Runs::default());
    let failing = ClaimItem {
        fail_in_batch: true,
        ..item(&store, "y", b"a", &runs)
    };
    let items = vec![
        item(&store, "x", b"a", &runs),
        failing,
        item(&store, "z", b"a", &runs),
        item(&store, "w", b"a", &runs),
    ];
    let answers = submit_all(&batcher, items).await;
    assert_eq!(
        answers,
        vec![Answer::Won; 4],
        "each answered once, as its run alone"
    );
    assert_eq!(
        runs.in_batch.load(Ordering::SeqCst),
        2,
        "the batch stopped at the failing item"
    );
    assert_eq!(runs.alone.load(Ordering::SeqCst), 4, "every item ran alone");
    for key in ["x", "y", "z", "w"] {
        assert_eq!(
            claimed_now(&store, key).await,
            Answer::Replayed,
            "{key} committed"
        );
    }
}

async fn a_set_claims_fresh_keys_and_leaves_the_rest_alone<S: TransactionalStore>(store: S) {
    // "seen" has a record before the batch.
    assert_eq!(claimed_now(&store, "seen").await, Answer::Won);
    let runs = Arc::new(Runs::default());
    let mut tx = store.begin_write().await.expect("begin_write");
    let seen = ClaimItem {
        in_set: true,
        ..item(&store, "seen", b"a", &runs)
    };
    let mut earlier = vec![seen];
    let steps = ClaimItem::run_set(&mut earlier, &mut tx)
        .await
        .expect("set");
    assert!(
        matches!(steps[..], [SetStep::Done(Answer::Won)]),
        "{steps:?}"
    );
    tx.commit().await.expect("commit");

    let batcher = one_batch(&store, 6);
    let in_set = |key: &str, body: &[u8], refuse: bool| ClaimItem {
        in_set: true,
        refuse,
        ..item(&store, key, body, &runs)
    };
    let items = vec![
        in_set("p", b"a", false),
        in_set("q", b"a", false),
        in_set("p", b"a", false),
        in_set("seen", b"a", false),
        in_set("r", b"a", true),
        item(&store, "s", b"a", &runs),
    ];
    let answers = submit_all(&batcher, items).await;
    assert_eq!(
        answers,
        [
            Answer::Won,
            Answer::Won,
            Answer::Replayed,
            Answer::Replayed,
            Answer::Refused,
            Answer::Won
        ]
    );
    let stats = batcher.stats();
    assert_eq!(
        (
            stats.committed,
            stats.failed,
            stats.in_sets,
            stats.each,
            stats.alone
        ),
        (1, 0, 3, 1, 2),
        "{stats:?}"
    );
    for key in ["p", "q", "s"] {
        assert_eq!(claimed_now(&store, key).await, Answer::Replayed, "{key}");
    }
    assert_eq!(claimed_now(&store, "r").await, Answer::Won, "r is free");
}

/// Eight transactions claim, at once, a set of their own key and one shared key, and
/// commit: exactly one claims the shared key, and each that commits claims its own. On
/// PostgreSQL and SQLite none errs (a concurrent insert of the shared key is waited for).
/// InnoDB may pick deadlock victims among three or more racers (the locks its duplicate-key
/// checks take): a victim errs with `Contention` and keeps nothing, its own key stays free.
async fn concurrent_sets_racing_for_one_key_have_one_winner<S: TransactionalStore>(store: S) {
    const RACERS: usize = 8;
    let victims_allowed = idem::Store::name(&store) == "mysql";
    let start = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                let (s, answer) = (scope(), answer());
                let own = Key::new(format!("own-{i}")).expect("key");
                let shared = Key::new("shared").expect("key");
                let fingerprint = fp(b"a");
                let claim = |key| AnsweredClaim {
                    claim: Claim::new(&s, key, &fingerprint, Duration::ZERO, TTL_FOREVER),
                    answer: &answer,
                };
                // Half name the shared key first, half last.
                let claims = if i % 2 == 0 {
                    [claim(&own), claim(&shared)]
                } else {
                    [claim(&shared), claim(&own)]
                };
                start.wait().await;
                let mut tx = store.begin_write().await.expect("begin_write");
                let claimed = store.claim_fresh_in(&mut tx, &claims).await;
                match claimed {
                    Ok(claimed) => {
                        // Held open a while, as a batch's writes would: racers queue on
                        // the shared key's row meanwhile.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        tx.commit().await.expect("commit");
                        let (own, shared) = if i % 2 == 0 {
                            (claimed[0], claimed[1])
                        } else {
                            (claimed[1], claimed[0])
                        };
                        Ok((own, shared))
                    }
                    Err(error) => {
                        drop(tx);
                        Err((i, error))
                    }
                }
            })
        })
        .collect();
    let (mut shared_winners, mut victims) = (0, Vec::new());
    for task in tasks {
        match task.await.expect("task") {
            Ok((own, shared)) => {
                assert!(own, "a racer that commits claims its own key");
                shared_winners += usize::from(shared);
            }
            Err((i, error)) => {
                assert!(
                    victims_allowed && matches!(error, idem::StoreError::Contention(_)),
                    "racer {i}: {error:?}"
                );
                victims.push(i);
            }
        }
    }
    assert_eq!(shared_winners, 1, "victims: {victims:?}");
    assert_eq!(claimed_now(&store, "shared").await, Answer::Replayed);
    for i in victims {
        assert_eq!(claimed_now(&store, &format!("own-{i}")).await, Answer::Won);
    }
}

macro_rules! batch_tests {
    ($backend:ident, $open:path, $open_read_committed:path) => {
        mod $backend {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racers_on_one_key_have_one_winner() {
                let Some(store) = $open().await else { return };
                super::racers_on_one_key_have_one_winner(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_refused_item_leaves_the_others_kept() {
                let Some(store) = $open().await else { return };
                super::a_refused_item_leaves_the_others_kept(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_set_claims_fresh_keys_and_leaves_the_rest_alone() {
                let Some(store) = $open().await else { return };
                super::a_set_claims_fresh_keys_and_leaves_the_rest_alone(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_sets_racing_for_one_key_have_one_winner() {
                let Some(store) = $open_read_committed().await else {
                    return;
                };
                super::concurrent_sets_racing_for_one_key_have_one_winner(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_failed_batch_runs_its_items_alone_answering_each_once() {
                let Some(store) = $open().await else { return };
                super::a_failed_batch_runs_its_items_alone_answering_each_once(store).await;
            }
        }
    };
}

#[cfg(feature = "sqlite")]
batch_tests!(sqlite, crate::open_sqlite, crate::open_sqlite);
#[cfg(feature = "postgres")]
batch_tests!(postgres, crate::open_postgres, crate::open_postgres);
#[cfg(feature = "mysql")]
batch_tests!(mysql, crate::open_mysql, crate::open_mysql_read_committed);

#[cfg(feature = "sqlite")]
async fn open_sqlite() -> Option<idem_sql::SqliteStore> {
    Some(support::sqlite_store().await)
}

#[cfg(feature = "postgres")]
async fn open_postgres() -> Option<idem_sql::PostgresStore> {
    Some(support::pg_store(&backend_url("IDEM_TEST_POSTGRES")?).await)
}

#[cfg(feature = "mysql")]
async fn open_mysql() -> Option<idem_sql::MySqlStore> {
    Some(support::mysql_store(&backend_url("IDEM_TEST_MYSQL")?).await)
}

/// A MySQL store whose sessions run `READ COMMITTED`, as a payment service's do: a locking
/// read takes no gap locks, so a racing insert can land between a set's read and its insert.
#[cfg(feature = "mysql")]
async fn open_mysql_read_committed() -> Option<idem_sql::MySqlStore> {
    use sqlx::Executor;
    let url = backend_url("IDEM_TEST_MYSQL")?;
    let database = support::mysql_database(&url).await;
    let connect: sqlx::mysql::MySqlConnectOptions = url.parse().expect("a MySQL URL");
    let mut server = sqlx::Connection::connect_with(&connect)
        .await
        .expect("connect");
    let create = format!("CREATE DATABASE `{database}`");
    sqlx::Executor::execute(&mut server as &mut sqlx::MySqlConnection, create.as_str())
        .await
        .expect("create the test's database");
    let pool = sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(8)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
                    .await
                    .map(drop)
            })
        })
        .connect_with(
            connect
                .database(&database)
                .timezone(Some("+00:00".to_owned())),
        )
        .await
        .expect("connect");
    Some(
        idem_sql::MySqlStore::from_pool(pool)
            .await
            .expect("migrate"),
    )
}
