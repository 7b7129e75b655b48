//! A database server of the run's own (`--own-database-server`), never the machine's shared
//! one, since the run restarts it: a PostgreSQL cluster made by `initdb`, or a MariaDB
//! server made by `mariadb-install-db`, in a temporary dir, on a free port of 127.0.0.1.
//! Dropping it kills the server and deletes the dir. idem's tests that restart a server use
//! it too.
//!
//! PostgreSQL refuses to run as root: as root, `initdb` and `pg_ctl` run as the user
//! `postgres` (`runuser -u postgres --`) and the dir is given to that user. MariaDB runs as
//! root with `--user=root`. Both ignore the machine's config files (`--no-defaults`, and a
//! PostgreSQL cluster only reads its own dir).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::Connection;

use crate::Error;

/// The longest a server may take to be created, to start or to stop.
const STEP_MAX: Duration = Duration::from_secs(60);

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// PostgreSQL (`initdb`, `pg_ctl`).
    Postgres,
    /// MariaDB or MySQL (`mariadb-install-db`, `mariadbd`).
    Mysql,
}

/// One private server, killed and deleted when dropped.
#[derive(Debug)]
pub struct PrivateServer {
    server: Server,
    dir: PathBuf,
    port: u16,
    admin_url: String,
}

#[derive(Debug)]
enum Server {
    Postgres {
        bin: PathBuf,
        /// Run the tools as the user `postgres` (the caller is root).
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

/// PostgreSQL's binaries, and as root the user and tool to run them as another user.
fn postgres_bin() -> Result<PathBuf, String> {
    let bin = find_postgres_bin().ok_or_else(|| {
        "no PostgreSQL server binaries (initdb, pg_ctl) for a private server".to_owned()
    })?;
    if running_as_root() && (find_program("runuser").is_none() || !user_exists("postgres")) {
        return Err(
            "running as root, and PostgreSQL refuses root: the user `postgres` and `runuser` are needed"
                .to_owned(),
        );
    }
    Ok(bin)
}

/// `mariadb-install-db` and `mariadbd` (or MySQL's names for them).
fn mariadb_programs() -> Result<(PathBuf, PathBuf), String> {
    let install = find_program("mariadb-install-db").or_else(|| find_program("mysql_install_db"));
    let server = find_program("mariadbd").or_else(|| find_program("mysqld"));
    match (install, server) {
        (Some(install), Some(server)) => Ok((install, server)),
        _ => Err(
            "no MariaDB server binaries (mariadb-install-db, mariadbd) for a private server"
                .to_owned(),
        ),
    }
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
fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| Error::Io("finding a free port for the database server".into(), e))
}

/// The last lines of a log file, for a failure message.
fn tail(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn failed(message: String) -> Error {
    Error::Server(message)
}

/// Runs `command` to its end with stdin closed and its output appended to `log`; kills it
/// after `max`. Blocking.
fn run_blocking(mut command: Command, log: &Path, what: &str, max: Duration) -> Result<(), Error> {
    let open = |e| Error::Io(format!("opening {}", log.display()), e);
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(open)?;
    let err = out.try_clone().map_err(open)?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    let mut child = command
        .spawn()
        .map_err(|e| Error::Io(format!("{what}: cannot start"), e))?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(failed(format!(
                    "{what} failed ({status}); {}:\n{}",
                    log.display(),
                    tail(log)
                )))
            }
            Ok(None) if started.elapsed() > max => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(failed(format!(
                    "{what} did not end within {max:?}; {}:\n{}",
                    log.display(),
                    tail(log)
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Error::Io(format!("{what}: wait"), e)),
        }
    }
}

/// [`run_blocking`] off the async runtime's threads.
async fn run(command: Command, log: PathBuf, what: &str, max: Duration) -> Result<(), Error> {
    let what = what.to_owned();
    tokio::task::spawn_blocking(move || run_blocking(command, &log, &what, max))
        .await
        .map_err(|e| failed(format!("the task running a server tool failed: {e}")))?
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

impl PrivateServer {
    /// Creates and starts a fresh server of `kind`.
    ///
    /// # Errors
    /// [`Error::Missing`] when its programs are not installed (or, as root, PostgreSQL's
    /// user `postgres` or `runuser`); [`Error::Server`] or [`Error::Io`] when creating or
    /// starting it fails.
    pub async fn start(kind: ServerKind) -> Result<Self, Error> {
        match kind {
            ServerKind::Postgres => Self::postgres().await,
            ServerKind::Mysql => Self::mariadb().await,
        }
    }

    /// Why a server of `kind` cannot run on this machine (a program or user missing), if it
    /// cannot.
    pub fn missing(kind: ServerKind) -> Option<String> {
        match kind {
            ServerKind::Postgres => postgres_bin().err(),
            ServerKind::Mysql => mariadb_programs().err(),
        }
    }

    async fn postgres() -> Result<Self, Error> {
        let bin = postgres_bin().map_err(Error::Missing)?;
        let as_postgres = running_as_root();
        let port = free_port()?;
        let server = Self::in_new_dir(
            "idem_pg",
            Server::Postgres { bin, as_postgres },
            port,
            format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        )?;
        let log = server.dir.join("tools.log");
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("-R").arg("postgres:").arg(&server.dir);
            run(
                chown,
                log.clone(),
                "chown the server's dir to postgres",
                STEP_MAX,
            )
            .await?;
        }
        let mut initdb = server.pg_tool("initdb")?;
        initdb
            .arg("-D")
            .arg(server.dir.join("data"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale"])
            // Only the cluster's creation skips fsync; the server runs as configured.
            .arg("--no-sync");
        run(initdb, log.clone(), "initdb", STEP_MAX).await?;
        let options = format!(
            "-p {port} -k '{}' -c listen_addresses=127.0.0.1 -c max_connections=300",
            server.dir.display()
        );
        let mut start = server.pg_ctl()?;
        start.arg("-o").arg(options).arg("start");
        run(start, log, "pg_ctl start", STEP_MAX).await?;
        Ok(server)
    }

    async fn mariadb() -> Result<Self, Error> {
        let (install, mariadbd) = mariadb_programs().map_err(Error::Missing)?;
        let as_root = running_as_root();
        let port = free_port()?;
        let mut server = Self::in_new_dir(
            "idem_mariadb",
            Server::MariaDb {
                mariadbd,
                as_root,
                child: None,
            },
            port,
            format!("mysql://root@127.0.0.1:{port}/"),
        )?;
        let mut command = Command::new(install);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", server.dir.join("data").display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .current_dir(&server.dir);
        if as_root {
            command.arg("--user=root");
        }
        let log = server.dir.join("tools.log");
        run(command, log, "mariadb-install-db", STEP_MAX).await?;
        server.start_mariadb().await?;
        Ok(server)
    }

    /// The server's description with a fresh temporary dir of its own.
    fn in_new_dir(
        prefix: &str,
        server: Server,
        port: u16,
        admin_url: String,
    ) -> Result<Self, Error> {
        let dir = std::env::temp_dir().join(idem_sql_admin::unique_name(prefix));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Io(format!("creating {}", dir.display()), e))?;
        Ok(Self {
            server,
            dir,
            port,
            admin_url,
        })
    }

    /// `postgres` or `mariadb`.
    pub fn engine(&self) -> &'static str {
        match self.server {
            Server::Postgres { .. } => "postgres",
            Server::MariaDb { .. } => "mariadb",
        }
    }

    /// The URL of the server as its superuser, on its maintenance database (PostgreSQL's
    /// `postgres`) or none (MariaDB): for creating databases on it.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Restarts the server the way its operator would, and returns once it accepts
    /// connections again: PostgreSQL by `pg_ctl restart -m fast` (what `pg_ctlcluster …
    /// restart` runs: sessions are ended with `57P01 admin_shutdown`); MariaDB by SIGTERM
    /// (what `systemctl restart` sends), waiting for it to exit, and starting it again on the
    /// same port and datadir.
    ///
    /// # Errors
    /// [`Error::Server`] when it does not stop or start in time.
    pub async fn restart(&mut self) -> Result<(), Error> {
        if let Server::Postgres { .. } = self.server {
            let mut restart = self.pg_ctl()?;
            restart.args(["-m", "fast", "restart"]);
            return run(
                restart,
                self.dir.join("tools.log"),
                "pg_ctl restart",
                STEP_MAX,
            )
            .await;
        }
        if let Server::MariaDb { child, .. } = &mut self.server {
            let Some(mut child) = child.take() else {
                return self.start_mariadb().await;
            };
            signal(child.id(), "TERM");
            let started = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if started.elapsed() > STEP_MAX => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(failed(format!(
                            "mariadbd did not stop within {STEP_MAX:?} of SIGTERM"
                        )));
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(e) => return Err(Error::Io("waiting for mariadbd".into(), e)),
                }
            }
            self.start_mariadb().await?;
        }
        Ok(())
    }

    /// `tool` of the PostgreSQL binaries, as the user `postgres` when the caller is root.
    fn pg_tool(&self, tool: &str) -> Result<Command, Error> {
        let Server::Postgres { bin, as_postgres } = &self.server else {
            return Err(failed(format!("{tool} is a PostgreSQL tool")));
        };
        let mut command = if *as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(bin.join(tool));
            command
        } else {
            Command::new(bin.join(tool))
        };
        // The user `postgres` may not be allowed into the caller's working dir.
        command.current_dir(&self.dir).env_remove("PGDATA");
        Ok(command)
    }

    /// `pg_ctl -D DATA -l LOG -w -t 60`, a subcommand to add.
    fn pg_ctl(&self) -> Result<Command, Error> {
        let mut command = self.pg_tool("pg_ctl")?;
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("postgres.log"))
            .args(["-w", "-t", &STEP_MAX.as_secs().to_string()]);
        Ok(command)
    }

    /// Starts `mariadbd` and waits until it accepts connections.
    async fn start_mariadb(&mut self) -> Result<(), Error> {
        let Server::MariaDb {
            mariadbd,
            as_root,
            child,
        } = &mut self.server
        else {
            return Err(failed("mariadbd on a PostgreSQL server".into()));
        };
        let out_path = self.dir.join("mariadbd.out");
        let open = |e| Error::Io(format!("opening {}", out_path.display()), e);
        let out = File::options()
            .create(true)
            .append(true)
            .open(&out_path)
            .map_err(open)?;
        let err = out.try_clone().map_err(open)?;
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
        let mut started = command
            .spawn()
            .map_err(|e| Error::Io("starting mariadbd".into(), e))?;
        let since = Instant::now();
        loop {
            if let Ok(Some(status)) = started.try_wait() {
                return Err(failed(format!(
                    "mariadbd exited ({status}) while starting; mariadbd.err:\n{}",
                    tail(&self.dir.join("mariadbd.err"))
                )));
            }
            let connect = sqlx::MySqlConnection::connect(&self.admin_url);
            if let Ok(Ok(conn)) = tokio::time::timeout(Duration::from_secs(2), connect).await {
                let _ = conn.close().await;
                break;
            }
            if since.elapsed() > STEP_MAX {
                let _ = started.kill();
                let _ = started.wait();
                return Err(failed(format!(
                    "mariadbd did not accept connections within {STEP_MAX:?}; mariadbd.err:\n{}",
                    tail(&self.dir.join("mariadbd.err"))
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        *child = Some(started);
        Ok(())
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Server::Postgres { .. } = self.server {
            if let Ok(mut stop) = self.pg_tool("pg_ctl") {
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
            }
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
