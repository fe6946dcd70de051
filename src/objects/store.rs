//! The SQL schema of a profile object and its persistence. Tables:
//! `meta` (schema version), `profile` (one row: the scalar state as JSON),
//! `locations` (history, newest 100 kept) and `alerts` (newest 50 kept).
//!
//! Migration path: `migrate` brings any older schema to `SCHEMA_VERSION` at
//! first use; the profile JSON itself tolerates added fields (serde
//! defaults), so most changes need no data migration at all.

use std::collections::VecDeque;

use serde::Deserialize;
use worker::SqlStorage;

use crate::intel::events::Location;
use crate::intel::keys::SCHEMA_VERSION_ROW;
use crate::intel::profile::{Alert, Changes, Profile, Tombstone, MAX_ALERTS, MAX_LOCATIONS, SCHEMA_VERSION};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profile (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS locations (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, data TEXT NOT NULL);
";

#[derive(Deserialize)]
struct DataRow {
    data: String,
}

#[derive(Deserialize)]
struct ValueRow {
    value: String,
}

/// Creates the tables and migrates older schemas. Idempotent.
pub fn migrate(sql: &SqlStorage) -> worker::Result<()> {
    sql.exec(SCHEMA, None)?;
    let version: Option<u32> = sql
        .exec("SELECT value FROM meta WHERE key = ?", vec![SCHEMA_VERSION_ROW.into()])?
        .to_array::<ValueRow>()?
        .first()
        .and_then(|r| r.value.parse().ok());
    match version {
        Some(v) if v == SCHEMA_VERSION => Ok(()),
        // No older schema exists yet; a v2 adds its `Some(1) => ...` arm here.
        None => {
            sql.exec(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                vec![SCHEMA_VERSION_ROW.into(), SCHEMA_VERSION.to_string().into()],
            )?;
            Ok(())
        }
        Some(v) => Err(worker::Error::RustError(format!(
            "storage schema version {v} is newer than this code ({SCHEMA_VERSION}); roll forward"
        ))),
    }
}

/// The stored profile with its history and alerts, or `None` (also when
/// nothing was ever stored: reading creates no schema).
pub fn load(sql: &SqlStorage) -> worker::Result<Option<Profile>> {
    let tables = sql
        .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'profile'", None)?
        .to_array::<serde_json::Value>()?;
    if tables.is_empty() {
        return Ok(None);
    }
    let rows = sql.exec("SELECT data FROM profile WHERE id = 1", None)?.to_array::<DataRow>()?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let mut p: Profile = serde_json::from_str(&row.data).map_err(|e| worker::Error::RustError(e.to_string()))?;
    p.history = rows_of::<Location>(sql, "SELECT data FROM locations ORDER BY seq")?;
    p.alerts = rows_of::<Alert>(sql, "SELECT data FROM alerts ORDER BY seq")?;
    Ok(Some(p))
}

fn rows_of<T: for<'de> Deserialize<'de>>(sql: &SqlStorage, q: &str) -> worker::Result<VecDeque<T>> {
    Ok(sql.exec(q, None)?.to_array::<DataRow>()?.iter().filter_map(|r| serde_json::from_str(&r.data).ok()).collect())
}

/// Writes the scalar row and appends what `changes` added, trimming the
/// histories to their caps. All statements run without an `await` between
/// them, so the runtime commits them as one atomic write.
pub fn save(sql: &SqlStorage, p: &Profile, changes: &Changes) -> worker::Result<()> {
    let data = crate::platform::to_json(p)?;
    sql.exec(
        "INSERT OR REPLACE INTO profile (id, data, updated_at) VALUES (1, ?, ?)",
        vec![data.into(), p.last_updated.into()],
    )?;
    for l in &changes.new_locations {
        let d = serde_json::to_string(l).unwrap_or_default();
        sql.exec("INSERT INTO locations (ts, data) VALUES (?, ?)", vec![l.timestamp.into(), d.into()])?;
    }
    if !changes.new_locations.is_empty() {
        sql.exec(
            "DELETE FROM locations WHERE seq NOT IN (SELECT seq FROM locations ORDER BY seq DESC LIMIT ?)",
            vec![(MAX_LOCATIONS as i64).into()],
        )?;
    }
    for a in &changes.new_alerts {
        let d = serde_json::to_string(a).unwrap_or_default();
        sql.exec("INSERT INTO alerts (ts, data) VALUES (?, ?)", vec![a.timestamp.into(), d.into()])?;
    }
    if !changes.new_alerts.is_empty() {
        sql.exec(
            "DELETE FROM alerts WHERE seq NOT IN (SELECT seq FROM alerts ORDER BY seq DESC LIMIT ?)",
            vec![(MAX_ALERTS as i64).into()],
        )?;
    }
    Ok(())
}

/// The erasure tombstone (`intel::profile::Tombstone`), if one is stored.
/// Reading creates nothing.
pub fn load_tombstone(sql: &SqlStorage) -> worker::Result<Option<Tombstone>> {
    let tables = sql
        .exec("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'tombstone'", None)?
        .to_array::<serde_json::Value>()?;
    if tables.is_empty() {
        return Ok(None);
    }
    let rows = sql.exec("SELECT data FROM tombstone WHERE id = 1", None)?.to_array::<DataRow>()?;
    Ok(rows.first().and_then(|r| serde_json::from_str(&r.data).ok()))
}

/// Stores the tombstone: the only row of an erased subject's object.
pub fn save_tombstone(sql: &SqlStorage, t: &Tombstone) -> worker::Result<()> {
    sql.exec("CREATE TABLE IF NOT EXISTS tombstone (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL)", None)?;
    let data = crate::platform::to_json(t)?;
    sql.exec("INSERT OR REPLACE INTO tombstone (id, data) VALUES (1, ?)", vec![data.into()])?;
    Ok(())
}

pub fn clear_tombstone(sql: &SqlStorage) -> worker::Result<()> {
    sql.exec("DROP TABLE IF EXISTS tombstone", None)?;
    Ok(())
}
