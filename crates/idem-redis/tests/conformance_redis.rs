//! The conformance suite and the model-based property test against [`RedisStore`] on the
//! server at `IDEM_TEST_REDIS`, each case under a key prefix of its own, the second node a
//! second client of its own. Redis drops a record itself at its expiry, which the cases
//! allow for ([`Harness::DROPS_EXPIRED`]).

mod common;

use async_trait::async_trait;
use idem::conformance::Harness;
use idem_redis::RedisStore;

struct RedisHarness {
    url: String,
}

#[async_trait]
impl Harness for RedisHarness {
    type Store = RedisStore;
    const DROPS_EXPIRED: bool = true;

    async fn fresh(&self) -> RedisStore {
        RedisStore::connect_with(&common::fresh_options(&self.url))
            .await
            .expect("connect to the test Redis")
    }

    async fn peer(&self, store: &RedisStore) -> RedisStore {
        store.peer()
    }
}

async fn harness() -> Option<RedisHarness> {
    common::redis_url().map(|url| RedisHarness { url })
}

idem::conformance_tests!(harness());
