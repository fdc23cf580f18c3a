//! The embedded PostgreSQL module against the real server binaries: each test runs its
//! own cluster in its own short temporary directory and stops it at the end (a watchdog
//! also stops it if the test process dies midway).

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sqlx::{Connection, PgConnection};
use strongroom::pg::{find_bin_dir, find_bin_dir_in, EmbeddedPg, PgError, StartOptions};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A short directory under /tmp (socket paths are limited to 107 bytes). When tests run
/// as root it is made traversable so the `postgres` account can reach the vault inside.
pub(crate) fn short_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("srpg")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// Only settings that are safe against a process crash: the kill -9 test expects
/// committed rows to survive (synchronous_commit=off would lose them).
pub(crate) fn fast_opts() -> StartOptions {
    StartOptions {
        bin_dir: None,
        settings: vec![
            ("fsync".into(), "off".into()),
            ("full_page_writes".into(), "off".into()),
        ],
    }
}

async fn connect(pg: &EmbeddedPg, db: &str) -> PgConnection {
    PgConnection::connect_with(&pg.connect_options(db))
        .await
        .unwrap()
}

fn postmaster_pid(pg: &EmbeddedPg) -> i32 {
    let text = std::fs::read_to_string(pg.cluster_dir().join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

/// Stops the cluster and removes the test directory when the test ends or panics (by
/// closing the watchdog's pipe), or when the test process dies (the pipe closes itself).
pub(crate) struct Watchdog(pub(crate) std::process::Child);

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// Starts a cluster in `data_dir`, guarded by a watchdog that cleans up `root`.
async fn start(data_dir: &Path, root: &Path) -> (EmbeddedPg, Watchdog) {
    let pg = EmbeddedPg::ensure_running(data_dir, &fast_opts())
        .await
        .unwrap();
    let watchdog = Watchdog(pg.stop_on_process_exit(Some(root)).unwrap());
    (pg, watchdog)
}

#[tokio::test]
async fn first_start_creates_a_socket_only_cluster() {
    let tmp = short_tempdir();
    let data = tmp.path().join("vault");
    let (pg, _watchdog) = start(&data, tmp.path()).await;

    assert!(pg.owns_cluster());
    assert!(pg.cluster_dir().join("PG_VERSION").is_file());
    let pw = std::fs::metadata(data.join("pg-superuser.password")).unwrap();
    assert_eq!(pw.mode() & 0o777, 0o600);
    assert_eq!(pw.uid(), nix::unistd::geteuid().as_raw());
    let socket = pg.socket_dir().join(".s.PGSQL.5432");
    assert!(
        std::fs::symlink_metadata(&socket).is_ok(),
        "socket {socket:?} missing"
    );
    let socket_dir = std::fs::metadata(pg.socket_dir()).unwrap();
    assert_eq!(socket_dir.mode() & 0o777, 0o700);
    let data_mode = std::fs::metadata(&data).unwrap().mode() & 0o777;
    if is_root() {
        assert_eq!(data_mode, 0o711);
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        assert_eq!(socket_dir.uid(), postgres.uid.as_raw());
        assert_eq!(
            std::fs::metadata(pg.cluster_dir()).unwrap().uid(),
            postgres.uid.as_raw()
        );
    } else {
        assert_eq!(data_mode, 0o700);
    }

    let mut conn = connect(&pg, "strongroom").await;
    let listen: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(listen, "", "the server must not listen on TCP");
    let (user, db, sum): (String, String, i32) =
        sqlx::query_as("SELECT current_user::text, current_database()::text, 40 + 2")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        (user.as_str(), db.as_str(), sum),
        ("strongroom", "strongroom", 42)
    );
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(fsync, "off");
    conn.close().await.unwrap();

    // The socket alone is not enough: a wrong password is refused.
    let wrong = pg
        .connect_options("strongroom")
        .password("not-the-password");
    assert!(PgConnection::connect_with(&wrong).await.is_err());

    pg.stop().await.unwrap();
    assert!(!data.join("pg/postmaster.pid").exists());
}

#[tokio::test]
async fn restart_keeps_data() {
    let tmp = short_tempdir();
    let data = tmp.path().join("vault");
    let (pg, _watchdog) = start(&data, tmp.path()).await;
    let mut conn = connect(&pg, "strongroom").await;
    sqlx::query("CREATE TABLE kept (v text)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO kept VALUES ('still here')")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    pg.stop().await.unwrap();

    let pg = EmbeddedPg::ensure_running(&data, &fast_opts())
        .await
        .unwrap();
    assert!(pg.owns_cluster());
    let mut conn = connect(&pg, "strongroom").await;
    let v: String = sqlx::query_scalar("SELECT v FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "still here");
    conn.close().await.unwrap();
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn second_user_connects_without_owning_and_orphan_is_adopted() {
    let tmp = short_tempdir();
    let data = tmp.path().join("vault");
    let (owner, _watchdog) = start(&data, tmp.path()).await;
    let pid = postmaster_pid(&owner);

    let guest = EmbeddedPg::ensure_running(&data, &fast_opts())
        .await
        .unwrap();
    assert!(!guest.owns_cluster());
    assert_eq!(postmaster_pid(&guest), pid, "no second server was started");
    let mut conn = connect(&guest, "strongroom").await;
    sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    // A guest's stop only lets go.
    guest.stop().await.unwrap();
    let mut conn = connect(&owner, "strongroom").await;
    sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    // The owner goes away without stopping the server: the next command adopts it.
    drop(owner);
    let heir = EmbeddedPg::ensure_running(&data, &fast_opts())
        .await
        .unwrap();
    assert!(heir.owns_cluster());
    assert_eq!(postmaster_pid(&heir), pid);
    heir.stop().await.unwrap();
    assert!(!data.join("pg/postmaster.pid").exists());
}

#[tokio::test]
async fn recovers_after_postmaster_is_killed() {
    let tmp = short_tempdir();
    let data = tmp.path().join("vault");
    let (pg, _watchdog) = start(&data, tmp.path()).await;
    let mut conn = connect(&pg, "strongroom").await;
    sqlx::query("CREATE TABLE survivor (v int)")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("INSERT INTO survivor VALUES (7)")
        .execute(&mut conn)
        .await
        .unwrap();

    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = postmaster_pid(&pg);
    // A frozen child keeps the dead postmaster's shared memory attached, which makes the
    // first restarts fail exactly as after a real crash with slow-dying backends.
    let straggler = children_of(pid)[0];
    kill(Pid::from_raw(straggler), Signal::SIGSTOP).unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    // The owning process "dies" too: its owner lock goes with it.
    drop(pg);
    drop(conn);
    let thaw = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        kill(Pid::from_raw(straggler), Signal::SIGCONT).unwrap();
    });

    let pg = EmbeddedPg::ensure_running(&data, &fast_opts())
        .await
        .unwrap();
    assert!(pg.owns_cluster());
    assert_ne!(postmaster_pid(&pg), pid);
    let mut conn = connect(&pg, "strongroom").await;
    let v: i32 = sqlx::query_scalar("SELECT v FROM survivor")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, 7);
    conn.close().await.unwrap();
    thaw.await.unwrap();
    let log = std::fs::read_to_string(pg.cluster_dir().join("server.log")).unwrap();
    assert!(
        log.contains("pre-existing shared memory block"),
        "the restart was expected to be retried:\n{log}"
    );
    pg.stop().await.unwrap();
}

fn children_of(parent: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit(')').next()?.to_owned();
                    rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// A process counts as gone once it is dead or a zombie (this container's init does
/// not reap the orphaned postmaster).
fn gone(pid: i32) -> bool {
    let dead = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false);
    dead || zombie
}

#[tokio::test]
async fn concurrent_starts_make_one_server_with_one_owner() {
    let tmp = short_tempdir();
    let data = tmp.path().join("vault");
    let opts = fast_opts();
    let (a, b) = tokio::join!(
        EmbeddedPg::ensure_running(&data, &opts),
        EmbeddedPg::ensure_running(&data, &opts)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let _watchdog = Watchdog(a.stop_on_process_exit(Some(tmp.path())).unwrap());
    assert!(a.owns_cluster() != b.owns_cluster(), "exactly one owner");
    assert_eq!(postmaster_pid(&a), postmaster_pid(&b));
    for pg in [&a, &b] {
        let mut conn = connect(pg, "strongroom").await;
        sqlx::query("SELECT 1").execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    let (owner, guest) = if a.owns_cluster() { (a, b) } else { (b, a) };
    guest.stop().await.unwrap();
    owner.stop().await.unwrap();
}

#[tokio::test]
async fn watchdog_stops_the_cluster_and_removes_the_dir_when_its_pipe_closes() {
    let tmp = short_tempdir();
    let data = tmp.path().join("vault");
    let pg = EmbeddedPg::ensure_running(&data, &fast_opts())
        .await
        .unwrap();
    let pid = postmaster_pid(&pg);
    let mut watchdog = pg.stop_on_process_exit(Some(&data)).unwrap();
    // What the exit of the calling process does: the write end of the pipe closes.
    drop(watchdog.stdin.take());
    let status = tokio::task::spawn_blocking(move || watchdog.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(gone(pid), "postmaster {pid} still running");
    assert!(!data.exists(), "{data:?} was not removed");
    drop(pg);
}

#[tokio::test]
async fn failed_initdb_leaves_nothing_half_made() {
    let tmp = short_tempdir();
    let real = find_bin_dir(None).unwrap();
    let bins = tmp.path().join("bin");
    std::fs::create_dir(&bins).unwrap();
    std::fs::set_permissions(&bins, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fake_initdb = bins.join("initdb");
    std::fs::write(
        &fake_initdb,
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -D ] && d=$2; shift; done\n\
         touch \"$d/PG_VERSION\" \"$d/half-written\"\n\
         echo 'initdb: simulated failure halfway' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake_initdb, std::fs::Permissions::from_mode(0o755)).unwrap();
    for bin in ["pg_ctl", "postgres"] {
        std::os::unix::fs::symlink(real.join(bin), bins.join(bin)).unwrap();
    }
    let opts = StartOptions {
        bin_dir: Some(bins),
        settings: Vec::new(),
    };
    let data = tmp.path().join("vault");
    let err = EmbeddedPg::ensure_running(&data, &opts).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PgError::InitDb { .. }), "{msg}");
    assert!(msg.contains("simulated failure halfway"), "{msg}");
    let password = std::fs::read_to_string(data.join("pg-superuser.password")).unwrap();
    assert!(
        !msg.contains(password.trim()),
        "the password leaked into the error"
    );
    assert!(!data.join("pg").exists());
    let leftovers: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("pg") && n != "pg-superuser.password" && !n.ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");

    // The next run (with working binaries) starts afresh and succeeds.
    let (pg, _watchdog) = start(&data, tmp.path()).await;
    assert!(pg.owns_cluster());
    pg.stop().await.unwrap();
}

#[tokio::test]
async fn managed_settings_are_refused() {
    let tmp = short_tempdir();
    let opts = StartOptions {
        bin_dir: None,
        settings: vec![("listen_addresses".into(), "*".into())],
    };
    let err = EmbeddedPg::ensure_running(&tmp.path().join("vault"), &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, PgError::InvalidSetting { .. }), "{err}");
    assert!(!tmp.path().join("vault").exists(), "nothing is created");
}

#[tokio::test]
async fn unreachable_data_dir_is_named_when_root() {
    if !is_root() {
        return;
    }
    let tmp = short_tempdir();
    let closed = tmp.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = EmbeddedPg::ensure_running(&closed.join("vault"), &fast_opts())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PgError::DataDirUnreachable { .. }), "{msg}");
    assert!(
        msg.contains(&format!("chmod o+x {}", closed.display())),
        "{msg}"
    );
}

#[test]
fn long_data_dir_is_refused_for_its_socket_path() {
    let long = PathBuf::from("/tmp").join("x".repeat(100));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(EmbeddedPg::ensure_running(&long, &fast_opts()))
        .unwrap_err();
    assert!(matches!(err, PgError::SocketPathTooLong { .. }), "{err}");
    assert!(err.to_string().contains("shorter data directory"));
    assert!(!long.exists());
}

#[test]
fn missing_binaries_say_what_to_install() {
    let err = find_bin_dir_in(Some(OsStr::new("")), false, &[]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PgError::BinariesNotFound { .. }));
    assert!(msg.contains("apt-get install postgresql"), "{msg}");
    assert!(msg.contains("STRONGROOM_PG_BIN_DIR"), "{msg}");

    let err = find_bin_dir(Some(Path::new("/nonexistent/pg/bin"))).unwrap_err();
    assert!(matches!(err, PgError::IncompleteBinDir { .. }), "{err}");
}

#[test]
fn versioned_roots_prefer_the_newest_complete_install() {
    let tmp = short_tempdir();
    let root = tmp.path().join("lib");
    let make = |version: &str, bins: &[&str]| {
        let dir = root.join(version).join("bin");
        std::fs::create_dir_all(&dir).unwrap();
        for bin in bins {
            let path = dir.join(bin);
            std::fs::write(&path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    };
    let all = ["initdb", "pg_ctl", "postgres"];
    make("9.6", &all);
    make("15", &all);
    make("16", &["initdb", "pg_ctl"]); // incomplete: no server
    let found = find_bin_dir_in(Some(OsStr::new("")), false, std::slice::from_ref(&root)).unwrap();
    assert_eq!(found, root.join("15").join("bin"));
}

#[test]
fn binaries_are_found_on_this_machine() {
    let dir = find_bin_dir(None).unwrap();
    for bin in ["initdb", "pg_ctl", "postgres"] {
        assert!(dir.join(bin).is_file(), "{bin} missing in {dir:?}");
    }
}
