//! The end-to-end stories in a real headless Chromium (`tests/browser/stories.mjs`), against
//! the real binary on its embedded default: a fresh data dir, the first administrator
//! bootstrapped as the README says (the one-time password printed at first start), the
//! server on 127.0.0.1 on a free port. The stories run once in English and once in
//! Simplified Chinese; every page they visit is checked (axe-core, no sideways scrolling at
//! 390 px, `<html lang>`) and photographed into `<target dir>/screenshots`. Afterwards the
//! audit chain the stories left is verified with `strongroom verify-audit`.
//!
//! Needs Chromium, Node.js and `tests/browser/node_modules` (`.ci/run` installs them); the
//! test fails, saying so, when one is missing. `REPORT_ONLY=1` lets page-check failures
//! through (they are still printed); a broken story always fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop it loudly

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// The stories of both languages, with a page check on every page, take about two
/// minutes on a 2-core machine; this bounds a hung browser or server.
const STORIES_TIMEOUT: Duration = Duration::from_secs(600);
const HOW_TO_INSTALL: &str =
    "run `.ci/run` once, or by hand: `apt-get install -y chromium nodejs npm` \
     and `npm ci --prefix tests/browser`";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

/// A child process whose output lines are collected as they come.
struct Output {
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Output {
    fn collect(child: &mut Child) -> Output {
        let (tx, lines) = mpsc::channel();
        let streams: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Output {
            lines,
            seen: Vec::new(),
        }
    }

    fn drain(&mut self) -> &[String] {
        self.seen.extend(self.lines.try_iter());
        &self.seen
    }

    fn tail(&mut self, n: usize) -> String {
        let all = self.drain();
        all[all.len().saturating_sub(n)..].join("\n")
    }
}

/// The server under test: stopped (SIGTERM, then SIGKILL) whatever way the test ends.
struct Server {
    child: Child,
    out: Output,
    port: u16,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let port = free_port();
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--address",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("STRONGROOM_OBJECT_STORE")
            .env_remove("STRONGROOM_MASTER_KEY_FILE")
            .env("STRONGROOM_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = Output::collect(&mut child);
        let mut server = Server { child, out, port };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !healthy(port) {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("server exited with {status}:\n{}", server.out.tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "server did not answer /healthz within 120 s:\n{}",
                server.out.tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        server
    }

    /// The one-time password of the first start, as the README shows it.
    fn one_time_password(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(p) = self.out.drain().iter().find_map(|l| {
                l.trim()
                    .strip_prefix("one-time password: ")
                    .map(str::to_string)
            }) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "no one-time password printed at first start:\n{}",
                self.out.tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("pg/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Stops whatever cluster a failed run leaves behind, and removes the data dir.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = postmaster_pid(&self.0) {
            let pid = Pid::from_raw(pid);
            if kill(pid, Signal::SIGQUIT).is_ok() {
                let deadline = Instant::now() + Duration::from_secs(30);
                while kill(pid, None).is_ok() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `CARGO_TARGET_DIR`, else the target dir this test binary was built into
/// (`<target>/debug/deps/browser-…`), else `target`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .filter(|dir| dir.join("debug").is_dir() || dir.join("release").is_dir())
        .unwrap_or_else(|| Path::new(MANIFEST_DIR).join("target"))
}

/// What the stories need on the machine; a clear failure, not a skip, when it is missing.
fn prerequisites() -> PathBuf {
    let chromium =
        PathBuf::from(std::env::var_os("CHROMIUM").unwrap_or_else(|| "/usr/bin/chromium".into()));
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!("Chromium ({} not found)", chromium.display()));
    }
    let node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(node, Ok(s) if s.success()) {
        missing.push("Node.js (`node` not found on PATH)".to_string());
    }
    let modules = Path::new(MANIFEST_DIR).join("tests/browser/node_modules");
    for package in ["playwright-core", "axe-core"] {
        if !modules.join(package).join("package.json").is_file() {
            missing.push(format!("{} (not in {})", package, modules.display()));
        }
    }
    assert!(
        missing.is_empty(),
        "the browser tests cannot run: missing {}.\nTo install: {HOW_TO_INSTALL}",
        missing.join(", ")
    );
    chromium
}

/// Runs `cmd` to its end within `limit`, killing it past that; its exit success and its
/// output (stdout and stderr, interleaved as they came).
fn run_bounded(mut cmd: Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = Output::collect(&mut child);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // The reader threads end with the pipes; give them a moment to hand over the tail.
    std::thread::sleep(Duration::from_millis(300));
    let text = out.drain().join("\n");
    match status {
        Some(s) => (s.success(), text),
        None => (
            false,
            format!("{text}\n(killed after {} s)", limit.as_secs()),
        ),
    }
}

#[test]
fn stories_in_a_real_browser() {
    let chromium = prerequisites();
    // This run's pictures only: an earlier run's would pass for this one's.
    let screenshots = target_dir().join("screenshots");
    let _ = std::fs::remove_dir_all(&screenshots);
    std::fs::create_dir_all(&screenshots).unwrap();

    // Under the system temp dir, which the `postgres` account can reach when running as root.
    let dir = std::env::temp_dir().join(format!("sr-browser-{}", uuid::Uuid::new_v4().simple()));
    let _cleanup = Cleanup(dir.clone());
    let mut server = Server::start(&dir);
    let password = server.one_time_password();

    let mut node = Command::new("node");
    node.arg(Path::new(MANIFEST_DIR).join("tests/browser/stories.mjs"))
        .current_dir(MANIFEST_DIR)
        .env("BASE_URL", format!("http://127.0.0.1:{}", server.port))
        .env("ADMIN_USERNAME", "admin")
        .env("ADMIN_PASSWORD", &password)
        .env("SCREENSHOT_DIR", &screenshots)
        .env("CHROMIUM", &chromium);
    let (ok, output) = run_bounded(node, STORIES_TIMEOUT);
    assert!(
        ok,
        "the browser stories failed:\n{output}\n\nserver output (last lines):\n{}",
        server.out.tail(40)
    );
    println!("{output}");

    // The trail the stories left is an intact chain (a second command on the data dir uses
    // the running cluster). Events are chained within a second of their commit.
    std::thread::sleep(Duration::from_secs(2));
    let mut verify = Command::new(BIN);
    verify
        .args(["verify-audit", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env("STRONGROOM_LOG_LEVEL", "warn");
    let (ok, output) = run_bounded(verify, Duration::from_secs(120));
    assert!(
        ok && output.contains("audit chain OK"),
        "verify-audit after the stories: {output}"
    );
    println!("{}", output.trim());
    server.stop();
}
