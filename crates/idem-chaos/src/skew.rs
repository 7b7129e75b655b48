//! Node clock skew: some nodes run with their wall clock hours off and drifting, through
//! libfaketime (Debian's `libfaketime` package, installed with `faketime`) preloaded into the
//! node process itself, so a SIGKILL still hits the node and a restarted node keeps its skew.
//!
//! idem decides with the store's clock (DESIGN §2: `now()` in SQL, `TIME` in Redis), never a
//! node's, so a skewed node must change nothing: the run's verdict is the same as without.
//! Only the wall clock is skewed (`FAKETIME_DONT_FAKE_MONOTONIC=1`): a node's timers and
//! timeouts run on the real monotonic clock, as on a machine whose NTP is far off.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where distributions put libfaketime's shared object, searched in order.
pub const LIBFAKETIME_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
];

/// What to install when libfaketime is missing.
pub const PACKAGE_HINT: &str =
    "libfaketime is not installed (Debian: apt-get install faketime, which brings libfaketime)";

/// The skews handed out to the first nodes, in order: node 0 three hours behind and
/// running fast, node 1 five hours ahead and running slow, then a day behind and two ahead.
pub const PATTERN: &[Skew] = &[
    Skew {
        offset_s: -3 * 3600,
        rate: 1.001,
    },
    Skew {
        offset_s: 5 * 3600,
        rate: 0.999,
    },
    Skew {
        offset_s: -26 * 3600,
        rate: 1.002,
    },
    Skew {
        offset_s: 49 * 3600,
        rate: 0.998,
    },
];

/// One node's clock: an offset from the real wall clock at its start, and how fast it runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Skew {
    /// Seconds ahead (positive) or behind (negative) of the real clock when the node starts.
    pub offset_s: i64,
    /// How fast the node's clock runs: 1.001 gains a second every 1000 s.
    pub rate: f64,
}

impl Skew {
    /// The `FAKETIME` value: a relative offset in seconds and a speed, such as
    /// `-10800 x1.001`.
    pub fn faketime(&self) -> String {
        format!("{:+} x{}", self.offset_s, self.rate)
    }
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.offset_s < 0 { '-' } else { '+' };
        let s = self.offset_s.unsigned_abs();
        if s.is_multiple_of(3600) {
            write!(f, "{sign}{} h", s / 3600)?;
        } else {
            write!(f, "{sign}{s} s")?;
        }
        write!(f, " drifting ×{}", self.rate)
    }
}

/// One skewed node, as the report lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeSkew {
    /// The node's slot (0-based, as in the kill log).
    pub node: usize,
    /// Its clock's offset at start, in seconds.
    pub offset_s: i64,
    /// Its clock's speed.
    pub rate: f64,
    /// The `FAKETIME` value the node ran with.
    pub faketime: String,
}

/// The skews of a run: which nodes, how, and the libfaketime that injects them.
#[derive(Debug, Clone, Default)]
pub struct SkewPlan {
    /// libfaketime's shared object (unused when no node is skewed).
    pub library: PathBuf,
    /// Each skewed node's slot and clock.
    pub nodes: Vec<(usize, Skew)>,
}

impl SkewPlan {
    /// The first `n` nodes skewed by [`PATTERN`] (repeating it past its end), through
    /// `library`.
    pub fn first(n: usize, library: PathBuf) -> Self {
        let nodes = (0..n).map(|i| (i, PATTERN[i % PATTERN.len()])).collect();
        Self { library, nodes }
    }

    /// The environment that skews node `index`'s clock; empty for an unskewed node.
    pub fn env(&self, index: usize) -> Vec<(String, String)> {
        let Some((_, skew)) = self.nodes.iter().find(|(i, _)| *i == index) else {
            return Vec::new();
        };
        vec![
            (
                "LD_PRELOAD".to_owned(),
                self.library.to_string_lossy().into_owned(),
            ),
            ("FAKETIME".to_owned(), skew.faketime()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".to_owned(), "1".to_owned()),
        ]
    }

    /// The skewed nodes, for the report.
    pub fn report(&self) -> Vec<NodeSkew> {
        self.nodes
            .iter()
            .map(|(node, skew)| NodeSkew {
                node: *node,
                offset_s: skew.offset_s,
                rate: skew.rate,
                faketime: skew.faketime(),
            })
            .collect()
    }
}

/// libfaketime's shared object: `explicit` if given and present, else the first of
/// [`LIBFAKETIME_PATHS`] that exists.
pub fn find_libfaketime(explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => path.is_file().then(|| path.to_path_buf()),
        None => LIBFAKETIME_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_spreads_over_the_first_nodes_and_names_faketime_values() {
        let plan = SkewPlan::first(2, PathBuf::from("/lib/f.so"));
        assert_eq!(plan.nodes.len(), 2);
        assert_eq!(plan.nodes[0].1.faketime(), "-10800 x1.001");
        assert_eq!(plan.nodes[1].1.faketime(), "+18000 x0.999");
        assert_eq!(plan.nodes[0].1.to_string(), "-3 h drifting ×1.001");
        let env = plan.env(1);
        assert!(env.contains(&("LD_PRELOAD".to_owned(), "/lib/f.so".to_owned())));
        assert!(env.contains(&("FAKETIME".to_owned(), "+18000 x0.999".to_owned())));
        assert!(plan.env(2).is_empty());
        assert_eq!(SkewPlan::first(5, PathBuf::new()).nodes[4].1, PATTERN[0]);
    }
}
