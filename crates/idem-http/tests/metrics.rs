//! An axum app that embeds the layer and installs the Prometheus exporter sees idem's
//! series in its own `/metrics`: the layer's requests by outcome, and the latency of the
//! store under it. One test in this binary: it installs the process's recorder.

use axum::routing::get;
use axum::Router;
use idem_http::testing::{
    assert_one_of_each_outcome, counting_app, layer_config, one_request_of_each_outcome, sample,
    serve_counting_app,
};
use idem_http::IdempotencyLayer;
use idem_sql::SqliteStore;
use idem_test_support::unique_name;
use metrics_exporter_prometheus::PrometheusBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_the_layer_and_the_exporter_counts_each_outcome_once() {
    let exposition = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");
    let dir = std::env::temp_dir().join(unique_name("idem_http_metrics"));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    let url = format!("sqlite://{}", dir.join("idem.db").display());
    let store = SqliteStore::connect(&url).await.expect("open SQLite");
    let app = Router::new()
        .route("/metrics", get(move || async move { exposition.render() }))
        .merge(counting_app().layer(IdempotencyLayer::new(store, layer_config())));
    let served = serve_counting_app(app).await;
    let base = format!("http://{}", served.addr);

    one_request_of_each_outcome(&base).await;

    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scraped")
        .text()
        .await
        .expect("the exposition");
    assert_one_of_each_outcome(&text);
    // Four `begin`s reached the store, which timed each (a summary: this app's exporter
    // has no buckets configured).
    let begins = sample(
        &text,
        "idem_store_operation_duration_seconds_count{store=\"sqlite\",op=\"begin\"}",
    );
    assert_eq!(begins, Some(4.0), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
