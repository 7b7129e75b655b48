//! Many callers at once, on one key and on many, through two nodes of one store.

use std::sync::Arc;
use std::time::Duration;

use super::{acquire, begin, complete, fp, key, response, scope};
use crate::conformance::{Harness, LEASE, TTL};
use crate::{Claim, Hold, Outcome, RecordState, Store};

/// The node task `i` of a pair goes through, alternating so both nodes carry load.
fn node_for<S>(i: usize, node_a: &Arc<S>, node_b: &Arc<S>) -> Arc<S> {
    Arc::clone(if i.is_multiple_of(2) { node_a } else { node_b })
}

/// 64 tasks on two nodes race for one key: exactly one `Acquired`; every other answer is
/// `InFlight` or a `Replay` of that one response; afterwards everyone replays it.
pub async fn racers_on_one_key_have_one_winner<H: Harness>(h: &H) {
    const RACERS: usize = 64;
    let node_a = Arc::new(h.fresh().await);
    let node_b = Arc::new(h.peer(&node_a).await);
    let (s, k, f) = (scope("t"), key("race"), fp("same"));
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let node = node_for(i, &node_a, &node_b);
        let (s, k, barrier) = (s.clone(), k.clone(), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let claim = Claim::new(&s, &k, &f, LEASE, TTL);
            let outcome = node.begin(claim).await.expect("begin");
            if let Outcome::Acquired { token, .. } = outcome {
                tokio::time::sleep(Duration::from_millis(20)).await;
                node.complete(Hold::new(&s, &k, token), &response(&format!("winner-{i}")))
                    .await
                    .expect("the winner completes");
                return (outcome, Some(response(&format!("winner-{i}"))));
            }
            (outcome, None)
        }));
    }
    let mut winners = Vec::new();
    let mut others = Vec::new();
    for task in tasks {
        let (outcome, stored) = task.await.expect("racer task");
        match outcome {
            Outcome::Acquired { .. } => winners.push(stored.expect("winner stored a response")),
            other => others.push(other),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one racer acquires; got {}",
        winners.len()
    );
    let winner = winners.remove(0);
    for outcome in others {
        match outcome {
            Outcome::InFlight { .. } => {}
            Outcome::Replay(replayed) => {
                assert_eq!(replayed, winner, "a replay is the winner's response")
            }
            other => panic!("a loser sees InFlight or Replay, got {other:?}"),
        }
    }
    for node in [&node_a, &node_b] {
        assert_eq!(
            begin(node.as_ref(), &s, &k, &f).await,
            Outcome::Replay(winner.clone())
        );
    }
}

/// 10 000 distinct keys from 16 tasks on two nodes: every one acquires once and keeps its
/// own response.
pub async fn many_keys_from_many_tasks_none_lost<H: Harness>(h: &H) {
    const TASKS: usize = 16;
    const KEYS_PER_TASK: usize = 625;
    let node_a = Arc::new(h.fresh().await);
    let node_b = Arc::new(h.peer(&node_a).await);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let node = node_for(t, &node_a, &node_b);
        tasks.push(tokio::spawn(async move {
            let s = scope("t");
            for i in 0..KEYS_PER_TASK {
                let k = key(&format!("k-{t}-{i}"));
                let token = acquire(node.as_ref(), &s, &k, &fp("a")).await;
                complete(node.as_ref(), &s, &k, token, &format!("{t}-{i}")).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let s = scope("t");
    let mut missing = Vec::new();
    for t in 0..TASKS {
        for i in 0..KEYS_PER_TASK {
            // Read through the other node from the one that wrote half the time.
            let node = node_for(t + i, &node_a, &node_b);
            let k = key(&format!("k-{t}-{i}"));
            match node.get(&s, &k).await.expect("get") {
                Some(record) => assert_eq!(
                    record.state,
                    RecordState::Completed {
                        token: record.token(),
                        response: response(&format!("{t}-{i}"))
                    },
                    "key {k} keeps its own response"
                ),
                None => missing.push(k),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of 10000 keys lost, first {:?}",
        missing.len(),
        missing.first()
    );
}
