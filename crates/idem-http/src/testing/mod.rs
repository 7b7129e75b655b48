//! Test support (feature `testing`): a handler-counting app and the HTTP scenarios of
//! DESIGN §4, so the layer's tests and `idem proxy`'s run one body of checks.
//!
//! A test crate builds a [`Target`] (the base URL of anything that puts the layer in front
//! of [`counting_app`]) and expands every scenario with [`crate::scenario_tests!`].

mod app;
mod metered;
mod scenarios;

pub use app::{counting_app, serve_counting_app, Served};
pub use metered::{assert_one_of_each_outcome, one_request_of_each_outcome, sample};
pub use scenarios::*;

/// Expands every scenario as a `#[tokio::test]`.
///
/// `reject` and `wait` are expressions evaluating to futures of [`Target`] (or of
/// `Option<Target>`, `None` skipping the test): one fronted by
/// a layer in the default 409 mode, one in the wait mode (`InFlight::Wait`). Both must be
/// configured as [`layer_config`] says: principal from `Authorization`, a 4096-byte body
/// limit.
#[macro_export]
macro_rules! scenario_tests {
    (reject: $reject:expr, wait: $wait:expr $(,)?) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_duplicates_in_reject_mode_run_once() {
            let target: Option<$crate::testing::Target> = $reject.await.into();
            let Some(target) = target else { return };
            $crate::testing::concurrent_duplicates_run_once(&target, false).await;
        }

        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_duplicates_in_wait_mode_run_once_and_all_succeed() {
            let target: Option<$crate::testing::Target> = $wait.await.into();
            let Some(target) = target else { return };
            $crate::testing::concurrent_duplicates_run_once(&target, true).await;
        }

        $crate::scenario_tests!(@each $reject;
            other_payload_is_422_and_does_not_run,
            server_error_releases_the_key,
            panic_releases_the_key,
            principals_never_share_responses,
            missing_key_is_400,
            invalid_keys_are_400,
            replay_is_byte_for_byte,
            body_too_large_is_413,
            unguarded_get_passes_through,
            client_disconnect_releases_the_key,
        );
    };
    (@each $target:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let target: Option<$crate::testing::Target> = $target.await.into();
                let Some(target) = target else { return };
                $crate::testing::$case(&target).await;
            }
        )+
    };
}
