#![doc = include_str!("../README.md")]

mod config;
mod model;
pub mod properties;
mod state;

use std::time::{Duration, Instant};

use stateright::{Checker, HasDiscoveries, Model, Path};

pub use config::{ClientSpec, Config, Variant};
pub use model::{Action, ProtocolModel};
pub use state::{Broken, Client, Ghost, Msg, Op, Phase, Rec, RecState, Reply, Settled, State};

/// A time of the store's clock, in ticks (one tick is one millisecond to `idem::decide`).
pub type Tick = u8;

/// The tick that stands for "never": the expiry of a record kept for ever.
pub const FOREVER: Tick = Tick::MAX;

/// What one exhaustive check found.
#[derive(Debug)]
pub struct Report {
    /// States generated, counting revisits.
    pub states: usize,
    /// Distinct states explored.
    pub unique_states: usize,
    /// The longest path explored, in steps.
    pub max_depth: usize,
    /// How long the check took.
    pub elapsed: Duration,
    /// False when the check stopped at its time limit before exploring every state.
    pub exhaustive: bool,
    /// For every property with a discovery: its name and the path as readable steps. For
    /// an `always` or `eventually` property that is a counterexample; for a `sometimes`
    /// property, an example.
    pub discoveries: Vec<(&'static str, String)>,
    /// The names of the `sometimes` properties.
    pub sometimes: Vec<&'static str>,
}

impl Report {
    /// The counterexample (or example) found for `property`, as readable steps.
    pub fn counterexample(&self, property: &str) -> Option<&str> {
        self.discoveries
            .iter()
            .find(|(name, _)| *name == property)
            .map(|(_, trace)| trace.as_str())
    }

    /// The properties that failed: `always` and `eventually` ones with a counterexample,
    /// and `sometimes` ones with no example.
    pub fn failures(&self) -> Vec<&'static str> {
        let found = |name: &str| self.discoveries.iter().any(|(n, _)| *n == name);
        properties::all()
            .iter()
            .filter(|p| {
                if self.sometimes.contains(&p.name) {
                    !found(p.name)
                } else {
                    found(p.name)
                }
            })
            .map(|p| p.name)
            .collect()
    }
}

/// How the checker walks the state space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Breadth first: shortest counterexamples (on one thread), more memory.
    Bfs,
    /// Depth first: far less memory, longer counterexamples.
    Dfs,
}

/// Checks `config` exhaustively, breadth first, on `threads` threads (one thread finds
/// the shortest counterexamples).
pub fn check(config: Config, threads: usize) -> Report {
    run(config, threads, HasDiscoveries::All, None, Search::Bfs)
}

/// As [`check`], with the search of choice, stopping after `limit` if one is given (the
/// report then says it is not exhaustive).
pub fn check_with(
    config: Config,
    threads: usize,
    search: Search,
    limit: Option<Duration>,
) -> Report {
    run(config, threads, HasDiscoveries::All, limit, search)
}

/// Checks `config` breadth first until `property` has a discovery (or the bounds are
/// exhausted): how the tests catch a bad variant without exploring all of it.
pub fn check_until(config: Config, threads: usize, property: &'static str) -> Report {
    run(
        config,
        threads,
        HasDiscoveries::AnyOf([property].into()),
        None,
        Search::Bfs,
    )
}

fn run(
    config: Config,
    threads: usize,
    finish_when: HasDiscoveries,
    limit: Option<Duration>,
    search: Search,
) -> Report {
    let model = ProtocolModel::new(config);
    let sometimes = model
        .properties()
        .iter()
        .filter(|p| p.expectation == stateright::Expectation::Sometimes)
        .map(|p| p.name)
        .collect();
    let started = Instant::now();
    let mut builder = model
        .checker()
        .threads(threads.max(1))
        .finish_when(finish_when);
    if let Some(limit) = limit {
        builder = builder.timeout(limit);
    }
    match search {
        Search::Bfs => report(builder.spawn_bfs().join(), started, limit, sometimes),
        Search::Dfs => report(builder.spawn_dfs().join(), started, limit, sometimes),
    }
}

fn report(
    checker: impl Checker<ProtocolModel>,
    started: Instant,
    limit: Option<Duration>,
    sometimes: Vec<&'static str>,
) -> Report {
    let elapsed = started.elapsed();
    let model = checker.model();
    let mut discoveries: Vec<(&'static str, String)> = checker
        .discoveries()
        .into_iter()
        .map(|(name, path)| (name, trace(model, path)))
        .collect();
    discoveries.sort();
    Report {
        states: checker.state_count(),
        unique_states: checker.unique_state_count(),
        max_depth: checker.max_depth(),
        elapsed,
        exhaustive: !matches!(limit, Some(limit) if elapsed >= limit),
        discoveries,
        sometimes,
    }
}

/// A path as readable steps, one line per action.
pub fn trace(model: &ProtocolModel, path: Path<State, Action>) -> String {
    let steps = path.into_vec();
    let mut out = String::new();
    for (i, (state, action)) in steps.iter().enumerate() {
        if let Some(action) = action {
            out.push_str(&format!(
                "{:>3}. {}\n",
                i + 1,
                model.describe(state, *action)
            ));
        }
    }
    if let Some((last, _)) = steps.last() {
        out.push_str(&format!("     then: {}\n", summary(model, last)));
    }
    out
}

/// The records and clients of `state` in one line.
pub fn summary(model: &ProtocolModel, state: &State) -> String {
    let _ = model;
    let records: Vec<String> = state
        .records
        .iter()
        .enumerate()
        .map(|(k, r)| match r {
            None => format!("key {k}: absent"),
            Some(rec) => format!(
                "key {k}: {:?} payload {} expires {}",
                rec.state, rec.payload, rec.expires_at
            ),
        })
        .collect();
    let clients: Vec<String> = state
        .clients
        .iter()
        .enumerate()
        .map(|(c, client)| format!("client {c}: {:?}", client.phase))
        .collect();
    format!(
        "t={}; {}; {}",
        state.now,
        records.join(", "),
        clients.join(", ")
    )
}
