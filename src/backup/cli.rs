//! `strongroom backup`, `strongroom backup verify` and `strongroom restore`: argument
//! handling and messages; the work is in [`super`].

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Progress, Report};
use crate::cli::BackupCommand;
use crate::config::Config;
use crate::crypto::KeyRing;
use crate::db::Database;
use crate::storage::Store;

/// The key ring, which must exist: these commands never create a master key (a new key
/// could open no backup).
fn existing_keys(config: &Config) -> Result<KeyRing, String> {
    let path = config.master_key_path();
    if !path.exists() {
        return Err(format!(
            "no master key at {}: copy the vault's master.key there first (a backup never \
             holds it)",
            path.display()
        ));
    }
    KeyRing::load_or_create(&path).map_err(|e| format!("loading the master key: {e}"))
}

pub async fn backup(
    config: &Config,
    action: Option<BackupCommand>,
    out: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let mut progress = Progress::stderr();
    match (action, out) {
        (Some(BackupCommand::Verify { file }), _) => {
            let keys = match existing_keys(config) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("backup verify: {e}");
                    return Ok(1);
                }
            };
            match super::verify_file(&file, &keys, &mut progress).await {
                Ok(report) => {
                    println!("{report}");
                    Ok(0)
                }
                Err(e) => {
                    println!("{e}");
                    Ok(1)
                }
            }
        }
        (None, Some(out)) => {
            let keys = match existing_keys(config) {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("backup: {e}");
                    return Ok(1);
                }
            };
            let store = Store::from_settings(config.object_store.as_deref(), &config.data_dir)
                .context("opening the object store (setting `object_store`)")?;
            let db = Database::open(config, 2).await?;
            let actor = crate::cli::cli_actor();
            let result = super::backup(&db, &keys, &store, &out, &actor, &mut progress).await;
            db.close().await?;
            let s = result?;
            let m = &s.manifest;
            println!(
                "backup written: {} ({} bytes, SHA-256 {})",
                out.display(),
                s.file_bytes,
                hex::encode(s.file_sha256)
            );
            println!(
                "  {} tables, {} rows, {} objects ({} bytes), audit chain head {} ({} events)",
                m.tables.len(),
                m.tables.iter().map(|t| t.rows).sum::<u64>(),
                m.objects.count,
                m.objects.bytes,
                m.audit.head_seq.unwrap_or(0),
                m.audit.events
            );
            println!("  the master key is not in it: keep master.key apart from the backup");
            Ok(0)
        }
        (None, None) => {
            eprintln!("backup: give --out FILE to write a backup, or `backup verify FILE`");
            Ok(2)
        }
    }
}

pub async fn restore(config: &Config, from: &Path) -> anyhow::Result<i32> {
    let refuse = |msg: String| {
        eprintln!("{msg}");
        eprintln!("restore refused: nothing was written");
        Ok(1)
    };
    let keys = match existing_keys(config) {
        Ok(k) => k,
        Err(e) => return refuse(format!("restore: {e}")),
    };
    let mut progress = Progress::stderr();
    // The whole file first: nothing is created or written unless it verifies.
    let report: Report = match super::verify_file(from, &keys, &mut progress).await {
        Ok(r) => r,
        Err(e) => return refuse(e.to_string()),
    };
    if let Err(e) = super::check_schema(&report.manifest) {
        return refuse(e.to_string());
    }
    if config.database_url.is_none() {
        if let Err(e) = super::check_data_dir(&config.data_dir) {
            return refuse(e.to_string());
        }
    }
    let store = Store::from_settings(config.object_store.as_deref(), &config.data_dir)
        .context("opening the object store (setting `object_store`)")?;
    if let Err(e) = super::check_store_empty(&store).await {
        return refuse(e.to_string());
    }
    let db = Database::open(config, 2).await?;
    let result = async {
        db.migrate().await?;
        super::restore(
            &db,
            &keys,
            &store,
            from,
            &crate::cli::cli_actor(),
            &mut progress,
        )
        .await
    }
    .await;
    db.close().await?;
    match result {
        Ok(report) => {
            let m = &report.manifest;
            println!(
                "restored backup {} (made {} from {}): {} tables, {} rows, {} objects ({} bytes), {} audit events",
                m.backup_id,
                m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                m.source,
                m.tables.len(),
                m.tables.iter().map(|t| t.rows).sum::<u64>(),
                m.objects.count,
                m.objects.bytes,
                m.audit.events
            );
            Ok(0)
        }
        Err(e) if e.to_string().starts_with("restore refused") => refuse(e.to_string()),
        Err(e) => Err(e),
    }
}
