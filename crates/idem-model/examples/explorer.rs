//! Serves stateright's explorer for the protocol model, to step through it by hand.
//!
//! ```text
//! cargo run -p idem-model --release --example explorer
//! cargo run -p idem-model --release --example explorer -- --variant no-fencing
//! ```
//!
//! then open <http://localhost:3000>. Options: `--full` (the full bound instead of the
//! small one), `--transactional`, `--variant correct|no-fencing|node-clock|check-then-insert`,
//! `--addr HOST:PORT` (default `localhost:3000`). Each step shows what happened and the
//! state after it; "Run to completion" checks every property and links each counterexample.

mod common;

use idem_model::{Config, ProtocolModel};
use stateright::Model;

fn main() {
    let mut config = Config::small();
    let mut addr = "localhost:3000".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--full" => {
                config = Config {
                    variant: config.variant,
                    ..Config::full()
                }
            }
            "--transactional" => config = config.transactional(),
            "--variant" => config = config.with_variant(common::variant(args.next())),
            "--addr" => addr = args.next().unwrap_or(addr),
            other => common::unknown_option(other),
        }
    }
    println!("exploring {config:?}\non http://{addr}");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    ProtocolModel::new(config)
        .checker()
        .threads(threads)
        .serve(addr);
}
