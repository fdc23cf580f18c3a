//! Bulk import of digitization batches: a CSV of records (and, optionally, their scans).
//!
//! Every row is validated before anything is filed, and the rejected ones are reported with
//! the reason. Valid rows are then filed in batches, each batch in one transaction with its
//! file rows and audit events, so an interruption leaves no half-filed record (objects
//! stored for a batch that never committed are orphans the storage GC removes). Rows whose
//! `external_id` is already filed in the category are skipped, so a re-run is idempotent.
//!
//! CSV columns: `external_id` and `title` (required), `files` (names in the files
//! directory, separated by `;`), `storeroom`, `shelf`, `box`, and one column per field of the
//! category's schema. Any other column stops the import before it starts.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};

use super::model::{Category, FileId, Location, NewRecord};
use super::schema::{check_all, Checked};
use super::{categories, files, register};
use crate::audit::{Event, Outcome};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::policy::FileRecord;
use crate::storage::StoredObject;
use crate::{unit, App};

pub struct Options {
    pub csv: PathBuf,
    pub files_dir: Option<PathBuf>,
    pub category: String,
    pub batch_size: usize,
    pub dry_run: bool,
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub line: u64,
    pub external_id: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: u64,
    pub imported: u64,
    pub already_imported: u64,
    pub files: u64,
    pub rejected: Vec<Rejection>,
}

/// Progress reporting, so the service does not depend on a terminal.
pub trait Progress {
    fn start(&self, phase: &str, total: u64);
    fn inc(&self, n: u64);
}

const FIXED: &[&str] = &["external_id", "title", "files", "storeroom", "shelf", "box"];

struct Row {
    line: u64,
    external_id: String,
    title: String,
    checked: BTreeMap<String, Checked>,
    files: Vec<PathBuf>,
    location: Option<Location>,
}

fn open_csv(path: &Path) -> AppResult<csv::Reader<std::fs::File>> {
    csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| AppError::invalid("csv", format!("cannot read {}: {e}", path.display())))
}

fn file_path(dir: Option<&Path>, name: &str) -> Result<PathBuf, String> {
    let dir = dir.ok_or("the row names files but no --files directory was given")?;
    let rel = Path::new(name);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "file name `{name}` must be relative to the files directory"
        ));
    }
    let p = dir.join(rel);
    if !p.is_file() {
        return Err(format!("file `{name}` not found in {}", dir.display()));
    }
    Ok(p)
}

fn parse_row(
    category: &Category,
    headers: &csv::StringRecord,
    rec: &csv::StringRecord,
    files_dir: Option<&Path>,
) -> Result<Row, String> {
    let get = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .and_then(|i| rec.get(i))
            .unwrap_or("")
            .to_string()
    };
    let external_id = get("external_id");
    if external_id.is_empty() || external_id.chars().count() > 200 {
        return Err("external_id: must be 1 to 200 characters".into());
    }
    let title = get("title");
    if title.is_empty() || title.chars().count() > 500 {
        return Err("title: must be 1 to 500 characters".into());
    }
    let values: BTreeMap<String, Value> = headers
        .iter()
        .enumerate()
        .filter(|(_, h)| !FIXED.contains(h))
        .filter_map(|(i, h)| {
            rec.get(i)
                .filter(|v| !v.is_empty())
                .map(|v| (h.to_string(), Value::String(v.to_string())))
        })
        .collect();
    let checked = check_all(&category.fields, &values).map_err(|e| e.public_message())?;
    let files = get("files")
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|n| file_path(files_dir, n))
        .collect::<Result<Vec<_>, _>>()?;
    let (room, shelf, bx) = (get("storeroom"), get("shelf"), get("box"));
    let location = if room.is_empty() && shelf.is_empty() && bx.is_empty() {
        None
    } else if room.is_empty() || shelf.is_empty() || bx.is_empty() {
        return Err("storeroom, shelf and box: give all three or none".into());
    } else {
        Some(Location {
            storeroom: room,
            shelf,
            box_code: bx,
        })
    };
    Ok(Row {
        line: rec.position().map(|p| p.line()).unwrap_or(0),
        external_id,
        title,
        checked,
        files,
        location,
    })
}

#[tracing::instrument(skip_all)]
pub async fn run(
    app: &App,
    who: &Principal,
    opts: &Options,
    progress: &dyn Progress,
) -> AppResult<Report> {
    app.db
        .authorize::<FileRecord>(&app.policies, who, None, None)
        .await?;
    let category = categories::all(app)
        .await?
        .into_iter()
        .find(|c| c.code.eq_ignore_ascii_case(&opts.category))
        .ok_or_else(|| {
            AppError::invalid(
                "category",
                format!("no category with code {}", opts.category),
            )
        })?;
    // A bulk import would file past the review the category requires.
    if category.review {
        return Err(AppError::invalid(
            "category",
            "requires review before records take effect; file its records one by one",
        ));
    }
    let batch_size = opts.batch_size.clamp(1, 10_000);

    // Pass 1: check the columns, then every row, before anything is filed.
    let mut reader = open_csv(&opts.csv)?;
    let headers = reader
        .headers()
        .map_err(|e| AppError::invalid("csv", e.to_string()))?
        .clone();
    for required in ["external_id", "title"] {
        if !headers.iter().any(|h| h == required) {
            return Err(AppError::invalid(
                "csv",
                format!("the header has no `{required}` column"),
            ));
        }
    }
    for h in headers.iter() {
        if !FIXED.contains(&h) && category.field(h).is_none() {
            return Err(AppError::invalid(
                "csv",
                format!(
                    "column `{h}` is not a field of category {} (fields: {})",
                    category.code,
                    category
                        .fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    let mut report = Report::default();
    let mut valid: HashSet<u64> = HashSet::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut boxes_ok: HashMap<String, Option<String>> = HashMap::new();
    progress.start("checking", 0);
    for (i, rec) in reader.records().enumerate() {
        report.rows += 1;
        progress.inc(1);
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                report.rejected.push(Rejection {
                    line: (i + 2) as u64,
                    external_id: String::new(),
                    reason: format!("unreadable row: {e}"),
                });
                continue;
            }
        };
        let mut result = parse_row(&category, &headers, &rec, opts.files_dir.as_deref());
        if let Ok(row) = &result {
            if let Some(first) = seen.insert(row.external_id.clone(), row.line) {
                result = Err(format!(
                    "external_id {} repeats the row on line {first}",
                    row.external_id
                ));
            } else if let Some(loc) = &row.location {
                let key = format!("{}/{}/{}", loc.storeroom, loc.shelf, loc.box_code);
                if !boxes_ok.contains_key(&key) {
                    let found: Option<String> =
                        unit!(app.db, |tx| Ok(register::find_box(&mut tx, loc)
                            .await
                            .err()
                            .map(|e| e.public_message())))?;
                    boxes_ok.insert(key.clone(), found);
                }
                if let Some(Some(err)) = boxes_ok.get(&key) {
                    result = Err(err.clone());
                }
            }
        }
        match result {
            Ok(_) => {
                valid.insert(i as u64);
            }
            Err(reason) => report.rejected.push(Rejection {
                line: rec.position().map(|p| p.line()).unwrap_or((i + 2) as u64),
                external_id: rec
                    .get(headers.iter().position(|h| h == "external_id").unwrap_or(0))
                    .unwrap_or("")
                    .to_string(),
                reason,
            }),
        }
    }
    if opts.dry_run {
        return Ok(report);
    }

    // Pass 2: file the valid rows in batches.
    progress.start("filing", valid.len() as u64);
    let mut reader = open_csv(&opts.csv)?;
    let mut batch: Vec<Row> = Vec::with_capacity(batch_size);
    for (i, rec) in reader.records().enumerate() {
        if !valid.contains(&(i as u64)) {
            continue;
        }
        let rec = rec.map_err(|e| {
            AppError::invalid("csv", format!("the file changed during the import: {e}"))
        })?;
        let row = parse_row(&category, &headers, &rec, opts.files_dir.as_deref()).map_err(|e| {
            AppError::invalid(
                "csv",
                format!("line {}: changed during the import: {e}", i + 2),
            )
        })?;
        batch.push(row);
        if batch.len() == batch_size {
            file_batch(
                app,
                who,
                &category,
                std::mem::take(&mut batch),
                &mut report,
                progress,
            )
            .await?;
        }
    }
    if !batch.is_empty() {
        file_batch(app, who, &category, batch, &mut report, progress).await?;
    }
    app.db
        .record(
            &who.actor(),
            Event::new("import.run", Outcome::Success)
                .object("category", category.id)
                .detail(json!({
                    "rows": report.rows, "imported": report.imported,
                    "already_imported": report.already_imported, "rejected": report.rejected.len(),
                    "files": report.files,
                })),
        )
        .await?;
    Ok(report)
}

async fn file_batch(
    app: &App,
    who: &Principal,
    category: &Category,
    batch: Vec<Row>,
    report: &mut Report,
    progress: &dyn Progress,
) -> AppResult<()> {
    let ids: Vec<String> = batch.iter().map(|r| r.external_id.clone()).collect();
    let existing: HashSet<String> = unit!(app.db, |tx| {
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT external_id FROM records WHERE category_id = $1 AND external_id = ANY($2)",
        )
        .bind(category.id)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        Ok(found)
    })?
    .into_iter()
    .collect();
    // Objects first (outside the transaction), rows second.
    let mut stored: Vec<Vec<(FileId, StoredObject, String)>> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for row in &batch {
        let mut mine = Vec::new();
        if !existing.contains(&row.external_id) {
            for path in &row.files {
                let file_id = FileId(uuid::Uuid::new_v4());
                let f = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| AppError::internal(format!("{}: {e}", path.display())))?;
                let obj = match app
                    .store
                    .put_encrypted(&app.keys, file_id.0, f, app.config.max_upload_bytes)
                    .await
                {
                    Ok(o) => o,
                    Err(e) => {
                        cleanup(app, &written).await;
                        return Err(AppError::internal(format!("{}: {e}", path.display())));
                    }
                };
                written.push(obj.object_key.clone());
                let name = files::clean_name(&path.to_string_lossy());
                mine.push((file_id, obj, name));
            }
        }
        stored.push(mine);
    }
    let result: AppResult<(u64, u64)> = unit!(app.db, |tx| {
        let (mut filed, mut nfiles) = (0, 0);
        for (row, objs) in batch.iter().zip(&stored) {
            if existing.contains(&row.external_id) {
                continue;
            }
            let new = NewRecord {
                category_id: category.id,
                title: row.title.clone(),
                fields: BTreeMap::new(),
                physical: row.location.clone(),
                external_id: Some(row.external_id.clone()),
                allow_title_with_sensitive: true,
            };
            let id = super::create_in(&mut tx, app, who, category, &row.title, &row.checked, &new)
                .await?;
            let reference: String =
                sqlx::query_scalar("SELECT reference FROM records WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            for (file_id, obj, name) in objs {
                files::insert_row(
                    &mut tx,
                    who,
                    id,
                    &reference,
                    *file_id,
                    obj,
                    name,
                    files::media_type_for(name),
                )
                .await?;
                nfiles += 1;
            }
            filed += 1;
        }
        Ok((filed, nfiles))
    });
    match result {
        Ok((filed, nfiles)) => {
            report.imported += filed;
            report.files += nfiles;
            report.already_imported += existing.len() as u64;
            progress.inc(batch.len() as u64);
            Ok(())
        }
        Err(e) => {
            cleanup(app, &written).await;
            Err(e)
        }
    }
}

async fn cleanup(app: &App, keys: &[String]) {
    for k in keys {
        if let Err(e) = app.store.delete(k).await {
            tracing::warn!(error = %e, "could not remove an object of a failed batch; the GC will");
        }
    }
}
