//! Running `idem proxy` as a real process for the black-box tests: started on a free port in
//! a directory of its own, killed when dropped.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use idem_http::testing::{unique_key, BODY_LIMIT_BYTES};

/// A child process killed when dropped, so a failing test leaves nothing running.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads `child`'s stdout until a line starting with `prefix`, and returns the rest of it.
pub fn announced(child: &mut Child, prefix: &str) -> String {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let read = lines.read_line(&mut line).expect("read the child's stdout");
        assert!(read > 0, "the child exited before printing {prefix:?}");
        if let Some(rest) = line.trim().strip_prefix(prefix) {
            let rest = rest.to_owned();
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || {
                let _ = lines.read_to_end(&mut Vec::new());
            });
            return rest;
        }
    }
}

/// `idem proxy` on a free port in front of `upstream`, with `extra` options, started in
/// `dir` (where its default `./idem-data/` goes).
pub fn spawn_proxy_in(dir: &Path, upstream: &str, extra: &[String]) -> (Process, String) {
    let mut child = proxy_command(dir, upstream, extra)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start idem proxy");
    let url = announced(&mut child, "listening on ");
    (Process(child), url)
}

/// The command [`spawn_proxy_in`] runs, for a test that wants to change its environment:
/// stdout piped, no store or log variables inherited.
pub fn proxy_command(dir: &Path, upstream: &str, extra: &[String]) -> Command {
    let body_limit = BODY_LIMIT_BYTES.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_idem"));
    command
        .current_dir(dir)
        .args(["proxy", "--upstream", upstream, "--listen", "127.0.0.1:0"])
        .args(["--body-limit-bytes", &body_limit])
        .args(extra)
        .env_remove("IDEM_DATABASE")
        .env_remove("IDEM_REDIS")
        .env_remove("IDEM_LOG_FORMAT")
        .stdout(Stdio::piped());
    command
}

/// A directory of its own for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique_key("idem_proxy_test"));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
