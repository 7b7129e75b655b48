//! The proxy in this process: [`idem_proxy::serve`] on 127.0.0.1:0 in front of the counting
//! app, its records in memory. The layer's scenarios run through it, then what only the
//! proxy does: rewriting the target, forwarding headers, answering for an upstream that is
//! down. `idem-cli`'s tests run the same scenarios through the `idem` binary on every store.

use axum::http::{HeaderMap, Uri};
use clap::Parser;
use idem_http::testing::{
    counting_app, serve_counting_app, unique_key, Served, Target, BODY_LIMIT_BYTES, WAIT_MAX,
};
use idem_proxy::ProxyArgs;

/// `idem proxy`'s options as the binary parses them.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ProxyArgs,
}

/// The proxy's task, stopped when dropped.
struct Proxy(tokio::task::JoinHandle<idem_proxy::Result<()>>);

impl Drop for Proxy {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The proxy in front of `upstream` with records in memory, the scenarios' body limit and
/// `extra` options; its base URL.
async fn proxy(upstream: &str, extra: &[&str]) -> (Proxy, String) {
    let limit = BODY_LIMIT_BYTES.to_string();
    let argv = ["proxy", "--upstream", upstream, "--memory"]
        .into_iter()
        .chain(["--body-limit-bytes", &limit])
        .chain(extra.iter().copied());
    let args = Cli::try_parse_from(argv).expect("valid options").args;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("bound address"));
    let limits = idem_http::server::Limits::default();
    let served = idem_proxy::serve(args, limits, listener, None, std::future::pending());
    (Proxy(tokio::spawn(served)), url)
}

/// The proxy in front of a fresh counting app, in the reject or the wait mode.
async fn proxied(wait_mode: bool) -> Target {
    let upstream = serve_counting_app(counting_app()).await;
    let wait_ms = WAIT_MAX.as_millis().to_string();
    let extra: &[&str] = if wait_mode {
        &["--in-flight-wait-ms", &wait_ms]
    } else {
        &[]
    };
    let (proxy, url) = proxy(&format!("http://{}", upstream.addr), extra).await;
    // The proxy passes GET through, so `GET /count` reaches the upstream's counter.
    Target::new(url).keep(proxy).keep(upstream)
}

idem_http::scenario_tests!(reject: proxied(false), wait: proxied(true));

/// An upstream that answers each request with what it received, one `name=value` line
/// each: the target and the headers the tests look at.
async fn echo_upstream() -> Served {
    async fn echo(uri: Uri, headers: HeaderMap) -> String {
        let mut seen = format!("target={uri}\n");
        for name in [
            "host",
            "idempotency-key",
            "idempotency-fencing-token",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-hop",
            "keep-alive",
        ] {
            let value = headers.get(name).and_then(|v| v.to_str().ok());
            seen.push_str(&format!("{name}={}\n", value.unwrap_or("-")));
        }
        seen
    }
    serve_counting_app(axum::Router::new().fallback(echo)).await
}

#[tokio::test]
async fn the_target_and_headers_are_rewritten_for_the_upstream() {
    let served = echo_upstream().await;
    let upstream = served.addr;
    let (_proxy, url) = proxy(&format!("http://{upstream}/base/"), &[]).await;
    let key = unique_key("forward");
    let answer = reqwest::Client::new()
        .post(format!("{url}/orders?x=1"))
        .header("idempotency-key", format!("\"{key}\""))
        .header("x-forwarded-for", "10.1.2.3")
        .header("connection", "x-hop")
        .header("x-hop", "one hop only")
        .header("keep-alive", "timeout=5")
        .body("{}")
        .send()
        .await
        .expect("answered");
    assert_eq!(answer.status(), 200);
    let proxy_host = url.trim_start_matches("http://").to_owned();
    let seen = answer.text().await.expect("body");
    for line in [
        "target=/base/orders?x=1".to_owned(),
        format!("host={upstream}"),
        format!("idempotency-key=\"{key}\""),
        "x-forwarded-for=10.1.2.3, 127.0.0.1".to_owned(),
        "x-forwarded-proto=http".to_owned(),
        format!("x-forwarded-host={proxy_host}"),
        "x-hop=-".to_owned(),
        "keep-alive=-".to_owned(),
    ] {
        assert!(seen.lines().any(|l| l == line), "{line:?} in\n{seen}");
    }
}

#[tokio::test]
async fn the_holder_s_fencing_token_reaches_the_upstream_and_a_client_s_never_does() {
    let served = echo_upstream().await;
    let (_proxy, url) = proxy(&format!("http://{}", served.addr), &[]).await;
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, key: Option<String>| {
        let mut request = client
            .request(method, format!("{url}/orders"))
            .header("idempotency-fencing-token", "999999")
            .body("{}");
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        async move {
            let answer = request.send().await.expect("answered");
            assert_eq!(answer.status(), 200);
            let seen = answer.text().await.expect("body");
            seen.lines()
                .find_map(|l| l.strip_prefix("idempotency-fencing-token="))
                .map(str::to_owned)
                .expect("the echo names the header")
        }
    };
    let token = send(reqwest::Method::POST, Some(unique_key("token"))).await;
    let parsed: u64 = token.parse().expect("a decimal token");
    assert!(
        parsed >= 1 && token != "999999",
        "the holder's token, got {token}"
    );
    // Unguarded (GET) and keyless requests hold no record: no token is passed on.
    assert_eq!(send(reqwest::Method::GET, None).await, "-");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_502_and_releases_the_key() {
    // Nothing listens on port 1.
    let (_proxy, url) = proxy("http://127.0.0.1:1", &[]).await;
    let key = format!("\"{}\"", unique_key("down"));
    for _ in 0..2 {
        let answer = reqwest::Client::new()
            .post(format!("{url}/orders"))
            .header("idempotency-key", key.clone())
            .body("{}")
            .send()
            .await
            .expect("answered");
        // Both times 502: the first failure released the key, nothing was stored.
        assert_eq!(answer.status(), 502);
        assert_eq!(answer.headers()["retry-after"], "1");
        assert_eq!(answer.headers()["content-type"], "application/problem+json");
        let body = answer.text().await.expect("body");
        assert!(
            body.contains("\"urn:idem:problem:upstream_failed\""),
            "{body}"
        );
        assert!(
            !body.contains("127.0.0.1"),
            "internals are not shown: {body}"
        );
    }
}

#[tokio::test]
async fn unusable_options_stop_the_proxy_before_it_serves() {
    let down = "http://127.0.0.1:1";
    for (what, upstream, extra) in [
        ("an https upstream", "https://127.0.0.1:3000", &[][..]),
        (
            "a bad method",
            down,
            &["--methods", "POST,NOT A METHOD"][..],
        ),
        (
            "a bad header name",
            down,
            &["--principal-header", "bad header"][..],
        ),
        ("a zero lease", down, &["--lease-ms", "0"][..]),
    ] {
        let (proxy, _) = proxy(upstream, extra).await;
        let served = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            let mut proxy = proxy;
            (&mut proxy.0).await
        })
        .await
        .expect("the proxy stops at once");
        let error = served.expect("the task ends").expect_err(what);
        assert!(
            matches!(error, idem_proxy::Error::Config(_)),
            "{what}: {error}"
        );
    }
}
