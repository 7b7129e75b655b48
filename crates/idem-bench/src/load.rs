//! The load driver: a fixed number of clients, closed-loop (each sends its next request when
//! the last is answered) or at a fixed rate (each sends on a schedule, and latency counts
//! from the scheduled time so a slow server cannot hide its queue), for a duration or a
//! request count, with a progress bar.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::stats::Tally;

/// How a load is paced and when it stops.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per second over all clients; `None`: as fast as answers come.
    pub rate: Option<f64>,
    /// How long to run when `requests` is `None`.
    pub duration: Duration,
    /// Stop after this many requests instead.
    pub requests: Option<u64>,
}

/// What one request was, and what went wrong with its answer, if anything.
#[derive(Debug)]
pub struct Step {
    /// The kind's name in the report.
    pub kind: &'static str,
    /// The cause, when the answer was not the expected one.
    pub error: Option<String>,
}

/// One simulated client: sends one request per call and judges the answer.
pub trait LoadClient: Send + 'static {
    /// Sends the next request and waits for its answer.
    fn step(&mut self) -> impl Future<Output = Step> + Send;
}

/// Runs `clients` under `pace` and returns their merged tally and the time it took.
pub async fn drive<C: LoadClient>(
    pace: Pace,
    label: &str,
    quiet: bool,
    clients: Vec<C>,
) -> (Tally, Duration) {
    let start = Instant::now();
    let deadline = pace.requests.is_none().then(|| start + pace.duration);
    let budget = Arc::new(AtomicU64::new(pace.requests.unwrap_or(u64::MAX)));
    let answered = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let n = clients.len().max(1);
    let progress = progress_bar(pace, label, quiet);

    let mut tasks = Vec::with_capacity(n);
    for (index, mut client) in clients.into_iter().enumerate() {
        let (budget, answered, failed) = (budget.clone(), answered.clone(), failed.clone());
        // At a fixed rate, client i sends at start + (i + k·n) / rate: the clients take turns.
        let schedule = pace.rate.filter(|r| *r > 0.0).map(|rate| {
            (
                Duration::from_secs_f64(index as f64 / rate),
                Duration::from_secs_f64(n as f64 / rate),
            )
        });
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut k: u32 = 0;
            loop {
                let scheduled = schedule.map(|(offset, every)| start + offset + every * k);
                if let Some(at) = scheduled {
                    if deadline.is_some_and(|d| at >= d) {
                        break;
                    }
                    tokio::time::sleep_until(at).await;
                } else if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let sent = scheduled.unwrap_or_else(Instant::now);
                let step = client.step().await;
                if step.error.is_some() {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tally.record(step.kind, sent.elapsed(), step.error);
                answered.fetch_add(1, Ordering::Relaxed);
                k = k.saturating_add(1);
            }
            tally
        }));
    }

    let ticker = {
        let (progress, answered, failed) = (progress.clone(), answered.clone(), failed.clone());
        let by_count = pace.requests.is_some();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(100));
            loop {
                every.tick().await;
                let done = answered.load(Ordering::Relaxed);
                let position = if by_count {
                    done
                } else {
                    start.elapsed().as_millis() as u64
                };
                progress.set_position(position);
                progress.set_message(format!(
                    "{done} answered, {} errors",
                    failed.load(Ordering::Relaxed)
                ));
            }
        })
    };

    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(client_tally) => tally.merge(&client_tally),
            Err(join) => tally.record(
                "internal",
                Duration::ZERO,
                Some(format!("client task: {join}")),
            ),
        }
    }
    let elapsed = start.elapsed();
    ticker.abort();
    progress.finish_and_clear();
    (tally, elapsed)
}

fn progress_bar(pace: Pace, label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let length = pace.requests.unwrap_or(pace.duration.as_millis() as u64);
    let bar = ProgressBar::new(length);
    let template = format!("{label:>14} [{{elapsed_precise}}] {{wide_bar}} {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u64);

    impl LoadClient for Counter {
        async fn step(&mut self) -> Step {
            self.0 += 1;
            Step {
                kind: "tick",
                error: self.0.is_multiple_of(10).then(|| "tenth".to_owned()),
            }
        }
    }

    #[tokio::test]
    async fn request_budget_is_shared_by_all_clients() {
        let pace = Pace {
            clients: 4,
            rate: None,
            duration: Duration::from_secs(60),
            requests: Some(100),
        };
        let clients = (0..4).map(|_| Counter(0)).collect();
        let (tally, _) = drive(pace, "test", true, clients).await;
        assert_eq!(tally.total().count(), 100);
        let errors: u64 = tally.errors.values().sum();
        assert!(
            (7..=10).contains(&errors),
            "every client's tenth request errs: {errors}"
        );
    }

    #[tokio::test]
    async fn fixed_rate_sends_on_schedule() {
        let pace = Pace {
            clients: 2,
            rate: Some(200.0),
            duration: Duration::from_millis(250),
            requests: None,
        };
        let clients = (0..2).map(|_| Counter(0)).collect();
        let (tally, _) = drive(pace, "test", true, clients).await;
        // 200/s for 0.25 s: 50 scheduled sends, none past the deadline.
        assert_eq!(tally.total().count(), 50);
    }
}
