//! One `idem bench` invocation: find or start the server, open the accounts, drive the
//! load (once, or once per client count for a sweep), run the SQL baseline, clean up.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::args::{BenchArgs, Kind, Mix, NEW_API_KEY};
use crate::baseline;
use crate::client::Target;
use crate::error::{BenchError, Result};
use crate::load::{drive, Pace};
use crate::payments::Workload;
use crate::report::{Report, Summary, SweepPoint, SweepReport};
use crate::server::{create_api_key, Server};
use idem_sql_admin::{unique_name, Engine, ScratchDatabase};

/// Runs `idem bench` as `args` say. `--spawn` starts `--idem-bin`, or else `default_bin`:
/// the `idem` binary passes its own path.
///
/// # Errors
/// Bad options, a server that cannot be reached or started, accounts that cannot be
/// opened, or a database the baseline cannot use. Unexpected answers to the load are not
/// errors here: they are counted in the report.
pub async fn run(args: &BenchArgs, default_bin: &Path) -> Result<Summary> {
    if let Some(url) = &args.broker {
        return crate::broker::run(args, url, default_bin).await;
    }
    if args.clients == 0 {
        return Err(BenchError::InvalidArgument {
            what: "--clients",
            reason: "must be at least 1".into(),
        });
    }
    if args.sweep.contains(&0) {
        return Err(BenchError::InvalidArgument {
            what: "--sweep",
            reason: "client counts must be at least 1".into(),
        });
    }
    let (target, label, server, fresh) = if args.spawn {
        let (database, engine, fresh) =
            spawned_database(args, "--spawn needs a database", "idem_bench_serve").await?;
        let url = fresh.as_ref().map_or(database, ScratchDatabase::url);
        let idem_bin = args.idem_bin.as_deref().unwrap_or(default_bin);
        let (mut serve_args, mut headers) = (args.serve_args.clone(), args.headers.clone());
        let started = async {
            match args.api_key.as_deref() {
                Some(NEW_API_KEY) => {
                    let key = create_api_key(idem_bin, url).await?;
                    serve_args.extend(["--auth".to_owned(), "api-keys".to_owned()]);
                    headers.push(bearer(&key));
                }
                Some(key) => headers.push(bearer(key)),
                None => {}
            }
            Server::spawn(idem_bin, url, &serve_args).await
        };
        let server = match started.await {
            Ok(server) => server,
            Err(e) => {
                if let Some(fresh) = fresh {
                    let _ = fresh.drop_database().await;
                }
                return Err(e);
            }
        };
        let headers = Target::resolve(&format!("http://{}", server.addr), &headers).await?;
        (
            headers,
            format!("spawned idem serve on {}", engine.name()),
            Some(server),
            fresh,
        )
    } else {
        let url = args
            .url
            .as_deref()
            .ok_or_else(|| BenchError::InvalidArgument {
                what: "--url",
                reason: "give --url of a running server, or --spawn".into(),
            })?;
        let mut headers = args.headers.clone();
        match args.api_key.as_deref() {
            Some(NEW_API_KEY) => {
                return Err(BenchError::InvalidArgument {
                    what: "--api-key",
                    reason: "`new` creates a key for a spawned server: add --spawn".into(),
                })
            }
            Some(key) => headers.push(bearer(key)),
            None => {}
        }
        (
            Target::resolve(url, &headers).await?,
            url.to_owned(),
            None,
            None,
        )
    };

    let result = measure(args, &target, &label).await;

    // Stopped before the baselines: its pool's connections would count against the
    // database's limit beside the baseline's own.
    if let Some(server) = server {
        server.stop().await;
    }
    if let Some(fresh) = fresh {
        fresh.drop_database().await?;
    }
    let mut summary = result?;
    if let Summary::Run(report) = &mut summary {
        baselines(args, report).await?;
    }
    Ok(summary)
}

/// Runs the SQL baselines asked for, with the load's clients, and adds them and their
/// ratios to `report`.
async fn baselines(args: &BenchArgs, report: &mut Report) -> Result<()> {
    let pace = Pace {
        clients: args.clients,
        rate: None,
        duration: args.duration,
        requests: args.requests,
    };
    let shapes = [
        (args.baseline_sql, baseline::Shape::Transaction),
        (args.baseline_statement, baseline::Shape::Statement),
    ];
    for shape in shapes
        .into_iter()
        .filter_map(|(asked, shape)| asked.then_some(shape))
    {
        let database = args
            .database
            .as_deref()
            .ok_or_else(|| BenchError::InvalidArgument {
                what: "--database",
                reason: "a SQL baseline needs a database".into(),
            })?;
        let sql = baseline::run(
            database,
            shape,
            args.accounts,
            args.accounts_skew,
            pace,
            args.quiet,
        )
        .await?;
        let fresh_rps = report.kinds.get(Kind::Fresh.name()).map_or(0.0, |f| f.rps);
        let ratio = (sql.figures.rps > 0.0).then(|| fresh_rps / sql.figures.rps);
        match shape {
            baseline::Shape::Transaction => {
                report.fresh_vs_sql = ratio;
                report.baseline_sql = Some(sql);
            }
            baseline::Shape::Statement => {
                report.fresh_vs_statement = ratio;
                report.baseline_statement = Some(sql);
            }
        }
    }
    Ok(())
}

/// The header that presents `key`.
fn bearer(key: &str) -> (String, String) {
    ("authorization".to_owned(), format!("Bearer {key}"))
}

async fn measure(args: &BenchArgs, target: &Target, label: &str) -> Result<Summary> {
    if !args.sweep.is_empty() {
        let sweep = sweep(args, target, label).await?;
        if let Some(path) = &args.plot {
            crate::plot::draw(&sweep, path)?;
        }
        return Ok(Summary::Sweep(sweep));
    }
    let pace = Pace {
        clients: args.clients,
        rate: args.rate,
        duration: args.duration,
        requests: args.requests,
    };
    let report = http_load(args, target, label, pace, args.mix).await?;
    Ok(Summary::Run(Box::new(report)))
}

async fn http_load(
    args: &BenchArgs,
    target: &Target,
    label: &str,
    pace: Pace,
    mix: Mix,
) -> Result<Report> {
    let run_id = unique_name("b");
    let workload = Workload::open(
        target,
        &run_id,
        args.accounts,
        pace.clients,
        mix,
        args.accounts_skew,
    )
    .await?;
    let clients = (0..pace.clients)
        .map(|i| workload.client(target, i))
        .collect();
    let (tally, elapsed) = drive(pace, "idem serve", args.quiet, clients).await;
    Ok(Report {
        target: label.to_owned(),
        clients: pace.clients,
        accounts_skew: args.accounts_skew.to_string(),
        rate: pace.rate,
        elapsed_s: elapsed.as_secs_f64(),
        total: tally.total().figures(elapsed),
        kinds: tally.figures(elapsed),
        errors: tally.errors,
        baseline_sql: None,
        fresh_vs_sql: None,
        baseline_statement: None,
        fresh_vs_statement: None,
    })
}

async fn sweep(args: &BenchArgs, target: &Target, label: &str) -> Result<SweepReport> {
    let mut points = Vec::with_capacity(args.sweep.len());
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for &clients in &args.sweep {
        let pace = Pace {
            clients,
            rate: None,
            duration: args.duration,
            requests: args.requests,
        };
        let mut figures = [Default::default(); 2];
        for (slot, kind) in [Kind::Fresh, Kind::Replay].into_iter().enumerate() {
            let report = http_load(args, target, label, pace, Mix::only(kind)).await?;
            figures[slot] = report.kinds.get(kind.name()).copied().unwrap_or_default();
            for (cause, n) in report.errors {
                *errors
                    .entry(format!("{clients} clients, {cause}"))
                    .or_default() += n;
            }
            // Let the server settle (WAL checkpoints, connection churn) between loads.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        points.push(SweepPoint {
            clients,
            fresh: figures[0],
            replay: figures[1],
        });
    }
    Ok(SweepReport {
        target: label.to_owned(),
        duration_s: args.duration.as_secs_f64(),
        points,
        errors,
    })
}

/// [`run`] on a runtime of its own, for the `idem` binary's synchronous `main`.
///
/// # Errors
/// As [`run`], or the runtime could not be built.
pub fn run_blocking(args: &BenchArgs, default_bin: &Path) -> Result<Summary> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args, default_bin))
}

/// The database `--spawn` (or `--broker`) starts its node on: `--database`, its engine, and
/// with `--fresh-database` a scratch database of its own named after `prefix`, for the
/// caller to drop. `missing` says why `--database` is needed when it is absent.
pub(crate) async fn spawned_database<'a>(
    args: &'a BenchArgs,
    missing: &str,
    prefix: &str,
) -> Result<(&'a str, Engine, Option<ScratchDatabase>)> {
    let database = args
        .database
        .as_deref()
        .ok_or_else(|| BenchError::InvalidArgument {
            what: "--database",
            reason: missing.into(),
        })?;
    let engine = Engine::of(database).map_err(|e| BenchError::InvalidArgument {
        what: "--database",
        reason: e.to_string(),
    })?;
    let fresh = if args.fresh_database {
        Some(ScratchDatabase::create(database, prefix).await?)
    } else {
        None
    };
    Ok((database, engine, fresh))
}
