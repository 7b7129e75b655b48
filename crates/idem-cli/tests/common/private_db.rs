//! A database server of the test's own, for tests that stop and start it (never the shared
//! `IDEM_TEST_*` servers): a PostgreSQL cluster made by `initdb`, or a MariaDB server made by
//! `mariadb-install-db`, in a temp dir, on a free port of 127.0.0.1, with one empty database
//! `idem`. Dropping it kills the server and deletes the dir, also when a test panics.
//!
//! Missing binaries skip the test (printed `skipped: …`), or fail it with
//! `IDEM_REQUIRE_BACKENDS=1`, as [`idem_test_support::backend_url`] does for shared servers.
//!
//! PostgreSQL refuses to run as root: as root, `initdb` and `pg_ctl` run as the user
//! `postgres` (`runuser -u postgres --`) and the dir is given to that user. MariaDB runs as
//! root with `--user=root`. Both ignore the machine's config files (`--no-defaults`, and a
//! PostgreSQL cluster only reads its own dir).

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use idem_test_support::{skip as skipped, unique_name};
use sqlx::Connection;

/// The longest a server may take to be created, to start or to stop.
const STEP_MAX: Duration = Duration::from_secs(60);

/// The name of the database the server is given for the test.
const DATABASE: &str = "idem";

/// One private server, killed and deleted when dropped.
pub struct PrivateDb {
    server: Server,
    dir: PathBuf,
    port: u16,
    /// The URL of the database `idem` on it, for `idem serve --database`.
    pub url: String,
}

enum Server {
    Postgres {
        bin: PathBuf,
        /// Run the tools as the user `postgres` (the test runs as root).
        as_postgres: bool,
    },
    MariaDb {
        mariadbd: PathBuf,
        as_root: bool,
        child: Option<Child>,
    },
}

/// An executable `name` on `PATH` or in the usual system dirs.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|file| file.is_file())
}

/// The newest `/usr/lib/postgresql/N/bin` holding `initdb` and `pg_ctl`, else the dir of
/// `pg_ctl` on `PATH`.
fn find_postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let pg_ctl = find_program("pg_ctl")?;
    let bin = pg_ctl.parent()?.to_path_buf();
    bin.join("initdb").is_file().then_some(bin)
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn user_exists(user: &str) -> bool {
    Command::new("id")
        .arg("-u")
        .arg(user)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A port of 127.0.0.1 nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// The last lines of a log file, for a failure message.
fn tail(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs `command` to its end with stdin closed and its output appended to `log`; kills it
/// after `max`. Blocking.
fn run_blocking(mut command: Command, log: &Path, what: &str, max: Duration) -> Result<(), String> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("open {}: {e}", log.display()))?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = command
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(format!(
                    "{what} failed ({status}); {}:\n{}",
                    log.display(),
                    tail(log)
                ))
            }
            Ok(None) if started.elapsed() > max => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{what} did not end within {max:?}; {}:\n{}",
                    log.display(),
                    tail(log)
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("{what}: wait: {e}")),
        }
    }
}

/// [`run_blocking`] off the async runtime's threads.
async fn run(command: Command, log: PathBuf, what: String, max: Duration) -> Result<(), String> {
    tokio::task::spawn_blocking(move || run_blocking(command, &log, &what, max))
        .await
        .map_err(|e| format!("run task: {e}"))?
}

/// Sends `signal` (`TERM`, `KILL`) to a process.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl PrivateDb {
    /// A fresh PostgreSQL cluster with trust auth, or `None` (skipped) without its binaries.
    pub async fn postgres() -> Option<PrivateDb> {
        let Some(bin) = find_postgres_bin() else {
            return skipped("no PostgreSQL server binaries (initdb, pg_ctl) for a private cluster");
        };
        let as_postgres = running_as_root();
        if as_postgres && (find_program("runuser").is_none() || !user_exists("postgres")) {
            return skipped(
                "running as root, and PostgreSQL refuses root: the user `postgres` and `runuser` are needed",
            );
        }
        let dir = std::env::temp_dir().join(unique_name("idem_pg"));
        std::fs::create_dir_all(&dir).expect("create the PostgreSQL temp dir");
        let port = free_port();
        let db = PrivateDb {
            server: Server::Postgres { bin, as_postgres },
            url: format!("postgres://postgres@127.0.0.1:{port}/{DATABASE}"),
            dir,
            port,
        };
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres:").arg(&db.dir);
            let log = db.dir.join("tools.log");
            run(
                chown,
                log,
                "chown the temp dir to postgres".into(),
                STEP_MAX,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let data = db.dir.join("data");
        let mut initdb = db.pg_tool("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            // Only the cluster's creation skips fsync; the server runs as configured.
            .arg("--no-sync");
        run(initdb, db.dir.join("tools.log"), "initdb".into(), STEP_MAX)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let options = format!(
            "-p {port} -k '{}' -c listen_addresses=127.0.0.1",
            db.dir.display()
        );
        let mut start = db.pg_ctl();
        start.arg("-o").arg(options).arg("start");
        run(
            start,
            db.dir.join("tools.log"),
            "pg_ctl start".into(),
            STEP_MAX,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        db.create_database().await;
        Some(db)
    }

    /// A fresh MariaDB (or MySQL) server, root without a password, or `None` (skipped)
    /// without its binaries.
    pub async fn mariadb() -> Option<PrivateDb> {
        let install =
            find_program("mariadb-install-db").or_else(|| find_program("mysql_install_db"));
        let server = find_program("mariadbd").or_else(|| find_program("mysqld"));
        let (Some(install), Some(mariadbd)) = (install, server) else {
            return skipped(
                "no MariaDB server binaries (mariadb-install-db, mariadbd) for a private server",
            );
        };
        let as_root = running_as_root();
        let dir = std::env::temp_dir().join(unique_name("idem_mariadb"));
        std::fs::create_dir_all(&dir).expect("create the MariaDB temp dir");
        let port = free_port();
        let mut db = PrivateDb {
            server: Server::MariaDb {
                mariadbd,
                as_root,
                child: None,
            },
            url: format!("mysql://root@127.0.0.1:{port}/{DATABASE}"),
            dir,
            port,
        };
        let mut command = Command::new(install);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", db.dir.join("data").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .current_dir(&db.dir);
        if as_root {
            command.arg("--user=root");
        }
        run(
            command,
            db.dir.join("tools.log"),
            "mariadb-install-db".into(),
            STEP_MAX,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        db.start_mariadb().await;
        db.create_database().await;
        Some(db)
    }

    /// `postgres` or `mariadb`.
    pub fn engine(&self) -> &'static str {
        match self.server {
            Server::Postgres { .. } => "postgres",
            Server::MariaDb { .. } => "mariadb",
        }
    }

    /// Restarts the server the way its operator would, and returns once it accepts
    /// connections again: PostgreSQL by `pg_ctl restart -m fast` (what `pg_ctlcluster …
    /// restart` runs: sessions are ended with `57P01 admin_shutdown`); MariaDB by SIGTERM
    /// (what `systemctl restart` sends), waiting for it to exit, and starting it again on the
    /// same port and datadir.
    pub async fn restart(&mut self) {
        if let Server::Postgres { .. } = self.server {
            let mut restart = self.pg_ctl();
            restart.args(["-m", "fast", "restart"]);
            let log = self.dir.join("tools.log");
            run(restart, log, "pg_ctl restart".into(), STEP_MAX)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            return;
        }
        if let Server::MariaDb { child, .. } = &mut self.server {
            let mut child = child.take().expect("mariadbd is running");
            signal(child.id(), "TERM");
            let started = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() > STEP_MAX => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!("mariadbd did not stop within {STEP_MAX:?} of SIGTERM");
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(e) => panic!("wait for mariadbd: {e}"),
                }
            }
            self.start_mariadb().await;
        }
    }

    /// `tool` of the PostgreSQL binaries, as the user `postgres` when the test is root.
    fn pg_tool(&self, tool: &str) -> Command {
        let Server::Postgres { bin, as_postgres } = &self.server else {
            unreachable!("a PostgreSQL tool for a PostgreSQL server")
        };
        let mut command = if *as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
            command
        } else {
            Command::new(bin.join(tool))
        };
        // The user `postgres` may not be allowed into the test's working dir.
        command.current_dir(&self.dir).env_remove("PGDATA");
        command
    }

    /// `pg_ctl -D DATA -l LOG -w -t 60`, a subcommand to add.
    fn pg_ctl(&self) -> Command {
        let mut command = self.pg_tool("pg_ctl");
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", &STEP_MAX.as_secs().to_string()]);
        command
    }

    /// Starts `mariadbd` and waits until it accepts connections.
    async fn start_mariadb(&mut self) {
        let Server::MariaDb {
            mariadbd,
            as_root,
            child,
        } = &mut self.server
        else {
            unreachable!("starting MariaDB on a MariaDB server")
        };
        let out = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("mariadbd.out"))
            .expect("open the mariadbd output file");
        let err = out.try_clone().expect("open the mariadbd output file");
        let mut command = Command::new(&*mariadbd);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!(
                "--pid-file={}",
                self.dir.join("mariadbd.pid").display()
            ))
            .arg(format!(
                "--log-error={}",
                self.dir.join("mariadbd.err").display()
            ))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .args(["--innodb-buffer-pool-size=64M", "--max-connections=500"])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        if *as_root {
            command.arg("--user=root");
        }
        let mut started = command.spawn().expect("start mariadbd");
        let admin = format!("mysql://root@127.0.0.1:{}/", self.port);
        let since = Instant::now();
        loop {
            if let Ok(Some(status)) = started.try_wait() {
                panic!(
                    "mariadbd exited ({status}) while starting; mariadbd.err:\n{}",
                    tail(&self.dir.join("mariadbd.err"))
                );
            }
            let connect = sqlx::MySqlConnection::connect(&admin);
            if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                let _ = conn.close().await;
                break;
            }
            if since.elapsed() > STEP_MAX {
                let _ = started.kill();
                let _ = started.wait();
                panic!(
                    "mariadbd did not accept connections within {STEP_MAX:?}; mariadbd.err:\n{}",
                    tail(&self.dir.join("mariadbd.err"))
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *child = Some(started);
    }

    /// Creates the database `idem`.
    async fn create_database(&self) {
        let admin = match self.server {
            Server::Postgres { .. } => {
                format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
            }
            Server::MariaDb { .. } => format!("mysql://root@127.0.0.1:{}/", self.port),
        };
        let create = idem_test_support::create_database(&admin, DATABASE);
        tokio::time::timeout(Duration::from_secs(30), create)
            .await
            .expect("create the test database within 30 s")
            .expect("create the test database");
    }
}

impl Drop for PrivateDb {
    fn drop(&mut self) {
        if let Server::Postgres { .. } = self.server {
            let mut stop = self.pg_tool("pg_ctl");
            stop.arg("-D").arg(self.dir.join("data")).args([
                "-m",
                "immediate",
                "-w",
                "-t",
                "20",
                "stop",
            ]);
            let log = self.dir.join("tools.log");
            let _ = run_blocking(stop, &log, "pg_ctl stop", Duration::from_secs(30));
            // Still there (pg_ctl failed or timed out): kill the postmaster by its pid.
            let pid_file = self.dir.join("data").join("postmaster.pid");
            if let Ok(text) = std::fs::read_to_string(pid_file) {
                if let Some(pid) = text.lines().next().and_then(|l| l.trim().parse().ok()) {
                    signal(pid, "KILL");
                }
            }
        }
        if let Server::MariaDb { child, .. } = &mut self.server {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
