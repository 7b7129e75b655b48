//! Who pays whom: every payment's payer and payee drawn uniformly, or a hot-account mix in
//! which a share of the payments go to a few payees (many payers, few merchants), the
//! contention a batcher of payments is for. idem's load and both SQL baselines draw from
//! the same [`Skew`], so their rates compare.

use std::fmt;
use std::str::FromStr;

use rand::Rng;

use crate::error::BenchError;

/// The payees of `hot`, when it names no count.
pub const HOT_PAYEES: usize = 10;
/// The share of payments that go to them, when it names none.
pub const HOT_SHARE: f64 = 0.8;

/// How payments pick their accounts: `uniform`, or `hot[:PAYEES[:SHARE]]`, such as
/// `hot` (= `hot:10:0.8`: 80 % of payments go to the first 10 accounts, the rest to the
/// other accounts uniformly).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Skew {
    /// Payer and payee uniform over all accounts.
    Uniform,
    /// `share` of the payments go to one of the first `payees` accounts, uniformly among
    /// them; the rest go to one of the other accounts. The payer is uniform over every
    /// account but the payee.
    Hot {
        /// How many accounts are hot payees.
        payees: usize,
        /// The share of payments that go to them, in (0, 1].
        share: f64,
    },
}

impl Skew {
    /// Draws `(payer, payee)`, two different indices in `0..accounts` (`accounts` ≥ 2).
    pub fn pick(&self, rng: &mut impl Rng, accounts: usize) -> (usize, usize) {
        let n = accounts.max(2);
        let payee = match *self {
            Skew::Uniform => rng.gen_range(0..n),
            Skew::Hot { payees, share } => {
                // Every account hot, or none cold: the draw is uniform whatever the share.
                let hot = payees.clamp(1, n);
                if hot == n || rng.gen_bool(share.clamp(0.0, 1.0)) {
                    rng.gen_range(0..hot)
                } else {
                    rng.gen_range(hot..n)
                }
            }
        };
        let payer = (payee + rng.gen_range(1..n)) % n;
        (payer, payee)
    }
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skew::Uniform => write!(f, "uniform"),
            Skew::Hot { payees, share } => write!(f, "hot:{payees}:{share}"),
        }
    }
}

impl FromStr for Skew {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: String| BenchError::InvalidArgument {
            what: "--accounts-skew",
            reason,
        };
        let mut parts = s.trim().split(':').map(str::trim);
        let skew = match parts.next() {
            Some("uniform") => Skew::Uniform,
            Some("hot") => {
                let payees = match parts.next() {
                    Some(p) => p
                        .parse::<usize>()
                        .ok()
                        .filter(|p| *p >= 1)
                        .ok_or_else(|| invalid(format!("`{p}` is not a count of payees ≥ 1")))?,
                    None => HOT_PAYEES,
                };
                let share = match parts.next() {
                    Some(x) => x
                        .parse::<f64>()
                        .ok()
                        .filter(|x| *x > 0.0 && *x <= 1.0)
                        .ok_or_else(|| invalid(format!("`{x}` is not a share in (0, 1]")))?,
                    None => HOT_SHARE,
                };
                Skew::Hot { payees, share }
            }
            _ => {
                return Err(invalid(format!(
                    "`{s}` is not `uniform` or `hot[:PAYEES[:SHARE]]`"
                )))
            }
        };
        if let Some(extra) = parts.next() {
            return Err(invalid(format!("unexpected `:{extra}` in `{s}`")));
        }
        Ok(skew)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn skew_parses_with_defaults_and_refuses_nonsense() {
        assert_eq!("uniform".parse::<Skew>().expect("uniform"), Skew::Uniform);
        assert_eq!(
            "hot".parse::<Skew>().expect("hot"),
            Skew::Hot {
                payees: 10,
                share: 0.8
            }
        );
        assert_eq!(
            " hot:3 ".parse::<Skew>().expect("hot:3"),
            Skew::Hot {
                payees: 3,
                share: 0.8
            }
        );
        assert_eq!(
            "hot:20:0.5".parse::<Skew>().expect("hot:20:0.5"),
            Skew::Hot {
                payees: 20,
                share: 0.5
            }
        );
        for bad in [
            "",
            "warm",
            "hot:0",
            "hot:x",
            "hot:10:0",
            "hot:10:1.5",
            "hot:10:0.8:1",
            "uniform:2",
        ] {
            assert!(bad.parse::<Skew>().is_err(), "`{bad}` is refused");
        }
        let hot: Skew = "hot:7:0.25".parse().expect("valid");
        assert_eq!(hot.to_string().parse::<Skew>().expect("round trip"), hot);
    }

    #[test]
    fn hot_pick_sends_the_share_to_the_hot_payees_and_spreads_the_rest() {
        let skew = Skew::Hot {
            payees: 10,
            share: 0.8,
        };
        let mut rng = StdRng::seed_from_u64(7);
        let (accounts, draws) = (1000, 100_000);
        let mut to_payee = vec![0u32; accounts];
        let mut from_payer = vec![0u32; accounts];
        for _ in 0..draws {
            let (payer, payee) = skew.pick(&mut rng, accounts);
            assert_ne!(payer, payee, "nobody pays themselves");
            assert!(payer < accounts && payee < accounts);
            to_payee[payee] += 1;
            from_payer[payer] += 1;
        }
        let hot: u32 = to_payee[..10].iter().sum();
        let share = f64::from(hot) / f64::from(draws);
        assert!((0.79..0.81).contains(&share), "hot share {share}");
        // Each hot payee about 8 000 payments, each cold one about 20.
        assert!(to_payee[..10].iter().all(|n| (7_400..8_600).contains(n)));
        let cold_max = to_payee[10..].iter().max().copied().unwrap_or(0);
        assert!(
            cold_max < 60,
            "the rest is spread: busiest cold payee {cold_max}"
        );
        assert!(to_payee[10..].iter().filter(|n| **n == 0).count() < 5);
        // Payers stay uniform: about 100 each.
        assert!(from_payer.iter().all(|n| (40..180).contains(n)));
    }

    #[test]
    fn uniform_pick_spreads_payees_and_hot_degenerates_safely() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut to_payee = [0u32; 10];
        for _ in 0..50_000 {
            let (payer, payee) = Skew::Uniform.pick(&mut rng, 10);
            assert_ne!(payer, payee);
            to_payee[payee] += 1;
        }
        assert!(to_payee.iter().all(|n| (4_500..5_500).contains(n)));
        // More hot payees than accounts, and two accounts only: still two distinct indices.
        let all_hot = Skew::Hot {
            payees: 50,
            share: 0.8,
        };
        for _ in 0..1_000 {
            let (payer, payee) = all_hot.pick(&mut rng, 2);
            assert_ne!(payer, payee);
            assert!(payer < 2 && payee < 2);
        }
    }
}
