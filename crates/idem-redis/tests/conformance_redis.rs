//! The conformance suite and the model-based property test against [`RedisStore`] on the
//! server at `IDEM_TEST_REDIS`, and again (`cluster::`) on the Redis Cluster at
//! `IDEM_TEST_REDIS_CLUSTER`: each case under key prefixes of its own, deleted when it
//! ends, the second node a second client of its own. Redis drops a record itself at its
//! expiry, which the cases allow for ([`Harness::DROPS_EXPIRED`]).

mod common;

use async_trait::async_trait;
use idem::conformance::Harness;
use idem_redis::RedisStore;

struct RedisHarness {
    prefixes: common::Prefixes,
}

#[async_trait]
impl Harness for RedisHarness {
    type Store = RedisStore;
    const DROPS_EXPIRED: bool = true;

    async fn fresh(&self) -> RedisStore {
        RedisStore::connect_with(&self.prefixes.fresh())
            .await
            .expect("connect to the test Redis")
    }

    async fn peer(&self, store: &RedisStore) -> RedisStore {
        store.peer()
    }
}

fn harness_on(url: Option<String>) -> Option<RedisHarness> {
    url.map(|url| RedisHarness {
        prefixes: common::Prefixes::new(&url),
    })
}

async fn harness() -> Option<RedisHarness> {
    harness_on(common::redis_url())
}

idem::conformance_tests!(harness());

mod cluster {
    use super::*;

    async fn harness() -> Option<RedisHarness> {
        harness_on(common::redis_cluster_url())
    }

    idem::conformance_tests!(harness());
}
