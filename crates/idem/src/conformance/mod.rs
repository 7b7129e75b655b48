//! The store conformance suite: every case of DESIGN §2 as reusable code any store crate
//! runs against its own store with one macro call.
//!
//! A store crate implements [`Harness`] (how to open a fresh, isolated store and a second
//! "node" on it) and expands every case as a test:
//!
//! ```ignore
//! async fn harness() -> Option<MyHarness> { /* None = skipped, with a printed reason */ }
//! idem::conformance_tests!(harness());
//! ```
//!
//! The expansion needs `tokio` (with `macros` and `rt-multi-thread`) in the store crate's
//! dev-dependencies. Cases panic with a message naming the rule that broke.

mod cases;
mod harness;
pub mod model;

pub use cases::*;
pub use harness::{CloneHarness, Harness, LEASE, TTL};

/// Expands every conformance case, and the model-based property test, as `#[test]`s.
///
/// `$harness` is an expression evaluating to a future of `Option<H>` where `H: Harness`;
/// `None` skips every case (the harness prints why).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@cases $harness;
            begin_on_absent_key_acquires,
            completed_same_fingerprint_replays,
            other_fingerprint_mismatches,
            mismatch_leaves_record_untouched,
            running_lease_is_in_flight,
            ended_lease_is_taken_over_with_larger_token,
            stale_holder_is_fenced_and_new_holder_wins,
            release_then_retry_acquires,
            release_after_complete_is_fenced,
            release_after_take_over_never_reuses_a_token,
            complete_without_holding_is_fenced,
            expired_record_is_absent,
            forever_record_never_expires,
            purge_expired_in_bounded_batches,
            scopes_are_isolated,
            racers_on_one_key_have_one_winner,
            many_keys_from_many_tasks_none_lost,
            replay_is_byte_for_byte,
            advance_ages_records_not_the_clock,
        );

        #[test]
        fn model_based_property_test() {
            let runtime = ::tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime");
            let Some(harness) = runtime.block_on($harness) else { return };
            $crate::conformance::model::check(&runtime, &harness);
        }
    };
    (@cases $harness:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(harness) = $harness.await else { return };
                $crate::conformance::$case(&harness).await;
            }
        )+
    };
}
