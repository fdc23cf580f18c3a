//! The real binary on the embedded default: first start, the one-time admin password, a
//! second command while `serve` runs, clean stop, `kill -9` and crash recovery.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_strongroom");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 exchange with the server on 127.0.0.1.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    port: u16,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let port = free_port();
        let mut child = Command::new(BIN)
            .args(["serve", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .env_remove("DATABASE_URL")
            .env("STRONGROOM_LOG_LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        let mut s = Server { child, lines, port };
        s.wait_healthy();
        s
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Some((200, _)) = http(self.port, "GET", "/healthz", None) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let out: Vec<String> = self.lines.try_iter().collect();
                panic!("server exited with {status}: {}", out.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("server did not become healthy");
    }

    fn output(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    fn signal(&mut self, sig: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "server did not exit");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A test that fails half-way must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("pg/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops whatever cluster a failed test leaves behind, and removes its directory.
struct Cleanup<'a>(&'a Path);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Some(pid) = postmaster_pid(self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            wait_dead(pid);
        }
        let _ = std::fs::remove_dir_all(self.0);
    }
}

fn one_time_password(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| {
        l.trim()
            .strip_prefix("one-time password: ")
            .map(str::to_string)
    })
}

#[test]
fn embedded_server_life_cycle() {
    let dir = std::env::temp_dir().join(format!("sr-proc-{}", uuid::Uuid::new_v4().simple()));
    let _cleanup = Cleanup(&dir);

    // First start: creates the cluster and the administrator, prints the password once.
    let mut server = Server::start(&dir);
    std::thread::sleep(Duration::from_millis(200));
    let out = server.output();
    let password = one_time_password(&out).unwrap_or_else(|| panic!("no password in {out:?}"));
    assert!(out
        .iter()
        .any(|l| l.contains(&format!("http://127.0.0.1:{}", server.port))));
    let (status, body) = http(
        server.port,
        "POST",
        "/api/v1/login",
        Some(&format!(
            r#"{{"username":"admin","password":"{password}"}}"#
        )),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""must_change_password":true"#), "{body}");
    // No TCP port for PostgreSQL: only the socket in the data dir.
    assert!(dir.join("pg-socket/.s.PGSQL.5432").exists());
    let pg_pid = postmaster_pid(&dir).expect("cluster running");

    // A second command on the same data dir uses the running cluster.
    let mut add = Command::new(BIN)
        .args([
            "user",
            "add",
            "--username",
            "lena",
            "--role",
            "employee,archivist",
            "--department",
            "Retail",
            "--password-stdin",
            "--data-dir",
        ])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env("STRONGROOM_LOG_LEVEL", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"the archive keeper's passphrase\n")
        .unwrap();
    let add = add.wait_with_output().unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    assert_eq!(
        postmaster_pid(&dir),
        Some(pg_pid),
        "a second cluster was started"
    );
    assert!(
        alive(pg_pid),
        "the second command stopped the server's cluster"
    );
    let (status, _) = http(
        server.port,
        "POST",
        "/api/v1/login",
        Some(r#"{"username":"lena","password":"the archive keeper's passphrase"}"#),
    )
    .unwrap();
    assert_eq!(status, 200);

    // SIGTERM: the server stops and takes its cluster down cleanly.
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success());
    wait_dead(pg_pid);
    assert!(!alive(pg_pid));
    assert!(postmaster_pid(&dir).is_none(), "postmaster.pid left behind");

    // Restart: same data, no new administrator password.
    let mut server = Server::start(&dir);
    std::thread::sleep(Duration::from_millis(200));
    assert!(one_time_password(&server.output()).is_none());

    // kill -9 of the server: the next start adopts the running cluster and serves.
    let pg_pid = postmaster_pid(&dir).unwrap();
    server.signal(Signal::SIGKILL);
    server.wait_exit();
    let mut server = Server::start(&dir);
    let (status, _) = http(
        server.port,
        "POST",
        "/api/v1/login",
        Some(r#"{"username":"lena","password":"the archive keeper's passphrase"}"#),
    )
    .unwrap();
    assert_eq!(status, 200);

    // A crash of both (stale postmaster.pid): the next start recovers.
    let pg_pid2 = postmaster_pid(&dir).unwrap();
    assert_eq!(pg_pid, pg_pid2, "adopted cluster should be the same server");
    server.signal(Signal::SIGKILL);
    server.wait_exit();
    kill(Pid::from_raw(pg_pid2), Signal::SIGKILL).unwrap();
    wait_dead(pg_pid2);
    assert!(
        postmaster_pid(&dir).is_some(),
        "stale postmaster.pid expected"
    );
    let mut server = Server::start(&dir);
    assert_eq!(http(server.port, "GET", "/healthz", None).unwrap().0, 200);
    let (status, _) = http(
        server.port,
        "POST",
        "/api/v1/login",
        Some(r#"{"username":"lena","password":"the archive keeper's passphrase"}"#),
    )
    .unwrap();
    assert_eq!(status, 200);
    server.signal(Signal::SIGINT);
    assert!(server.wait_exit().success());
    assert!(postmaster_pid(&dir).is_none());

    // Private files stay private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("pg-superuser.password"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn missing_postgresql_binaries_name_the_package_to_install() {
    let dir = std::env::temp_dir().join(format!("sr-nobin-{}", uuid::Uuid::new_v4().simple()));
    let _cleanup = Cleanup(&dir);
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .env("STRONGROOM_PG_BIN_DIR", "/nonexistent/pg/bin")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
}

#[test]
fn a_malformed_policy_file_fails_policy_check_and_serve_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("sr-badpol-{}", uuid::Uuid::new_v4().simple()));
    let _cleanup = Cleanup(&dir);
    let pol = dir.join("policies");
    std::fs::create_dir_all(&pol).unwrap();
    for f in ["access.cedar", "access.cedarschema", "masking.toml"] {
        std::fs::copy(std::path::Path::new("policies").join(f), pol.join(f)).unwrap();
    }
    std::fs::write(
        pol.join("workflows.toml"),
        "pending_expiry_hours = 24\n\n[[route]]\nkind = \"view\"\napprovals = \"two\"\nmax_hours = 4\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["policy", "check", "--policies"])
        .arg(&pol)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("workflows.toml:5:"), "{stdout}");
    let out = Command::new(BIN)
        .args(["serve", "--port", &free_port().to_string(), "--data-dir"])
        .arg(dir.join("data"))
        .env("STRONGROOM_POLICIES", &pol)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("workflows.toml:5:"), "{stderr}");
    // A malformed access policy is named the same way.
    std::fs::copy("policies/workflows.toml", pol.join("workflows.toml")).unwrap();
    let mut cedar = std::fs::read_to_string("policies/access.cedar").unwrap();
    cedar.push_str("\npermit(principal, action, resource) when { principal.rank > 2 };\n");
    let bad_line = cedar.lines().count();
    std::fs::write(pol.join("access.cedar"), cedar).unwrap();
    let out = Command::new(BIN)
        .args(["policy", "check", "--policies"])
        .arg(&pol)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("access.cedar:{bad_line}:")),
        "{stdout}"
    );
    std::fs::copy("policies/access.cedar", pol.join("access.cedar")).unwrap();
    // A masking rule with an unknown mask, and a route whose approvers the access policy
    // does not let approve, are named the same way.
    let check = |pol: &std::path::Path| {
        let out = Command::new(BIN)
            .args(["policy", "check", "--policies"])
            .arg(pol)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    std::fs::write(
        pol.join("masking.toml"),
        "# masks\n\n[[rule]]\ntype = \"phone\"\nmask = \"blurred\"\n",
    )
    .unwrap();
    let stdout = check(&pol);
    assert!(
        stdout.contains("masking.toml:3: mask `blurred`"),
        "{stdout}"
    );
    std::fs::copy("policies/masking.toml", pol.join("masking.toml")).unwrap();
    let mut routes = std::fs::read_to_string("policies/workflows.toml").unwrap();
    routes.push_str("\n[[route]]\nkind = \"view\"\nsensitivity = \"secret\"\ncategory = \"VAULT\"\napprovals = 1\napprover_role = \"archivist\"\nmax_hours = 1\n");
    let route_line = routes.lines().count() - 6;
    std::fs::write(pol.join("workflows.toml"), routes).unwrap();
    let stdout = check(&pol);
    assert!(
        stdout.contains(&format!(
            "workflows.toml:{route_line}: approver_role `archivist` may not approve"
        )),
        "{stdout}"
    );
    // The shipped policies pass.
    let out = Command::new(BIN)
        .args(["policy", "check", "--policies", "policies"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
