//! What the HTTP benches share: the server they start, and its orderly end.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// Owns what the bench starts; dropping it (normal end, error or panic) stops the server
/// and removes the temp dir.
pub struct Cleanup {
    pub dir: PathBuf,
    pub server: Option<Child>,
    pub watchdog: Option<Child>,
}

impl Cleanup {
    pub fn server_log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then up to 60 s for a clean stop (the server stops its cluster), then SIGKILL.
    pub fn stop_server(&mut self) -> Result<()> {
        let Some(mut child) = self.server.take() else {
            return Ok(());
        };
        if child.try_wait()?.is_some() {
            bail!("the server had already exited");
        }
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not stop within 60 s of SIGTERM; killed");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Err(e) = self.stop_server() {
            eprintln!("stopping the server: {e:#}");
        }
        if let Some(mut w) = self.watchdog.take() {
            // EOF on its stdin: it stops a cluster still running and removes the dir.
            drop(w.stdin.take());
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The binary with an environment that cannot point it elsewhere than its data dir.
pub fn strongroom_cmd(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for var in [
        "DATABASE_URL",
        "DATABASE_OWNER_URL",
        "STRONGROOM_DATA_DIR",
        "STRONGROOM_OBJECT_STORE",
        "STRONGROOM_MASTER_KEY_FILE",
        "STRONGROOM_ADDRESS",
        "STRONGROOM_PORT",
        "STRONGROOM_PUBLIC_URL",
        "STRONGROOM_LOG_FORMAT",
    ] {
        c.env_remove(var);
    }
    c.env("STRONGROOM_LOG_LEVEL", "warn");
    c
}

pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}
