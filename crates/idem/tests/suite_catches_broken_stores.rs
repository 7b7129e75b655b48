//! Guards for the suite itself: stores with classic bugs must fail the cases meant to
//! catch them. A suite that passes a broken store proves nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use idem::conformance::CloneHarness;
use idem::decide::{begin_step, claimed, BeginStep};
use idem::{
    Claim, Hold, Key, Outcome, Record, RecordState, Scope, Store, StoreError, StoredResponse,
    TimeTravel, Timestamp,
};

/// Checks, then yields, then inserts: two round trips, as a naive SQL or Redis store would
/// do with a SELECT and an INSERT. Everything else is delegated to a correct store.
#[derive(Clone, Default)]
struct CheckThenInsertStore {
    records: Arc<Mutex<HashMap<(Scope, Key), Record>>>,
}

fn wall_clock() -> Timestamp {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    Timestamp(idem::duration_ms(since_epoch))
}

impl CheckThenInsertStore {
    fn read(&self, scope: &Scope, key: &Key) -> Option<Record> {
        self.records
            .lock()
            .expect("lock")
            .get(&(scope.clone(), key.clone()))
            .cloned()
    }
}

#[async_trait]
impl Store for CheckThenInsertStore {
    async fn begin(&self, claim: Claim<'_>) -> Result<Outcome, StoreError> {
        let now = wall_clock();
        let found = self.read(claim.scope, claim.key);
        // The bug: the decision is made on a read that another caller can overtake.
        tokio::time::sleep(Duration::from_millis(1)).await;
        match begin_step(found.as_ref(), claim.fingerprint, now) {
            BeginStep::Answer(outcome) => Ok(outcome),
            BeginStep::Write { token, recovered } => {
                let id = (claim.scope.clone(), claim.key.clone());
                let record = claimed(claim, token, now);
                self.records.lock().expect("lock").insert(id, record);
                Ok(Outcome::Acquired { token, recovered })
            }
        }
    }

    async fn complete(&self, hold: Hold<'_>, response: &StoredResponse) -> Result<(), StoreError> {
        let Hold { scope, key, token } = hold;
        let mut records = self.records.lock().expect("lock");
        match records.get_mut(&(scope.clone(), key.clone())) {
            Some(record) if matches!(record.state, RecordState::InProgress { token: t, .. } if t == token) =>
            {
                record.state = RecordState::Completed {
                    token,
                    response: response.clone(),
                };
                Ok(())
            }
            _ => Err(StoreError::Fenced),
        }
    }

    async fn release(&self, hold: Hold<'_>) -> Result<(), StoreError> {
        let Hold { scope, key, .. } = hold;
        self.records
            .lock()
            .expect("lock")
            .remove(&(scope.clone(), key.clone()));
        Ok(())
    }

    async fn get(&self, scope: &Scope, key: &Key) -> Result<Option<Record>, StoreError> {
        Ok(self.read(scope, key))
    }

    async fn purge_expired(&self, _limit: usize) -> Result<usize, StoreError> {
        Ok(0)
    }
}

#[async_trait]
impl TimeTravel for CheckThenInsertStore {
    async fn now(&self) -> Result<Timestamp, StoreError> {
        Ok(wall_clock())
    }

    async fn advance(&self, by: Duration) -> Result<(), StoreError> {
        let by_ms = idem::duration_ms(by);
        for record in self.records.lock().expect("lock").values_mut() {
            *record = idem::aged(record.clone(), by_ms);
        }
        Ok(())
    }
}

/// Its clones share the records, so a clone is a second node.
static BROKEN: CloneHarness<CheckThenInsertStore> = CloneHarness::new();

async fn fails<F: std::future::Future<Output = ()> + Send + 'static>(case: F) -> bool {
    tokio::spawn(case).await.is_err_and(|e| e.is_panic())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_case_catches_check_then_insert() {
    assert!(
        fails(async { idem::conformance::racers_on_one_key_have_one_winner(&BROKEN).await }).await,
        "the race case must fail a store that checks and inserts in two steps"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_case_catches_unfenced_release() {
    assert!(
        fails(async { idem::conformance::release_then_retry_acquires(&BROKEN).await }).await,
        "the release case must fail a store whose release ignores the token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expiry_case_catches_records_that_never_expire() {
    assert!(
        fails(async { idem::conformance::expired_record_is_absent(&BROKEN).await }).await,
        "the expiry case must fail a store that keeps expired records"
    );
}

#[test]
fn model_catches_a_store_without_expiry() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let outcome = std::panic::catch_unwind(|| idem::conformance::model::check(&runtime, &BROKEN));
    assert!(
        outcome.is_err(),
        "the model must disagree with a store that never expires nor purges"
    );
}
