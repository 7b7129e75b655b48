//! API keys on each backend (DESIGN §5a): a created key names its tenant, lists without its
//! secret, and once revoked is refused by every node within 1 s. One body per case,
//! expanded per backend by `backend_tests!`.

mod common;

use std::time::{Duration, Instant};

use idem_pay::keys::{ApiKeys, NewKey, Revocation, CACHE_AGE_MAX, SECRET_LEN, SECRET_PREFIX};
use idem_pay::{Db, Error, Tenant};

/// DESIGN §5a: "every node refuses it within 1 s".
const REVOCATION_BOUND: Duration = Duration::from_secs(1);

/// The tenant `keys` names for `key`'s secret, if any.
async fn seen(keys: &ApiKeys, key: &NewKey) -> Option<String> {
    let tenant = keys.tenant_of(&key.secret).await.expect("read");
    tenant.map(|t| t.as_str().to_owned())
}

/// One node's keys on `url`.
async fn node(url: &str) -> ApiKeys {
    ApiKeys::new(Db::connect(url, 4).await.expect("connect and migrate"))
}

fn tenant(name: &str) -> Tenant {
    Tenant::new(name).expect("a valid tenant")
}

/// A well-formed secret that no key has.
fn unknown_secret() -> String {
    format!("{SECRET_PREFIX}{}", "0f".repeat(32))
}

/// A created key gives its tenant; the list shows it (id, tenant, created, not revoked)
/// and never the secret; unknown and malformed secrets give no tenant.
async fn created_keys_name_their_tenant(url: &str) {
    let keys = node(url).await;
    let acme = keys.create(&tenant("acme")).await.expect("created");
    let other = keys.create(&tenant("other:tenant")).await.expect("created");
    assert_eq!(acme.secret.len(), SECRET_LEN);
    assert!(acme.secret.starts_with(SECRET_PREFIX));
    assert!(acme.info.id.starts_with("key_") && acme.info.revoked_at.is_none());
    assert_ne!(acme.secret, other.secret);
    assert_ne!(acme.info.id, other.info.id);

    assert_eq!(seen(&keys, &acme).await.as_deref(), Some("acme"));
    assert_eq!(
        keys.tenant_of(&other.secret).await.expect("read"),
        Some(tenant("other:tenant"))
    );
    assert_eq!(keys.tenant_of(&unknown_secret()).await.expect("read"), None);
    let upper = acme.secret.to_uppercase();
    let malformed: [&str; 5] = ["", SECRET_PREFIX, "Bearer x", &upper, &acme.secret[1..]];
    for malformed in malformed {
        assert_eq!(
            keys.tenant_of(malformed).await.expect("no read"),
            None,
            "{malformed:?}"
        );
    }

    let list = keys.list().await.expect("listed");
    // Oldest first; two keys of the same millisecond by id.
    let mut expected = vec![acme.info.clone(), other.info.clone()];
    expected.sort_by(|x, y| (&x.created_at, &x.id).cmp(&(&y.created_at, &y.id)));
    assert_eq!(list, expected);
    let shown = format!("{list:?}");
    assert!(
        !shown.contains(&acme.secret[SECRET_PREFIX.len()..]),
        "{shown}"
    );
    keys.db().close().await;
}

/// Revoked, the key is refused by the node that revoked it at once, and by another node
/// (its own pool and cache, holding a fresh positive answer) within 1 s; revoking again
/// changes nothing; an unknown id is an error.
async fn revoked_keys_are_refused_by_every_node_within_a_second(url: &str) {
    let a = node(url).await;
    let b = node(url).await;
    let key = a.create(&tenant("acme")).await.expect("created");
    let kept = a.create(&tenant("acme")).await.expect("created");
    assert_eq!(seen(&b, &key).await.as_deref(), Some("acme"));
    assert_eq!(seen(&a, &key).await.as_deref(), Some("acme"));

    assert_eq!(
        a.revoke(&key.info.id).await.expect("revoked"),
        Revocation::Revoked
    );
    let revoked = Instant::now();
    assert_eq!(seen(&a, &key).await, None, "at once on its node");
    tokio::time::sleep(CACHE_AGE_MAX).await;
    assert_eq!(seen(&b, &key).await, None, "the other node");
    assert!(
        revoked.elapsed() < REVOCATION_BOUND,
        "{:?}",
        revoked.elapsed()
    );
    assert_eq!(seen(&b, &kept).await.as_deref(), Some("acme"));

    assert_eq!(
        b.revoke(&key.info.id).await.expect("answered"),
        Revocation::AlreadyRevoked
    );
    let listed = a.list().await.expect("listed");
    let row = listed
        .iter()
        .find(|k| k.id == key.info.id)
        .expect("still listed");
    assert!(row.revoked_at.is_some(), "{row:?}");
    assert!(listed
        .iter()
        .any(|k| k.id == kept.info.id && k.revoked_at.is_none()));

    match a.revoke("key_0000000000000000").await {
        Err(Error::KeyNotFound { key_id }) => assert_eq!(key_id, "key_0000000000000000"),
        other => panic!("expected KeyNotFound, got {other:?}"),
    }
    a.db().close().await;
    b.db().close().await;
}

/// Ten revokes of one key at once: exactly one revokes it.
async fn concurrent_revokes_revoke_once(url: &str) {
    let keys = node(url).await;
    let key = keys.create(&tenant("acme")).await.expect("created");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (keys, id) = (keys.clone(), key.info.id.clone());
            tokio::spawn(async move { keys.revoke(&id).await })
        })
        .collect();
    let mut revoked = 0;
    for task in tasks {
        if task.await.expect("task").expect("answered") == Revocation::Revoked {
            revoked += 1;
        }
    }
    assert_eq!(revoked, 1);
    keys.db().close().await;
}

/// A hot key is answered from the node's cache: with the pool closed, a key read a moment
/// ago still gives its tenant, while a key never read fails (it needs the database).
async fn hot_keys_cost_no_round_trip(url: &str) {
    let keys = node(url).await;
    let hot = keys.create(&tenant("acme")).await.expect("created");
    let cold = keys.create(&tenant("acme")).await.expect("created");
    let read = Instant::now();
    assert_eq!(seen(&keys, &hot).await.as_deref(), Some("acme"));
    keys.db().close().await;
    let cached = keys.tenant_of(&hot.secret).await;
    if read.elapsed() < CACHE_AGE_MAX {
        assert_eq!(cached.expect("from the cache"), Some(tenant("acme")));
    } else {
        eprintln!(
            "the machine was too slow to check the cache ({:?})",
            read.elapsed()
        );
    }
    assert!(
        keys.tenant_of(&cold.secret).await.is_err(),
        "needs the closed pool"
    );
}

common::backend_tests!(sqlite, postgres, mysql => {
    created_keys_name_their_tenant: 2,
    revoked_keys_are_refused_by_every_node_within_a_second: 2,
    concurrent_revokes_revoke_once: 2,
    hot_keys_cost_no_round_trip: 2,
});
