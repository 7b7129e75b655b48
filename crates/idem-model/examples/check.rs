//! Runs one exhaustive check and prints its figures and any counterexample, one step a line.
//!
//! ```text
//! cargo run -p idem-model --release --example check -- --full
//! cargo run -p idem-model --release --example check -- --variant no-fencing
//! ```
//!
//! Options: `--full`, `--transactional`, `--dfs`, `--variant correct|no-fencing|node-clock|check-then-insert`,
//! `--clients KEY:PAYLOAD:ATTEMPTS,…`, `--lease N`, `--horizon N`, `--ttl N`,
//! `--limit SECONDS` (stop early), `--threads N`.

mod common;

use std::time::Duration;

use idem_model::{check_with, ClientSpec, Config, Search};

fn main() {
    let mut config = Config::small();
    let mut limit = None;
    let mut search = Search::Bfs;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut args = std::env::args().skip(1);
    let number = |v: Option<String>| -> u64 {
        v.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("expected a number");
            std::process::exit(2)
        })
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--full" => {
                config = Config {
                    variant: config.variant,
                    transactional: config.transactional,
                    ..Config::full()
                }
            }
            "--transactional" => config = config.transactional(),
            "--dfs" => search = Search::Dfs,
            "--variant" => config = config.with_variant(common::variant(args.next())),
            "--horizon" => config.horizon = number(args.next()) as u8,
            "--ttl" => config.ttl = Some(number(args.next()) as u8),
            "--limit" => limit = Some(Duration::from_secs(number(args.next()))),
            "--threads" => threads = number(args.next()) as usize,
            "--clients" => {
                // key:payload:attempts,…
                let spec = args.next().unwrap_or_default();
                config.clients = spec
                    .split(',')
                    .map(|c| {
                        let n: Vec<u8> = c.split(':').map(|n| n.parse().unwrap_or(0)).collect();
                        ClientSpec::new(
                            n[0],
                            n.get(1).copied().unwrap_or(0),
                            n.get(2).copied().unwrap_or(1).max(1),
                        )
                    })
                    .collect();
            }
            "--lease" => config.lease = number(args.next()) as u8,
            other => common::unknown_option(other),
        }
    }
    println!("checking {config:?} on {threads} threads");
    let report = check_with(config, threads, search, limit);
    println!(
        "{} unique states, {} generated, max depth {}, in {:.1?}{}",
        report.unique_states,
        report.states,
        report.max_depth,
        report.elapsed,
        if report.exhaustive {
            ""
        } else {
            " (stopped at the limit: NOT exhaustive)"
        }
    );
    let failures = report.failures();
    for (name, trace) in &report.discoveries {
        if failures.contains(name) {
            println!("\ncounterexample to \"{name}\":\n{trace}");
        }
    }
    for name in &failures {
        if report.counterexample(name).is_none() {
            println!("\nno example of \"{name}\"");
        }
    }
    if failures.is_empty() && report.exhaustive {
        println!("every property holds");
    } else if failures.is_empty() {
        println!("no property failed in the states explored");
    } else {
        std::process::exit(1);
    }
}
