use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strongroom::users::Role;

use crate::archive::{field, setup, walk};
use crate::common::{cluster, database_url, TestApp};

fn import_cmd(
    app: &TestApp,
    csv: &std::path::Path,
    files: &std::path::Path,
    as_user: &str,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strongroom"));
    cmd.arg("import")
        .arg("--csv")
        .arg(csv)
        .arg("--files")
        .arg(files)
        .args(["--category", "contr", "--as", as_user, "--data-dir"])
        .arg(app.dir.path())
        .args(extra)
        .env("STRONGROOM_LOG_LEVEL", "warn");
    cmd
}

async fn archivist_name(app: &TestApp) -> String {
    sqlx::query_scalar("SELECT username FROM users WHERE 'archivist' = ANY(roles) LIMIT 1")
        .fetch_one(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn import_reports_rejected_rows_files_the_rest_and_is_idempotent() {
    let app = TestApp::new().await;
    let (archivist, _) = setup(&app).await;
    let name = archivist_name(&app).await;
    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("scans");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("a1.pdf"), b"%PDF-1.4 scan of contract A-1").unwrap();
    std::fs::write(files.join("a1-annex.tif"), b"II*\0 annex").unwrap();
    let csv = work.path().join("batch.csv");
    std::fs::write(
        &csv,
        "external_id,title,company_name,holder_name,phone,id_number,signed_on,files,storeroom,shelf,box\n\
         A-1,Contract A-1,Yangtze River Shipping,李四,13811112222,11010519491231002X,2023-03-04,a1.pdf;a1-annex.tif,SR1,A3,B0042\n\
         A-2,Contract A-2,Pearl Delta Foods,,13922223333,,,,,,\n\
         A-3,Contract A-3,,,13933334444,,,,,,\n\
         A-4,Contract A-4,Bad Phone Ltd,,12345,,,,,,\n\
         A-5,Contract A-5,Missing Scan Ltd,,,,,nope.pdf,,,\n\
         A-2,Contract A-2 again,Duplicate Ltd,,,,,,,,\n\
         A-6,Contract A-6,Lost Box Ltd,,,,,,SR9,Z1,B1\n\
         A-7,Contract A-7,Gobi Solar Power,,,,2022-01-31,,,,\n",
    )
    .unwrap();
    let c = cluster().await;
    let url = database_url(c, &app.db_name);
    let out = import_cmd(&app, &csv, &files, &name, &[])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (line, words) in [
        (4, "company_name: is required"),
        (5, "phone: must be a phone number"),
        (6, "nope.pdf` not found"),
        (7, "repeats the row on line 3"),
        (8, "no box B1 on shelf Z1 in storeroom SR9"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("rejected line {line} ")) && l.contains(words)),
            "line {line}: {stdout}"
        );
    }
    assert!(
        stdout.contains("8 rows: 3 filed (2 files), 0 already filed before, 5 rejected"),
        "{stdout}"
    );

    // The imported records are there, masked, searchable, with their scans encrypted.
    let (_, employee) = app.login_as(Role::Employee).await;
    let (_, res) = app.get("/api/v1/records?q=yangtze", &employee).await;
    let hit = &res["hits"][0];
    assert_eq!(field(hit, "phone")["value"], "138****2222");
    assert_eq!(field(hit, "holder_name")["value"], "李*");
    assert_eq!(hit["physical"]["box"], "B0042");
    let (_, res) = app
        .get("/api/v1/records?phone=13922223333", &employee)
        .await;
    assert_eq!(res["hits"].as_array().unwrap().len(), 1);
    let id = hit["id"].as_str().unwrap();
    let (_, list) = app
        .get(&format!("/api/v1/records/{id}/files"), &archivist)
        .await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["original_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1.pdf", "a1-annex.tif"]);
    assert_eq!(list[0]["media_type"], "application/pdf");
    assert_eq!(
        list[0]["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            b"%PDF-1.4 scan of contract A-1"
        ))
    );
    assert_eq!(app.audit_count("import.run", "success").await, 1);

    // A second run files nothing new.
    let out = import_cmd(&app, &csv, &files, &name, &[])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("8 rows: 0 filed (0 files), 3 already filed before, 5 rejected"),
        "{stdout}"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(walk(&app.dir.path().join("objects")).len(), 2);

    // A dry run checks without filing; an unknown column stops everything up front.
    let out = import_cmd(&app, &csv, &files, &name, &["--dry-run"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("checked 8 rows: 3 valid, 5 rejected"));
    let bad = work.path().join("bad.csv");
    std::fs::write(&bad, "external_id,title,colour\nX-1,T,red\n").unwrap();
    let out = import_cmd(&app, &bad, &files, &name, &[])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("column `colour` is not a field"));
    // Only archivists import.
    let (emp, _) = app.login_as(Role::Employee).await;
    let out = import_cmd(&app, &csv, &files, &emp.username, &[])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn an_interrupted_import_leaves_no_half_filed_record_and_resumes() {
    let app = TestApp::new().await;
    setup(&app).await;
    let name = archivist_name(&app).await;
    let work = tempfile::tempdir().unwrap();
    let files = work.path().join("scans");
    std::fs::create_dir(&files).unwrap();
    let mut csv = String::from("external_id,title,company_name,files\n");
    let rows = 40;
    for i in 0..rows {
        let content: Vec<u8> = (0..3_000_000u32).map(|b| ((b ^ i) % 251) as u8).collect();
        std::fs::write(files.join(format!("s{i}.bin")), content).unwrap();
        csv.push_str(&format!("R-{i},Scan {i},Company {i},s{i}.bin\n"));
    }
    let csv_path = work.path().join("batch.csv");
    std::fs::write(&csv_path, csv).unwrap();
    let url = database_url(cluster().await, &app.db_name);
    let mut child = import_cmd(&app, &csv_path, &files, &name, &["--batch-size", "1"])
        .env("DATABASE_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM records")
            .fetch_one(&app.db)
            .await
            .unwrap();
        if n >= 3 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-way
    child.wait().unwrap();
    let (records, with_file): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT 1 FROM files f WHERE f.record_id = r.id)) FROM records r",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(
        records >= 3 && records < rows as i64,
        "killed too late to prove anything: {records}"
    );
    assert_eq!(records, with_file, "a record was filed without its scan");

    // Resume: the rest is filed, nothing twice.
    let out = import_cmd(&app, &csv_path, &files, &name, &[])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{rows} rows: {} filed", rows as i64 - records)),
        "{stdout}"
    );
    let (records, files_n): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM files)")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((records, files_n), (rows as i64, rows as i64));
    // Objects of the batch that was cut off are orphans; the GC removes them.
    let store = &app.app().store;
    let report = strongroom::storage::gc::run_once(&app.db, store, Duration::ZERO)
        .await
        .unwrap();
    assert!(!report.skipped);
    assert_eq!(walk(&app.dir.path().join("objects")).len(), rows as usize);
    let _: Value = Value::Null;
}
