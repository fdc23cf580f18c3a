//! Audit load benchmark (`cargo bench --bench audit_load`).
//!
//! Every search and every filing writes an audit event in the hash-chained trail, so the
//! trail's append path bounds how many audited actions the vault serves per second. This
//! bench measures that under a mixed load on the real release binary:
//!
//! 1. `strongroom serve` on 127.0.0.1 (a free port), its embedded default, a fresh data dir
//!    in a temp dir;
//! 2. through the API as an archivist: one category `ACCT` (confidential, department
//!    Retail) with a customer name (text) and a sensitive phone, then
//!    `STRONGROOM_BENCH_SEED_RECORDS` records (default 2,000) filed by 4 clients, so
//!    searches find something;
//! 3. `strongroom verify-audit` (the chain's event count before the load);
//! 4. for `STRONGROOM_BENCH_LOAD_SECONDS` (default 15): `STRONGROOM_BENCH_SEARCHERS`
//!    employees of the department (default 16) searching `GET /api/v1/records` with varied
//!    queries (part of a name, a whole name, an exact phone, a reference code, a title word
//!    within the category), while `STRONGROOM_BENCH_FILERS` archivists (default 4) file
//!    records with `POST /api/v1/records`. Every client has its own session (bearer token)
//!    and its own keep-alive connection, and issues its next request when the previous one
//!    is answered;
//! 5. after ~2 s for background work to settle, `strongroom verify-audit` again: its
//!    verdict, and the events added since step 3.
//!
//! Printed: audited actions/s (audit events added during the window over its length, and
//! the client-side count of successful searches and filings), search latency p50/p95/p99
//! overall and by kind, the filing rate, errors (non-2xx answers and transport errors), and
//! the verdict of `verify-audit`, each beside its target. Figures are printed, never
//! asserted: the machine is shared and noisy.
//!
//! The binary is `STRONGROOM_BIN`, or the one cargo builds with this bench (the bench
//! profile's `strongroom`). Everything lives in one temp dir that is removed at the end, also
//! on failure; the server is stopped with SIGTERM (it stops its PostgreSQL cluster itself),
//! and a watchdog stops the cluster and removes the dir if this process dies first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop it loudly

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[path = "common/server.rs"]
mod server;
use server::{free_port, strongroom_cmd, Cleanup};

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use strongroom::pg::{EmbeddedPg, StartOptions};

const PASSWORD: &str = "benchmark passphrase, long enough";
const ARCHIVIST: &str = "bench.archivist";
const EMPLOYEE: &str = "bench.employee";
/// The department of the bench's category and of everyone the bench creates.
const DEPARTMENT: &str = "Retail";
const CATEGORY: &str = "ACCT";
/// Clients filing the seed records.
const SEED_CLIENTS: usize = 4;
/// Upper bound of the load window, whatever the environment asks for.
const MAX_LOAD_SECONDS: u64 = 600;
/// Pause between the end of the load and the final `verify-audit`.
const SETTLE: Duration = Duration::from_secs(2);
/// How long the server may take to answer /healthz after start (initdb on first start).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Socket timeouts: every blocking read or write on the API ends by then.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

const TARGET_ACTIONS_PER_S: f64 = 1000.0;
const TARGET_SEARCH_P95_MS: f64 = 50.0;

fn main() {
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("audit load bench failed: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .with_context(|| format!("{name} must be a positive number")),
        Err(_) => Ok(default),
    }
}

struct Settings {
    seed_records: usize,
    load: Duration,
    searchers: usize,
    filers: usize,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let seconds = env_number("STRONGROOM_BENCH_LOAD_SECONDS", 15)?;
        if seconds > MAX_LOAD_SECONDS {
            bail!("STRONGROOM_BENCH_LOAD_SECONDS must be at most {MAX_LOAD_SECONDS}");
        }
        let searchers = env_number("STRONGROOM_BENCH_SEARCHERS", 16)?;
        let filers = env_number("STRONGROOM_BENCH_FILERS", 4)?;
        if searchers > 256 || filers > 256 {
            bail!("at most 256 searchers and 256 filers");
        }
        Ok(Settings {
            seed_records: usize::try_from(env_number("STRONGROOM_BENCH_SEED_RECORDS", 2000)?)?,
            load: Duration::from_secs(seconds),
            searchers: usize::try_from(searchers)?,
            filers: usize::try_from(filers)?,
        })
    }
}

fn run() -> Result<()> {
    let settings = Settings::from_env()?;
    let bin = server_binary()?;
    let dir = std::env::temp_dir().join(format!("sr-bench-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // 0711: when run as root the server's cluster runs as `postgres`, which must be able to
    // traverse this directory to reach its own.
    std::fs::DirBuilder::new()
        .mode(0o711)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        server: None,
        watchdog: None,
    };
    let result = bench(&mut cleanup, &bin, &settings);
    if result.is_err() && dir.join("server.log").exists() {
        eprintln!(
            "last lines of the server log:\n{}",
            cleanup.server_log_tail()
        );
    }
    let stopped = cleanup.stop_server();
    drop(cleanup);
    result?;
    stopped.context("stopping the server")
}

fn server_binary() -> Result<PathBuf> {
    let bin = match std::env::var_os("STRONGROOM_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_strongroom")),
    };
    if !bin.is_file() {
        bail!(
            "no server binary at {} (run `cargo build --release` first, or set STRONGROOM_BIN)",
            bin.display()
        );
    }
    Ok(bin)
}

fn bench(cleanup: &mut Cleanup, bin: &Path, s: &Settings) -> Result<()> {
    let dir = cleanup.dir.clone();
    println!(
        "audit load bench: {} seed records, {} searchers + {} filers for {} s, temp dir {}",
        s.seed_records,
        s.searchers,
        s.filers,
        s.load.as_secs(),
        dir.display()
    );

    // ---- the server ---------------------------------------------------------------------
    let data_dir = dir.join("data");
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = strongroom_cmd(bin)
        .args(["serve", "--address", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(&data_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    cleanup.server = Some(child);
    wait_healthy(cleanup, port)?;
    cleanup.watchdog = Some(watchdog(&data_dir, &dir)?);

    // ---- the archive --------------------------------------------------------------------
    add_user(bin, &data_dir, ARCHIVIST, "archivist", "Bench Archivist")?;
    add_user(bin, &data_dir, EMPLOYEE, "employee", "Bench Employee")?;
    let archivist = login(port, ARCHIVIST)?;
    let mut setup = Client::new(port, archivist.clone());
    let (status, category) = setup.json(
        "POST",
        "/api/v1/categories",
        &json!({"code": CATEGORY, "name": "Customer accounts", "sensitivity": "confidential",
        "department": DEPARTMENT, "retention_years": 10,
        "fields": [
            {"name": "customer_name", "type": "text", "required": true},
            {"name": "phone", "type": "phone", "sensitive": true},
        ]}),
    )?;
    if status != 201 {
        bail!("create category: {status} {category}");
    }
    let category_id = category["id"].as_str().context("category id")?.to_string();

    let t = Instant::now();
    let references = seed(port, &archivist, &category_id, s.seed_records)?;
    let took = t.elapsed();
    println!(
        "  seeded {} records in {:.1} s ({:.0} records/s, {SEED_CLIENTS} clients)",
        references.len(),
        took.as_secs_f64(),
        references.len() as f64 / took.as_secs_f64().max(1e-9)
    );

    // Sign-ins are audited too: all of them happen before the first count.
    let searcher_tokens = (0..s.searchers)
        .map(|_| login(port, EMPLOYEE))
        .collect::<Result<Vec<_>>>()?;
    let filer_tokens = (0..s.filers)
        .map(|_| login(port, ARCHIVIST))
        .collect::<Result<Vec<_>>>()?;

    let before = verify_audit(bin, &data_dir)?;
    println!(
        "  before the load: {} ({:.1} s)",
        before.line,
        before.took.as_secs_f64()
    );

    // ---- the load -----------------------------------------------------------------------
    let references = Arc::new(references);
    let next_record = Arc::new(AtomicUsize::new(s.seed_records));
    let start = Arc::new(Barrier::new(s.searchers + s.filers + 1));
    let mut threads = Vec::new();
    for (i, token) in searcher_tokens.into_iter().enumerate() {
        let (start, references) = (start.clone(), references.clone());
        let load = s.load;
        threads.push(std::thread::spawn(move || {
            let mut client = Client::new(port, token);
            let mut rng = StdRng::seed_from_u64(0x5EA2C4 + i as u64);
            start.wait();
            let deadline = Instant::now() + load;
            searcher(&mut client, &mut rng, &references, deadline)
        }));
    }
    for token in filer_tokens {
        let (start, next_record, category_id) =
            (start.clone(), next_record.clone(), category_id.clone());
        let load = s.load;
        threads.push(std::thread::spawn(move || {
            let mut client = Client::new(port, token);
            start.wait();
            let deadline = Instant::now() + load;
            filer(&mut client, &category_id, &next_record, deadline)
        }));
    }
    start.wait();
    let t = Instant::now();
    let mut tally = Tally::default();
    for th in threads {
        let part = th
            .join()
            .map_err(|_| anyhow::anyhow!("a load client panicked"))?;
        tally.merge(part);
    }
    let window = t.elapsed();
    if let Some(child) = cleanup.server.as_mut() {
        if let Some(status) = child.try_wait()? {
            cleanup.server = None;
            bail!("the server exited during the load ({status})");
        }
    }

    std::thread::sleep(SETTLE);
    let after = verify_audit(bin, &data_dir)?;
    report(&tally, window, &before, &after);
    Ok(())
}

// ---- the load clients ---------------------------------------------------------------------

/// The kinds of search the employees make.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    NamePart,
    WholeName,
    Phone,
    Reference,
    TitleInCategory,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::NamePart,
        Kind::WholeName,
        Kind::Phone,
        Kind::Reference,
        Kind::TitleInCategory,
    ];

    fn label(self) -> &'static str {
        match self {
            Kind::NamePart => "part of a name (q)",
            Kind::WholeName => "whole name (q)",
            Kind::Phone => "exact phone (phone)",
            Kind::Reference => "reference code (q)",
            Kind::TitleInCategory => "title word + category",
        }
    }
}

/// What one or more clients saw.
#[derive(Default)]
struct Tally {
    searches: u64,
    filings: u64,
    /// Answers other than 2xx.
    status_errors: u64,
    /// Requests that got no answer (connection refused or cut, timeout, bad response).
    transport_errors: u64,
    /// Search latencies (successful searches), with their kind.
    latencies: Vec<(Kind, f64)>,
    /// The first few errors, to show what went wrong.
    samples: Vec<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.searches += o.searches;
        self.filings += o.filings;
        self.status_errors += o.status_errors;
        self.transport_errors += o.transport_errors;
        self.latencies.extend(o.latencies);
        for s in o.samples {
            if self.samples.len() < 5 {
                self.samples.push(s);
            }
        }
    }

    fn status_error(&mut self, what: &str, status: u16, body: &[u8]) {
        self.status_errors += 1;
        if self.samples.len() < 5 {
            let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            self.samples.push(format!("{what}: {status} {body}"));
        }
    }

    fn transport_error(&mut self, what: &str, e: &anyhow::Error) {
        self.transport_errors += 1;
        if self.samples.len() < 5 {
            self.samples.push(format!("{what}: {e:#}"));
        }
        // Do not spin on a server that is gone.
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn searcher(
    client: &mut Client,
    rng: &mut StdRng,
    references: &[String],
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let kind = Kind::ALL[rng.gen_range(0..Kind::ALL.len())];
        let i = rng.gen_range(0..references.len().max(1));
        let query = match kind {
            Kind::NamePart => format!("q={}", SURNAMES[rng.gen_range(0..SURNAMES.len())]),
            Kind::WholeName => format!("q={}", url_encode(&customer_name(i))),
            Kind::Phone => format!("phone={}", phone(i)),
            Kind::Reference => match references.get(i) {
                Some(r) => format!("q={}", url_encode(r)),
                None => format!("q={}", url_encode(&customer_name(i))),
            },
            Kind::TitleInCategory => format!(
                "q={}&category={CATEGORY}&page={}",
                TITLE_WORDS[rng.gen_range(0..TITLE_WORDS.len())],
                rng.gen_range(1..=3)
            ),
        };
        let path = format!("/api/v1/records?{query}");
        let t = Instant::now();
        match client.call("GET", &path, None) {
            Ok((200, _)) => {
                tally.searches += 1;
                tally
                    .latencies
                    .push((kind, t.elapsed().as_secs_f64() * 1000.0));
            }
            Ok((status, body)) => tally.status_error("search", status, &body),
            Err(e) => tally.transport_error("search", &e),
        }
    }
    tally
}

fn filer(client: &mut Client, category_id: &str, next: &AtomicUsize, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let body = record_body(category_id, i).to_string();
        match client.call("POST", "/api/v1/records", Some(body.as_bytes())) {
            Ok((201, _)) => tally.filings += 1,
            Ok((status, body)) => tally.status_error("filing", status, &body),
            Err(e) => tally.transport_error("filing", &e),
        }
    }
    tally
}

/// Files `n` records with [`SEED_CLIENTS`] clients; returns their reference codes.
fn seed(port: u16, token: &str, category_id: &str, n: usize) -> Result<Vec<String>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for _ in 0..SEED_CLIENTS {
        let (next, token, category_id) = (next.clone(), token.to_string(), category_id.to_string());
        threads.push(std::thread::spawn(
            move || -> Result<Vec<(usize, String)>> {
                let mut client = Client::new(port, token);
                let mut filed = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        return Ok(filed);
                    }
                    let (status, record) =
                        client.json("POST", "/api/v1/records", &record_body(&category_id, i))?;
                    if status != 201 {
                        bail!("seed record {i}: {status} {record}");
                    }
                    let reference = record["reference"].as_str().context("reference")?;
                    filed.push((i, reference.to_string()));
                }
            },
        ));
    }
    let mut all = Vec::with_capacity(n);
    for th in threads {
        all.extend(
            th.join()
                .map_err(|_| anyhow::anyhow!("a seeding client panicked"))??,
        );
    }
    // Index i holds record i's reference, so a search by reference and one by the same
    // record's name or phone are about the same record.
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

// ---- the generated records ------------------------------------------------------------------

const SURNAMES: [&str; 20] = [
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma",
    "Zhu", "Hu", "Guo", "He", "Lin", "Gao", "Luo",
];
const GIVEN_NAMES: [&str; 16] = [
    "Wei", "Fang", "Na", "Min", "Jing", "Lei", "Qiang", "Jun", "Yan", "Jie", "Tao", "Ming", "Chao",
    "Xiu", "Hui", "Ping",
];
const TITLE_WORDS: [&str; 6] = ["Account", "Loan", "Mortgage", "Card", "Deposit", "Closure"];

fn customer_name(i: usize) -> String {
    format!(
        "{} {}",
        SURNAMES[i % SURNAMES.len()],
        GIVEN_NAMES[(i / SURNAMES.len()) % GIVEN_NAMES.len()]
    )
}

/// A mainland mobile number, distinct for every `i` below 10^8 (7919 is prime to 10^8).
fn phone(i: usize) -> String {
    format!("138{:08}", (i as u64 * 7919 + 12_345) % 100_000_000)
}

fn record_body(category_id: &str, i: usize) -> Value {
    json!({
        "category_id": category_id,
        "title": format!("{} file {i}", TITLE_WORDS[i % TITLE_WORDS.len()]),
        "fields": {"customer_name": customer_name(i), "phone": phone(i)},
    })
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- the figures ----------------------------------------------------------------------------

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn report(t: &Tally, window: Duration, before: &Verified, after: &Verified) {
    let secs = window.as_secs_f64().max(1e-9);
    let client_actions = t.searches + t.filings;
    println!("load window {:.1} s:", secs);

    let added = match (before.events, after.events) {
        (Some(b), Some(a)) if a >= b => Some(a - b),
        _ => None,
    };
    match added {
        Some(added) => {
            let rate = added as f64 / secs;
            println!(
                "  audited actions/s            {rate:>9.0}   ({added} audit events added)   \
                 target >= {TARGET_ACTIONS_PER_S:.0}: {}",
                met(rate >= TARGET_ACTIONS_PER_S)
            );
        }
        None => println!(
            "  audited actions/s                  n/a   (no event count from verify-audit)"
        ),
    }
    println!(
        "  successful searches+filings/s {:>8.0}   ({} searches, {} filings, client side)",
        client_actions as f64 / secs,
        t.searches,
        t.filings
    );

    let mut all: Vec<f64> = t.latencies.iter().map(|(_, ms)| *ms).collect();
    all.sort_by(f64::total_cmp);
    let p95 = percentile(&all, 0.95);
    println!(
        "  search latency p50/p95/p99   {:>6.1} / {:.1} / {:.1} ms ({:.0} searches/s)   \
         target p95 < {TARGET_SEARCH_P95_MS:.0} ms: {}",
        percentile(&all, 0.50),
        p95,
        percentile(&all, 0.99),
        t.searches as f64 / secs,
        met(p95 < TARGET_SEARCH_P95_MS)
    );
    for kind in Kind::ALL {
        let mut v: Vec<f64> = t
            .latencies
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, ms)| *ms)
            .collect();
        v.sort_by(f64::total_cmp);
        println!(
            "    {:<26} p50 {:>6.1} ms, p95 {:>6.1} ms, p99 {:>6.1} ms ({} searches)",
            kind.label(),
            percentile(&v, 0.50),
            percentile(&v, 0.95),
            percentile(&v, 0.99),
            v.len()
        );
    }
    println!(
        "  filing rate                  {:>9.1} records/s",
        t.filings as f64 / secs
    );
    let errors = t.status_errors + t.transport_errors;
    println!(
        "  errors                       {errors:>9}   ({} non-2xx, {} transport)   target 0: {}",
        t.status_errors,
        t.transport_errors,
        met(errors == 0)
    );
    for s in &t.samples {
        println!("    e.g. {s}");
    }
    println!(
        "  verify-audit after the load ({} s settle, {:.1} s): {}   target chain OK: {}",
        SETTLE.as_secs(),
        after.took.as_secs_f64(),
        after.line,
        met(after.ok)
    );
}

// ---- the server and its command line --------------------------------------------------------

/// What `strongroom verify-audit` said.
struct Verified {
    line: String,
    ok: bool,
    /// N of "audit chain OK: N events".
    events: Option<u64>,
    took: Duration,
}

/// `strongroom verify-audit` against the running server's data dir (it uses the server's
/// cluster). A broken chain is a figure, not a failure of the bench.
fn verify_audit(bin: &Path, data_dir: &Path) -> Result<Verified> {
    let t = Instant::now();
    let out = strongroom_cmd(bin)
        .arg("verify-audit")
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()
        .context("running strongroom verify-audit")?;
    let took = t.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout
        .lines()
        .find(|l| l.starts_with("audit chain"))
        .map(str::to_string)
    else {
        bail!(
            "strongroom verify-audit ({}) said no verdict: {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let events = line
        .strip_prefix("audit chain OK: ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    Ok(Verified {
        ok: out.status.success() && events.is_some(),
        line,
        events,
        took,
    })
}

/// Stops the server's cluster and removes `dir` if this process dies before [`Cleanup`]
/// can (the server, started by us, would otherwise leave its cluster running).
fn watchdog(data_dir: &Path, dir: &Path) -> Result<Child> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let pg = EmbeddedPg::ensure_running(data_dir, &StartOptions::default()).await?;
        let w = pg.stop_on_process_exit(Some(dir))?;
        drop(pg); // not the owner: the server stops the cluster
        Ok::<_, anyhow::Error>(w)
    })
}

/// `strongroom user add` against the running server's data dir, in [`DEPARTMENT`], with
/// [`PASSWORD`].
fn add_user(bin: &Path, data_dir: &Path, username: &str, role: &str, display: &str) -> Result<()> {
    let mut add = strongroom_cmd(bin)
        .args(["user", "add", "--username", username, "--role", role])
        .args(["--department", DEPARTMENT, "--display-name", display])
        .arg("--password-stdin")
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    add.stdin
        .take()
        .context("user add stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    let out = add.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "strongroom user add {username} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Signs in through the API; returns the bearer token of a new session.
fn login(port: u16, username: &str) -> Result<String> {
    let mut c = Client::new(port, String::new());
    let (status, body) = c.json(
        "POST",
        "/api/v1/login",
        &json!({"username": username, "password": PASSWORD}),
    )?;
    if status != 200 {
        bail!("login as {username}: {status} {body}");
    }
    Ok(body["token"].as_str().context("login token")?.to_string())
}

fn wait_healthy(cleanup: &mut Cleanup, port: u16) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(child) = cleanup.server.as_mut() {
            if let Some(status) = child.try_wait()? {
                cleanup.server = None;
                bail!("the server exited during start-up ({status})");
            }
        }
        if let Ok((200, _)) = Client::new(port, String::new()).call("GET", "/healthz", None) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not answer /healthz within {} s",
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---- a small keep-alive HTTP/1.1 client -----------------------------------------------------

/// One client of the API: a bearer token (empty: none) and a keep-alive connection,
/// opened again when the server closes it.
struct Client {
    port: u16,
    token: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(port: u16, token: String) -> Client {
        Client {
            port,
            token,
            conn: None,
        }
    }

    /// A JSON request; returns the status and the parsed body (`Null` when not JSON).
    fn json(&mut self, method: &str, path: &str, body: &Value) -> Result<(u16, Value)> {
        let (status, bytes) = self.call(method, path, Some(body.to_string().as_bytes()))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }

    /// One request (a JSON body when given); returns the status and the body. A kept
    /// connection the server closed meanwhile is replaced once, silently.
    fn call(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Vec<u8>)> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n",
            self.port,
            body.map_or(0, <[u8]>::len)
        );
        if body.is_some() {
            request.push_str("Content-Type: application/json\r\n");
        }
        if !self.token.is_empty() {
            request.push_str(&format!("Authorization: Bearer {}\r\n", self.token));
        }
        request.push_str("\r\n");
        let mut request = request.into_bytes();
        request.extend_from_slice(body.unwrap_or_default());

        let reused = self.conn.is_some();
        if let Some(answer) = self.exchange(&request)? {
            return Ok(answer);
        }
        if reused {
            if let Some(answer) = self.exchange(&request)? {
                return Ok(answer);
            }
        }
        bail!("the server closed the connection without answering")
    }

    /// Sends the request on the kept connection (or a new one) and reads the answer.
    /// `None`: the connection was closed before any byte of an answer.
    fn exchange(&mut self, request: &[u8]) -> Result<Option<(u16, Vec<u8>)>> {
        let reused = self.conn.is_some();
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => BufReader::new(connect(self.port)?),
        };
        if let Err(e) = conn.get_mut().write_all(request) {
            if reused {
                return Ok(None);
            }
            return Err(e).context("sending the request");
        }
        let mut status_line = String::new();
        match conn.read_line(&mut status_line) {
            Ok(0) => return Ok(None),
            Err(_) if reused => return Ok(None),
            Err(e) => return Err(e).context("reading the status line"),
            Ok(_) => {}
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            let mut h = String::new();
            if conn.read_line(&mut h)? == 0 {
                bail!("connection closed inside the response headers");
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size_line = String::new();
                conn.read_line(&mut size_line)?;
                let n = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("bad chunk size {size_line:?}"))?;
                if n == 0 {
                    // The (empty) trailer section.
                    let mut end = String::new();
                    conn.read_line(&mut end)?;
                    break;
                }
                let at = body.len();
                body.resize(at + n, 0);
                conn.read_exact(&mut body[at..])
                    .context("connection closed inside the response body")?;
                let mut crlf = [0u8; 2];
                conn.read_exact(&mut crlf)?;
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            conn.read_exact(&mut body)
                .context("connection closed inside the response body")?;
        } else {
            conn.read_to_end(&mut body)?;
            close = true;
        }
        if !close {
            self.conn = Some(conn);
        }
        Ok(Some((status, body)))
    }
}

fn connect(port: u16) -> Result<TcpStream> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    Ok(s)
}
