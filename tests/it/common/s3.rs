//! An S3-compatible server (moto) for the storage tests: one per test process, started on
//! first use on 127.0.0.1 with a free port, and killed when the test process exits however
//! it exits (a watchdog shell blocks reading a pipe only this process holds; when the pipe
//! closes it kills the server). Each test gets its own bucket.
//!
//! When moto is not installed the S3 tests fail with an install hint, unless
//! `STRONGROOM_SKIP_S3_TESTS=1`, in which case [`bucket`] returns `None` and they pass
//! vacuously (saying so on stderr).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3ConfigKey;
use strongroom::storage::Store;

const INSTALL_HINT: &str = "the S3 storage tests need moto: pip install 'moto[server]' \
     (or set STRONGROOM_SKIP_S3_TESTS=1 to skip them)";

pub struct Moto {
    pub port: u16,
    pub endpoint: String,
    log: PathBuf,
}

static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
/// The server and its watchdog (holding the write end of the watchdog's pipe), kept for
/// the whole process.
static CHILDREN: Mutex<Vec<Child>> = Mutex::new(Vec::new());

fn skip_requested() -> bool {
    std::env::var("STRONGROOM_SKIP_S3_TESTS").is_ok_and(|v| v == "1")
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `moto_server` from PATH, else `python3 -m moto.server` if that module imports.
fn moto_command() -> Option<Command> {
    if let Some(exe) = on_path("moto_server") {
        return Some(Command::new(exe));
    }
    let importable = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    importable.then(|| {
        let mut c = Command::new("python3");
        c.args(["-m", "moto.server"]);
        c
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

/// The process-wide moto server, or `None` when S3 tests are skipped.
pub fn moto() -> Option<&'static Moto> {
    MOTO.get_or_init(start).as_ref()
}

fn start() -> Option<Moto> {
    let Some(mut cmd) = moto_command() else {
        if skip_requested() {
            return None;
        }
        panic!("moto_server not found on PATH: {INSTALL_HINT}");
    };
    let port = free_port();
    let log = std::env::temp_dir().join(format!("sr-moto-{}.log", std::process::id()));
    let log_file = std::fs::File::create(&log).expect("create the moto log");
    let mut server = cmd
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start moto_server ({e}): {INSTALL_HINT}"));
    // The watchdog's stdin is a pipe whose only writer is this process: `read` returns when
    // this process exits (even if killed), and the server goes with it.
    let watchdog = Command::new("sh")
        .args([
            "-c",
            "read _; kill \"$1\" 2>/dev/null; rm -f \"$2\"",
            "sr-moto-watchdog",
            &server.id().to_string(),
            &log.to_string_lossy(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the moto watchdog");
    let moto = Moto {
        port,
        endpoint: format!("http://127.0.0.1:{port}"),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            let log = std::fs::read_to_string(&moto.log).unwrap_or_default();
            panic!("moto_server exited at startup ({status}): {INSTALL_HINT}\n{log}");
        }
        if matches!(moto.http("GET", "/"), Ok((200, _))) {
            break;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            let log = std::fs::read_to_string(&moto.log).unwrap_or_default();
            panic!("moto_server did not answer on port {port} within 60 s\n{log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut children = CHILDREN.lock().unwrap();
    children.push(server);
    children.push(watchdog);
    Some(moto)
}

impl Moto {
    /// A bodiless HTTP/1.1 request; moto does not check signatures, so none is sent.
    pub fn http(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let resp = String::from_utf8_lossy(&resp).into_owned();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok((status, resp))
    }
}

/// A fresh, empty bucket on the process's moto server.
pub struct S3Bucket {
    pub moto: &'static Moto,
    pub name: String,
}

/// A new bucket, or `None` when S3 tests are skipped (`STRONGROOM_SKIP_S3_TESTS=1` and
/// moto not installed).
pub fn bucket() -> Option<S3Bucket> {
    let Some(moto) = moto() else {
        eprintln!("S3 storage test skipped: STRONGROOM_SKIP_S3_TESTS=1 and moto is not installed");
        return None;
    };
    let name = format!("sr-{}", uuid::Uuid::new_v4().simple());
    let (status, body) = moto
        .http("PUT", &format!("/{name}"))
        .expect("create bucket");
    assert_eq!(status, 200, "create bucket: {body}");
    Some(S3Bucket { moto, name })
}

impl S3Bucket {
    /// The store the `object_store` setting `s3://<bucket>/vault` gives, pointed at moto
    /// with explicit options (tests run in parallel, so the environment stays untouched).
    pub fn store(&self, data_dir: &Path) -> Store {
        Store::from_settings_with(
            Some(&format!("s3://{}/vault", self.name)),
            data_dir,
            &[
                (AmazonS3ConfigKey::Endpoint, self.moto.endpoint.as_str()),
                (AmazonS3ConfigKey::AccessKeyId, "test"),
                (AmazonS3ConfigKey::SecretAccessKey, "test"),
                (AmazonS3ConfigKey::Region, "us-east-1"),
            ],
        )
        .expect("S3 store from settings")
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub fn pending_uploads(&self) -> usize {
        let (status, body) = self
            .moto
            .http("GET", &format!("/{}?uploads", self.name))
            .expect("list multipart uploads");
        assert_eq!(status, 200, "list multipart uploads: {body}");
        body.matches("<UploadId>").count()
    }
}
