//! Search benchmark (`cargo bench --bench search`).
//!
//! Fills a migrated database on a temporary embedded PostgreSQL cluster with 1,000,000
//! records (`STRONGROOM_BENCH_RECORDS` changes it), then times searches through the real
//! Rocket app (local asynchronous client, as in the tests) as an employee of the
//! categories' department: Chinese fragments of 1 to 6 characters that match many records
//! (公司, 有限公司), a few (宏达, 上海宏达科技) or none, a mixed Latin/Chinese fragment
//! (上海Bluepeak), Latin fragments (many, a partial company name, none), exact phone
//! (`phone=`, blind index) and reference code (`q=`). Prints how many records each case's
//! fragments match, then p50/p95/max per case and PASS/MISS against p95 < 50 ms; for a
//! case that misses it prints the `EXPLAIN ANALYZE` of the queries the app runs. Figures
//! are printed, never asserted: the machine is shared and noisy.
//!
//! Names: 60 % Chinese (place + two brand characters + industry + legal form, e.g.
//! 上海宏达科技有限公司, one in a hundred with a rarer brand character) with Chinese titles
//! (贷款合同, 开户资料, 保险理赔 …), 5 % mixed (上海Bluepeak科技有限公司), 35 % Latin.
//!
//! The fill:
//! - categories and the physical register are made through the API, as an archivist:
//!   `CUST` (internal) > `CORP` (internal) > `CONTR` (confidential: company_name, sensitive
//!   phone and id_number), all department Retail, and `CLAIM` (confidential, department
//!   Claims, company_name and phone), which the Retail employee may not see;
//! - records, their sealed values and their physical part are written with COPY in
//!   batches, generated in Rust on another thread while the previous batch is copied.
//!   Sealed values are real: `KeyRing::encrypt_field` ciphertext and
//!   `KeyRing::blind_index` of the normalized value, with the app's key ring, so hits
//!   decrypt and mask as in production;
//! - the secondary indexes of the three tables are dropped before the COPY and re-created
//!   from their own definitions (`pg_indexes`) afterwards, then `ANALYZE`. Primary keys
//!   and foreign keys stay in force during the load.
//!
//! Cluster settings: the test harness's (fsync, synchronous_commit and full_page_writes
//! off) plus maintenance_work_mem and max_wal_size for the load; the rest are PostgreSQL's
//! defaults, as for `strongroom serve`. The temp dir and the cluster are removed at the end,
//! and by a watchdog if this process dies first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should stop it loudly

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Datelike, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::Client;
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use strongroom::audit::Actor;
use strongroom::config::Config;
use strongroom::crypto::KeyRing;
use strongroom::pg::{EmbeddedPg, StartOptions};
use strongroom::users::{self, NewUser, Role};
use uuid::Uuid;

const PASSWORD: &str = "benchmark passphrase, long enough";
const BATCH: usize = 20_000;
const TARGET_P95_MS: f64 = 50.0;
const REMOTE: &str = "10.9.8.7:4000";

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(run());
    drop(rt);
    if let Err(e) = result {
        eprintln!("search bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn env_number(name: &str, default: usize) -> Result<usize> {
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

/// Stops the cluster and removes the temp dir if the bench ends early (error or panic):
/// EOF on the watchdog's stdin does both. The normal path stops the cluster itself first.
struct Cleanup {
    dir: PathBuf,
    watchdog: Option<std::process::Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(mut w) = self.watchdog.take() {
            drop(w.stdin.take());
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run() -> Result<()> {
    let n = env_number("STRONGROOM_BENCH_RECORDS", 1_000_000)?;
    let searches = env_number("STRONGROOM_BENCH_SEARCHES", 200)?;
    let dir = std::env::temp_dir().join(format!("sr-bench-search-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cleanup = Cleanup {
        dir: dir.clone(),
        watchdog: None,
    };
    println!(
        "search bench: {n} records, {searches} searches per kind, temp dir {}",
        dir.display()
    );
    let t = Instant::now();
    let opts = StartOptions {
        bin_dir: None,
        settings: [
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("maintenance_work_mem", "512MB"),
            ("max_wal_size", "8GB"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    let pg = EmbeddedPg::ensure_running(&dir, &opts)
        .await
        .context("starting the temporary cluster")?;
    cleanup.watchdog = Some(pg.stop_on_process_exit(Some(&dir))?);
    println!("  cluster started in {:.1} s", t.elapsed().as_secs_f64());
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect_with(pg.connect_options(strongroom::pg::DATABASE))
        .await?;
    let result = bench(&dir, &pool, n, searches).await;
    pool.close().await;
    let stopped = pg.stop().await;
    drop(cleanup);
    result?;
    stopped.context("stopping the cluster")?;
    Ok(())
}

// ---- the app ------------------------------------------------------------------------------

struct Api {
    client: Client,
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (Status, Value) {
        let mut req = match method {
            "POST" => self.client.post(path.to_string()),
            _ => self.client.get(path.to_string()),
        };
        req = req.remote(REMOTE.parse().expect("socket address"));
        if let Some(t) = token {
            req = req.header(Header::new("Authorization", format!("Bearer {t}")));
        }
        if let Some(b) = body {
            req = req.header(ContentType::JSON).body(b.to_string());
        }
        let res = req.dispatch().await;
        let status = res.status();
        let value = res.into_json::<Value>().await.unwrap_or(Value::Null);
        (status, value)
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Result<Value> {
        let (s, v) = self.call("POST", path, Some(token), Some(body)).await;
        if !matches!(s, Status::Ok | Status::Created) {
            bail!("POST {path}: {s} {v}");
        }
        Ok(v)
    }

    async fn login(&self, username: &str) -> Result<String> {
        let (s, v) = self
            .call(
                "POST",
                "/api/v1/login",
                None,
                Some(json!({"username": username, "password": PASSWORD})),
            )
            .await;
        if s != Status::Ok {
            bail!("login {username}: {s} {v}");
        }
        Ok(v["token"].as_str().context("token")?.to_string())
    }

    fn keys(&self) -> &KeyRing {
        &self
            .client
            .rocket()
            .state::<strongroom::App>()
            .expect("managed App")
            .keys
    }
}

async fn add_user(pool: &PgPool, username: &str, role: Role, department: &str) -> Result<Uuid> {
    let u = users::create_by_operator(
        pool,
        &strongroom::auth::password::Hasher::new(1, std::time::Duration::from_secs(60)),
        &Actor::system("bench"),
        NewUser {
            username: username.into(),
            display_name: Some(username.into()),
            department: Some(department.into()),
            roles: vec![role],
            password: SecretString::from(PASSWORD),
            must_change_password: false,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("creating {username}: {e}"))?;
    Ok(u.id.0)
}

/// A category of the fill: its id, code, share of the records and fields.
#[derive(Clone)]
struct Cat {
    id: Uuid,
    code: String,
    title_prefix: &'static str,
    /// Per mille of the records.
    share: u32,
    phone: bool,
    id_number: bool,
    /// The Retail employee may read it.
    visible: bool,
}

async fn bench(dir: &std::path::Path, pool: &PgPool, n: usize, searches: usize) -> Result<()> {
    let t = Instant::now();
    strongroom::db::MIGRATOR.run(pool).await?;
    let mut config = Config {
        data_dir: dir.join("vault"),
        ..Config::default()
    };
    config.port = 0;
    let vault = strongroom::cli::open_vault(&config)?;
    let api = Api {
        client: Client::untracked(strongroom::build(config, pool.clone(), vault)).await?,
    };
    let archivist_id = add_user(pool, "bench.archivist", Role::Archivist, "Retail").await?;
    add_user(pool, "bench.employee", Role::Employee, "Retail").await?;
    let archivist = api.login("bench.archivist").await?;
    let employee = api.login("bench.employee").await?;

    let company =
        json!({"name": "company_name", "label": "Company", "type": "text", "required": true});
    let cust = api
        .post(
            "/api/v1/categories",
            &archivist,
            json!({"code": "CUST", "name": "Customers", "sensitivity": "internal",
            "department": "Retail", "retention_years": 10, "fields": [company]}),
        )
        .await?;
    let corp = api
        .post("/api/v1/categories", &archivist, json!({"code": "CORP", "name": "Corporate", "parent_id": cust["id"],
            "sensitivity": "internal", "department": "Retail", "retention_years": 10, "fields": [company]}))
        .await?;
    let contr = api
        .post("/api/v1/categories", &archivist, json!({"code": "CONTR", "name": "Contracts", "parent_id": corp["id"],
            "sensitivity": "confidential", "department": "Retail", "retention_years": 30, "fields": [
                company,
                {"name": "phone", "type": "phone", "sensitive": true},
                {"name": "id_number", "type": "id_number", "sensitive": true}]}))
        .await?;
    let claim = api
        .post(
            "/api/v1/categories",
            &archivist,
            json!({"code": "CLAIM", "name": "Claims", "sensitivity": "confidential",
            "department": "Claims", "retention_years": 10, "fields": [
                company, {"name": "phone", "type": "phone", "sensitive": true}]}),
        )
        .await?;
    let id_of =
        |v: &Value| -> Result<Uuid> { Ok(v["id"].as_str().context("category id")?.parse()?) };
    let cats = vec![
        Cat {
            id: id_of(&cust)?,
            code: "CUST".into(),
            title_prefix: "Customer file",
            share: 100,
            phone: false,
            id_number: false,
            visible: true,
        },
        Cat {
            id: id_of(&corp)?,
            code: "CORP".into(),
            title_prefix: "Corporate account",
            share: 150,
            phone: false,
            id_number: false,
            visible: true,
        },
        Cat {
            id: id_of(&contr)?,
            code: "CONTR".into(),
            title_prefix: "Framework agreement",
            share: 500,
            phone: true,
            id_number: true,
            visible: true,
        },
        Cat {
            id: id_of(&claim)?,
            code: "CLAIM".into(),
            title_prefix: "Claim",
            share: 250,
            phone: true,
            id_number: false,
            visible: false,
        },
    ];
    for room in ["SR1", "SR2"] {
        for shelf in 1..=5 {
            for b in 1..=10 {
                api.post(
                    "/api/v1/register",
                    &archivist,
                    json!({"storeroom": room, "name": format!("Storeroom {room}"),
                           "shelf": format!("A{shelf}"), "box": format!("B{shelf}{b:03}")}),
                )
                .await?;
            }
        }
    }
    let boxes: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM boxes ORDER BY code")
        .fetch_all(pool)
        .await?;
    println!(
        "  migrated, app built, users, {} categories and {} boxes made through the API in {:.1} s",
        cats.len(),
        boxes.len(),
        t.elapsed().as_secs_f64()
    );

    // ---- the fill ---------------------------------------------------------------------------
    // `KeyRing` is not `Clone`: the generator thread loads its own copy of the key file
    // `open_vault` wrote for the app.
    let keys = KeyRing::load_or_create(&dir.join("vault").join("master.key"))?;
    let samples = fill(pool, keys, &cats, &boxes, archivist_id, n, searches).await?;

    // ---- the searches ----------------------------------------------------------------------
    let scope: Vec<Uuid> = cats.iter().filter(|c| c.visible).map(|c| c.id).collect();
    let cases = cases(&samples)?;
    match_counts(pool, &cases).await?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut timings: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    let mut hits: Vec<(usize, usize)> = vec![(0, 0); cases.len()];
    let warmup = 5.min(searches);
    for i in 0..warmup + searches {
        for (c, case) in cases.iter().enumerate() {
            let v = case.values.choose(&mut rng).context("no samples")?;
            let path = format!("/api/v1/records?{}={}", case.param, url_encode(v));
            let t = Instant::now();
            let (s, body) = api.call("GET", &path, Some(&employee), None).await;
            let d = t.elapsed();
            if s != Status::Ok {
                bail!("GET {path}: {s} {body}");
            }
            if i >= warmup {
                timings[c].push(d);
                let h = body["hits"].as_array().map_or(0, Vec::len);
                hits[c].0 += h;
                if h == 0 {
                    hits[c].1 += 1;
                }
            }
        }
    }
    println!("searches through the app as a Retail employee ({searches} each, after {warmup} warm-up each, interleaved; ms)");
    let mut missed = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        let mut v: Vec<f64> = timings[c].iter().map(|d| d.as_secs_f64() * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let (p50, p95, max) = (percentile(&v, 0.50), percentile(&v, 0.95), v[v.len() - 1]);
        let (total_hits, zero) = hits[c];
        let ok = p95 < TARGET_P95_MS;
        println!(
            "  {:<34} p50 {p50:>7.1}  p95 {p95:>7.1}  max {max:>7.1}   p95 < {TARGET_P95_MS} ms: {}   (hits/page avg {:.1}, {zero} with none; e.g. {})",
            case.label,
            if ok { "PASS" } else { "MISS" },
            total_hits as f64 / v.len() as f64,
            case.values[0],
        );
        if !ok {
            missed.push(c);
        }
    }
    for c in missed {
        explain(pool, api.keys(), &scope, &cases[c]).await?;
    }
    Ok(())
}

/// One kind of search: a query parameter and the values searched for, picked at random.
struct Case {
    label: String,
    param: &'static str,
    values: Vec<String>,
    /// How many records match (`q` only): "many", "few" or "none".
    text: bool,
}

/// Fragments of Chinese text that match most records, a few, or none, by length in
/// characters (1 to 6). "None" of two or more characters are made of characters the names
/// do hold, in orders they never have (a bigram that never occurs, or bigrams that each
/// occur but never together, as 份有限责: 股份有限公司 and 有限责任公司 exist).
const CJK_MANY: [[&str; 3]; 6] = [
    ["公", "司", "有"],
    ["公司", "有限", "合同"],
    ["有限公", "限公司", "贷款合"],
    ["有限公司", "贷款合同", "开户资料"],
    ["份有限公司", "团有限公司", "限责任公司"],
    ["股份有限公司", "集团有限公司", "有限责任公司"],
];
const CJK_NONE: [[&str; 3]; 6] = [
    ["龘", "靐", "齉"],
    ["司宏", "技贸", "限科"],
    ["上海口", "司宏达", "份有责"],
    ["上海口宏", "份有限责", "司宏达科"],
    ["份有限责任", "上海口宏达", "司宏达科技"],
    ["份有限责任公", "上海口宏达科", "司宏达科技有"],
];

fn cases(samples: &Samples) -> Result<Vec<Case>> {
    let text = |label: String, values: Vec<String>| -> Result<Case> {
        if values.is_empty() {
            bail!("no samples for {label}");
        }
        Ok(Case {
            label,
            param: "q",
            values,
            text: true,
        })
    };
    let mut cases = Vec::new();
    for k in 1..=6 {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        cases.push(text(
            format!("CJK {k} char, many"),
            owned(&CJK_MANY[k - 1]),
        )?);
        cases.push(text(
            format!("CJK {k} char, few"),
            samples.cjk[k - 1].clone(),
        )?);
        cases.push(text(
            format!("CJK {k} char, none"),
            owned(&CJK_NONE[k - 1]),
        )?);
    }
    cases.push(text("mixed Latin+CJK, few".into(), samples.mixed.clone())?);
    cases.push(text(
        "Latin, many".into(),
        ["Ltd", "framework", "Customer file"]
            .map(String::from)
            .to_vec(),
    )?);
    cases.push(text(
        "Latin partial name, few".into(),
        samples.names.clone(),
    )?);
    cases.push(text(
        "Latin, none".into(),
        ["Zyxwv", "Qqqq Ltd", "Bluepeak Zinc"]
            .map(String::from)
            .to_vec(),
    )?);
    cases.push(text(
        "reference code (q=)".into(),
        samples.references.clone(),
    )?);
    if samples.phones.is_empty() {
        bail!("no phone samples");
    }
    cases.push(Case {
        label: "exact phone (phone=)".into(),
        param: "phone",
        values: samples.phones.clone(),
        text: false,
    });
    Ok(cases)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[i - 1]
}

fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---- the fill -------------------------------------------------------------------------------

/// First parts and second parts of coined company names ("Huaxin", "Bluepeak"): 1,024
/// names, times 30 industries and 8 legal forms.
const SYL_A: [&str; 32] = [
    "Hua", "Zhong", "Jin", "Xin", "Bao", "Tian", "Long", "Feng", "Hai", "Shan", "Da", "Guo",
    "Hong", "Rui", "Sheng", "Tai", "Blue", "Green", "North", "Silver", "Iron", "Oak", "Star",
    "Sun", "Clear", "Bright", "High", "West", "East", "Red", "Stone", "Gold",
];
const SYL_B: [&str; 32] = [
    "xin", "tai", "da", "yuan", "feng", "hua", "sheng", "kang", "peak", "field", "bridge", "gate",
    "stone", "water", "ridge", "wood", "haven", "point", "crest", "vale", "ford", "land", "mark",
    "line", "port", "well", "brook", "star", "light", "wave", "rock", "tech",
];
const INDUSTRY: [&str; 30] = [
    "Trading",
    "Logistics",
    "Textiles",
    "Electronics",
    "Pharmaceutical",
    "Machinery",
    "Foods",
    "Chemicals",
    "Construction",
    "Energy",
    "Software",
    "Consulting",
    "Shipping",
    "Insurance Brokers",
    "Paper",
    "Furniture",
    "Steel",
    "Automotive",
    "Agriculture",
    "Media",
    "Printing",
    "Ceramics",
    "Optics",
    "Medical Devices",
    "Packaging",
    "Properties",
    "Securities",
    "Retail",
    "Telecom",
    "Plastics",
];
const LEGAL: [&str; 8] = [
    "Co Ltd",
    "Co",
    "Group",
    "Holdings",
    "Ltd",
    "Corporation",
    "Partners",
    "Industries",
];

/// Shares of the names: Chinese (上海宏达科技有限公司), mixed (上海Bluepeak科技有限公司), and
/// the rest Latin (Bluepeak Trading Co Ltd), in per cent.
const CHINESE_PERCENT: u32 = 60;
const MIXED_PERCENT: u32 = 5;
const PLACES: [&str; 40] = [
    "上海",
    "北京",
    "深圳",
    "广州",
    "杭州",
    "苏州",
    "南京",
    "成都",
    "武汉",
    "宁波",
    "天津",
    "重庆",
    "西安",
    "长沙",
    "青岛",
    "厦门",
    "福州",
    "合肥",
    "济南",
    "郑州",
    "无锡",
    "佛山",
    "东莞",
    "昆明",
    "大连",
    "沈阳",
    "温州",
    "泉州",
    "南昌",
    "贵阳",
    "太原",
    "石家庄",
    "哈尔滨",
    "长春",
    "南宁",
    "海口",
    "兰州",
    "乌鲁木齐",
    "呼和浩特",
    "银川",
];
/// Characters of coined brand names (宏达, 鑫源): 3,600 pairs.
const BRAND: [&str; 60] = [
    "宏", "达", "鑫", "源", "华", "信", "金", "泰", "恒", "通", "盛", "隆", "瑞", "祥", "丰", "利",
    "安", "康", "永", "昌", "兴", "佳", "德", "荣", "顺", "嘉", "创", "新", "力", "和", "天", "美",
    "润", "宝", "博", "诚", "远", "辰", "亿", "凯", "中", "光", "明", "联", "众", "成", "富", "腾",
    "飞", "汇", "星", "龙", "志", "骏", "扬", "锦", "益", "峰", "晟", "伟",
];
/// Rarer brand characters: each in about one name in 2,000.
const RARE: [&str; 20] = [
    "皓", "璟", "琨", "曦", "翎", "铖", "珏", "骐", "淼", "焱", "垚", "蔚", "翊", "珩", "煜", "钰",
    "玥", "昱", "旻", "晔",
];
const CN_INDUSTRY: [&str; 20] = [
    "科技", "贸易", "实业", "电子", "物流", "建设", "医药", "食品", "化工", "纺织", "机械", "能源",
    "投资", "置业", "传媒", "环保", "材料", "装饰", "农业", "咨询",
];
const CN_LEGAL: [&str; 10] = [
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "有限公司",
    "股份有限公司",
    "股份有限公司",
    "集团有限公司",
    "有限责任公司",
];
const CN_TITLES: [&str; 12] = [
    "贷款合同",
    "开户资料",
    "保险理赔",
    "授信审批",
    "抵押登记",
    "担保协议",
    "租赁合同",
    "采购合同",
    "年度审计",
    "工商变更",
    "结算账户",
    "信用报告",
];

/// One batch of COPY text (tab-separated, `\N`-free) for the three tables.
struct Batch {
    records: Vec<u8>,
    sealed: Vec<u8>,
    physical: Vec<u8>,
    rows: usize,
}

/// Values that exist among the records the employee may see, to search for.
#[derive(Default)]
struct Samples {
    /// First half of a company name (at least the first word and two letters of the next).
    names: Vec<String>,
    /// Phones of CONTR records, as digits.
    phones: Vec<String>,
    references: Vec<String>,
    /// Fragments of Chinese names of 1 to 6 characters that a few records hold: a rare
    /// character, then from the brand on (宏达, 宏达科, 宏达科技, 海宏达科技, 上海宏达科技).
    cjk: [Vec<String>; 6],
    /// Place and Latin brand of a mixed name (上海Bluepeak).
    mixed: Vec<String>,
}

struct Generated {
    samples: Samples,
    counters: HashMap<(Uuid, i32), i64>,
    sealed_rows: usize,
    physical_rows: usize,
}

fn partial(name: &str, first_word: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    let half = chars.len().div_ceil(2).max(first_word + 3).min(chars.len());
    chars[..half].iter().collect()
}

fn generate(
    keys: KeyRing,
    cats: Vec<Cat>,
    boxes: Vec<Uuid>,
    author: Uuid,
    n: usize,
    searches: usize,
    tx: tokio::sync::mpsc::Sender<Batch>,
) -> Generated {
    let mut rng = StdRng::seed_from_u64(0x0053_5242_454e_4348);
    let now = Utc::now();
    let span = chrono::Duration::days(3 * 365);
    let start = now - span;
    let step_ms = span.num_milliseconds() as f64 / n as f64;
    let sample_every = (n / (searches * 5)).max(1);
    let cap = searches * 5;
    let mut g = Generated {
        samples: Samples::default(),
        counters: HashMap::new(),
        sealed_rows: 0,
        physical_rows: 0,
    };
    let statuses = ["in_store", "on_loan", "missing"];
    let mut batch = new_batch();
    for i in 0..n {
        let pick = rng.gen_range(0..1000u32);
        let mut acc = 0;
        let cat = cats
            .iter()
            .find(|c| {
                acc += c.share;
                pick < acc
            })
            .unwrap_or(&cats[cats.len() - 1]);
        let id = uuid::Builder::from_random_bytes(rng.gen()).into_uuid();
        let ms = (i as f64 * step_ms) as i64 + rng.gen_range(0..step_ms.max(1.0) as i64);
        let at: DateTime<Utc> = start + chrono::Duration::milliseconds(ms);
        let year = at.year();
        let seq = g.counters.entry((cat.id, year)).or_insert(0);
        *seq += 1;
        let reference = format!("{}-{year}-{:06}", cat.code, seq);
        let first = format!(
            "{}{}",
            SYL_A[rng.gen_range(0..SYL_A.len())],
            SYL_B[rng.gen_range(0..SYL_B.len())]
        );
        let style = rng.gen_range(0..100u32);
        let sample = i % sample_every == 0;
        let (name, title) = if style < CHINESE_PERCENT {
            // 上海 + 宏达 + 科技 + 有限公司; one name in a hundred has a rare brand character.
            let place = PLACES[rng.gen_range(0..PLACES.len())];
            let rare = rng.gen_bool(0.01);
            let b1 = if rare {
                RARE[rng.gen_range(0..RARE.len())]
            } else {
                BRAND[rng.gen_range(0..BRAND.len())]
            };
            let b2 = BRAND[rng.gen_range(0..BRAND.len())];
            let name = format!(
                "{place}{b1}{b2}{}{}",
                CN_INDUSTRY[rng.gen_range(0..CN_INDUSTRY.len())],
                CN_LEGAL[rng.gen_range(0..CN_LEGAL.len())]
            );
            let title = format!("{} {name}", CN_TITLES[rng.gen_range(0..CN_TITLES.len())]);
            if cat.visible {
                let chars: Vec<char> = name.chars().collect();
                let at = place.chars().count();
                if rare && g.samples.cjk[0].len() < cap {
                    g.samples.cjk[0].push(b1.to_string());
                }
                if sample {
                    for k in 2..=6usize {
                        let from = at - k.saturating_sub(4);
                        if g.samples.cjk[k - 1].len() < cap {
                            g.samples.cjk[k - 1].push(chars[from..from + k].iter().collect());
                        }
                    }
                }
            }
            (name, title)
        } else if style < CHINESE_PERCENT + MIXED_PERCENT {
            // 上海Bluepeak科技有限公司
            let place = PLACES[rng.gen_range(0..PLACES.len())];
            let name = format!(
                "{place}{first}{}{}",
                CN_INDUSTRY[rng.gen_range(0..CN_INDUSTRY.len())],
                CN_LEGAL[rng.gen_range(0..CN_LEGAL.len())]
            );
            if cat.visible && g.samples.mixed.len() < cap && rng.gen_bool(0.1) {
                g.samples.mixed.push(format!("{place}{first}"));
            }
            let title = format!("{} {name}", CN_TITLES[rng.gen_range(0..CN_TITLES.len())]);
            (name, title)
        } else {
            let name = format!(
                "{first} {} {}",
                INDUSTRY[rng.gen_range(0..INDUSTRY.len())],
                LEGAL[rng.gen_range(0..LEGAL.len())]
            );
            if cat.visible && sample && g.samples.names.len() < cap {
                g.samples.names.push(partial(&name, first.len()));
            }
            let title = format!("{} {name}", cat.title_prefix);
            (name, title)
        };
        let ts = at.format("%Y-%m-%d %H:%M:%S%.6f+00");
        // search_text as records::search_text builds it: title, reference, plain values.
        let _ = writeln!(
            batch.text(0),
            "{id}\t{}\t{reference}\t{title}\t{{\"company_name\": \"{name}\"}}\t{title} {reference} {name}\t1\t1\t{ts}\t{author}\t{ts}\t{author}",
            cat.id
        );
        if cat.visible && sample && g.samples.references.len() < cap {
            g.samples.references.push(reference.clone());
        }
        if cat.phone {
            let phone = format!(
                "1{}{:09}",
                rng.gen_range(3..=9),
                rng.gen_range(0..1_000_000_000u32)
            );
            seal(&keys, &mut batch, id, "phone", &phone, "phone");
            g.sealed_rows += 1;
            if cat.visible && sample && g.samples.phones.len() < cap {
                g.samples.phones.push(phone);
            }
        }
        if cat.id_number {
            let number = format!("E{:08}", rng.gen_range(0..100_000_000u32));
            seal(&keys, &mut batch, id, "id_number", &number, "id_number");
            g.sealed_rows += 1;
        }
        if rng.gen_bool(0.3) {
            let status = if rng.gen_bool(0.9) {
                statuses[0]
            } else {
                statuses[rng.gen_range(1..3)]
            };
            let b = boxes[rng.gen_range(0..boxes.len())];
            let _ = writeln!(batch.text(2), "{id}\t{b}\t{status}\t{ts}");
            g.physical_rows += 1;
        }
        batch.rows += 1;
        if batch.rows == BATCH || i + 1 == n {
            let full = std::mem::replace(&mut batch, new_batch());
            if tx.blocking_send(full).is_err() {
                break; // the copying side gave up
            }
        }
    }
    g
}

fn new_batch() -> Batch {
    Batch {
        records: Vec::with_capacity(BATCH * 260),
        sealed: Vec::with_capacity(BATCH * 220),
        physical: Vec::with_capacity(BATCH * 40),
        rows: 0,
    }
}

impl Batch {
    fn text(&mut self, which: usize) -> TextBuf<'_> {
        TextBuf(match which {
            0 => &mut self.records,
            1 => &mut self.sealed,
            _ => &mut self.physical,
        })
    }
}

/// `fmt::Write` over a byte buffer.
struct TextBuf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for TextBuf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A sealed value as `records::seal_values` writes it: ciphertext under the active KEK and
/// the blind index of the normalized value.
fn seal(keys: &KeyRing, batch: &mut Batch, record: Uuid, field: &str, value: &str, domain: &str) {
    let (kek_id, ct) = keys.encrypt_field(record, field, value);
    let index = keys.blind_index(domain, value);
    // bytea in COPY text format: \\x<hex> (the backslash itself escaped).
    let _ = writeln!(
        batch.text(1),
        "{record}\t{field}\t\\\\x{}\t{kek_id}\t\\\\x{}",
        hex::encode(ct),
        hex::encode(index)
    );
}

async fn copy(conn: &mut sqlx::PgConnection, statement: &str, data: Vec<u8>) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut c = conn.copy_in_raw(statement).await?;
    c.send(data).await?;
    c.finish().await?;
    Ok(())
}

const FILL_TABLES: [&str; 3] = ["records", "record_sensitive_values", "record_physical"];

async fn fill(
    pool: &PgPool,
    keys: KeyRing,
    cats: &[Cat],
    boxes: &[Uuid],
    author: Uuid,
    n: usize,
    searches: usize,
) -> Result<Samples> {
    println!("fill");
    let t_all = Instant::now();
    // Secondary indexes: dropped for the load, re-created from their own definitions.
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexname::text, i.indexdef FROM pg_indexes i \
         WHERE i.schemaname = 'public' AND i.tablename = ANY($1) \
         AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) \
         ORDER BY i.tablename, i.indexname",
    )
    .bind(FILL_TABLES.map(str::to_string).to_vec())
    .fetch_all(pool)
    .await?;
    for (name, _) in &indexes {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(pool)
            .await?;
    }

    let t = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(2);
    let generator = std::thread::spawn({
        let cats = cats.to_vec();
        let boxes = boxes.to_vec();
        move || generate(keys, cats, boxes, author, n, searches, tx)
    });
    let mut conn = pool.acquire().await?;
    let mut copied = 0usize;
    let mut next_report = n / 4;
    let copied_all: Result<()> = async {
        while let Some(b) = rx.recv().await {
            copy(&mut conn, "COPY records (id, category_id, reference, title, fields, search_text, revision, schema_version, created_at, created_by, updated_at, updated_by) FROM STDIN", b.records).await?;
            copy(&mut conn, "COPY record_sensitive_values (record_id, field, ciphertext, kek_id, blind_index) FROM STDIN", b.sealed).await?;
            copy(&mut conn, "COPY record_physical (record_id, box_id, status, updated_at) FROM STDIN", b.physical).await?;
            copied += b.rows;
            if copied >= next_report && copied < n {
                println!("  … {copied} records copied ({:.1} s)", t.elapsed().as_secs_f64());
                next_report += n / 4;
            }
        }
        Ok(())
    }
    .await;
    drop(rx);
    drop(conn);
    let generated = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?;
    copied_all?;
    if copied != n {
        bail!("copied {copied} records, expected {n}");
    }
    let copy_time = t.elapsed();
    println!(
        "  generate + COPY: {n} records, {} sealed values (real AES-GCM ciphertext + blind index), {} physical rows in {:.1} s ({:.0} records/s)",
        generated.sealed_rows,
        generated.physical_rows,
        copy_time.as_secs_f64(),
        n as f64 / copy_time.as_secs_f64()
    );

    let mut counters_cat = Vec::new();
    let mut counters_year = Vec::new();
    let mut counters_last = Vec::new();
    for ((c, y), v) in &generated.counters {
        counters_cat.push(*c);
        counters_year.push(*y);
        counters_last.push(*v);
    }
    sqlx::query(
        "INSERT INTO reference_counters (category_id, year, last_value) \
         SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::bigint[])",
    )
    .bind(counters_cat)
    .bind(counters_year)
    .bind(counters_last)
    .execute(pool)
    .await?;

    // Two index builds at a time (two cores).
    let t = Instant::now();
    let mut pending = indexes.iter();
    let mut builds = tokio::task::JoinSet::new();
    let build = |pool: PgPool, name: String, def: String| async move {
        let t = Instant::now();
        sqlx::query(&def).execute(&pool).await?;
        Ok::<_, anyhow::Error>((name, t.elapsed()))
    };
    for (name, def) in pending.by_ref().take(2) {
        builds.spawn(build(pool.clone(), name.clone(), def.clone()));
    }
    let mut index_lines = Vec::new();
    while let Some(done) = builds.join_next().await {
        let (name, d) = done??;
        index_lines.push(format!("{name} {:.1} s", d.as_secs_f64()));
        if let Some((name, def)) = pending.next() {
            builds.spawn(build(pool.clone(), name.clone(), def.clone()));
        }
    }
    let index_time = t.elapsed();
    println!(
        "  {} secondary indexes re-created in {:.1} s: {}",
        indexes.len(),
        index_time.as_secs_f64(),
        index_lines.join(", ")
    );
    let t = Instant::now();
    sqlx::query(&format!("ANALYZE {}", FILL_TABLES.join(", ")))
        .execute(pool)
        .await?;
    println!("  ANALYZE in {:.1} s", t.elapsed().as_secs_f64());
    let total = t_all.elapsed();
    println!(
        "  fill total {:.1} s ({:.1} min) for {n} records",
        total.as_secs_f64(),
        total.as_secs_f64() / 60.0
    );
    Ok(generated.samples)
}

/// How many records (all categories) each text case's first fragments match, to show
/// what "many", "few" and "none" mean here.
async fn match_counts(pool: &PgPool, cases: &[Case]) -> Result<()> {
    println!("  records (all categories) holding each case's first fragment:");
    for case in cases
        .iter()
        .filter(|c| c.text && c.label != "reference code (q=)")
    {
        let t = Instant::now();
        let mut counts = Vec::new();
        for q in case.values.iter().take(3) {
            // LIKE when the fragment has no cased letter, as the app does (a lossy bitmap
            // of a common gram would recompute search_cjk_grams for every row).
            let like = if q.to_lowercase() == *q && q.to_uppercase() == *q {
                "LIKE"
            } else {
                "ILIKE"
            };
            let c: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM records WHERE search_text {like} $1"
            ))
            .bind(format!("%{q}%"))
            .fetch_one(pool)
            .await?;
            counts.push(format!("{q} {c}"));
        }
        println!(
            "    {:<34} {} ({:.1} s)",
            case.label,
            counts.join(", "),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// The queries of `records::search::search` for this case (mirroring the SQL built there:
/// for text, the window of the newest records, then the query from the indexes), under
/// EXPLAIN (ANALYZE, BUFFERS).
async fn explain(pool: &PgPool, keys: &KeyRing, scope: &[Uuid], case: &Case) -> Result<()> {
    const COLS: &str = "r.id, r.category_id, r.reference, r.title, r.fields, r.revision, r.schema_version, r.created_at, r.updated_at";
    const ORDER: &str = "ORDER BY r.created_at DESC, r.id DESC";
    let v = &case.values[0];
    let mut conn = pool.acquire().await?;
    let mut plans: Vec<(String, Vec<String>)> = Vec::new();
    if case.param == "phone" {
        plans.push((
            "query".into(),
            sqlx::query_scalar(&format!(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT {COLS} FROM records r WHERE TRUE \
                 AND r.category_id = ANY($1) AND r.id IN (SELECT record_id FROM \
                 record_sensitive_values WHERE blind_index = $2) {ORDER} LIMIT $3 OFFSET $4"
            ))
            .bind(scope.to_vec())
            .bind(keys.blind_index("phone", v))
            .bind(26i64)
            .bind(0i64)
            .fetch_all(&mut *conn)
            .await?,
        ));
    } else {
        let pattern = format!("%{v}%");
        // As records::search: LIKE and a window of 10,000 for a fragment without cased
        // letters, ILIKE and 4,000 otherwise.
        let uncased = v.to_lowercase() == *v && v.to_uppercase() == *v;
        let (like, window) = if uncased {
            ("LIKE", 10_000)
        } else {
            ("ILIKE", 4_000)
        };
        plans.push((
            format!("window of the newest {window}"),
            sqlx::query_scalar(&format!(
                "EXPLAIN (ANALYZE, BUFFERS) SELECT {COLS} FROM (SELECT r.* FROM records r WHERE TRUE \
                 AND r.category_id = ANY($1) {ORDER} LIMIT {window}) r WHERE r.search_text {like} $2 \
                 {ORDER} LIMIT $3 OFFSET $4"
            ))
            .bind(scope.to_vec())
            .bind(&pattern)
            .bind(26i64)
            .bind(0i64)
            .fetch_all(&mut *conn)
            .await?,
        ));
        let grams = strongroom::records::search::cjk_query_grams(v);
        let gram_clause = if grams.is_empty() {
            ""
        } else {
            "AND search_cjk_grams(r.search_text) @> $5::text[]"
        };
        let sql = format!(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT {COLS} FROM records r WHERE TRUE \
             AND r.category_id = ANY($1) {gram_clause} AND r.search_text {like} $2 \
             {ORDER} LIMIT $3 OFFSET $4"
        );
        let mut q = sqlx::query_scalar(&sql)
            .bind(scope.to_vec())
            .bind(&pattern)
            .bind(26i64)
            .bind(0i64);
        if !grams.is_empty() {
            q = q.bind(grams);
        }
        plans.push((
            "from the indexes".into(),
            q.persistent(false).fetch_all(&mut *conn).await?,
        ));
    }
    conn.close().await?;
    for (step, plan) in plans {
        println!("EXPLAIN ANALYZE of {} ({v}), {step}:", case.label);
        for l in plan {
            println!("    {l}");
        }
    }
    Ok(())
}
