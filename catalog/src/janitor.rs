//! What the janitor records: fleet-wide leases, compaction swaps, retired files and their deletion.
//!
//! A compaction output is recorded `compacting` before its upload (so that an object left by a compactor
//! killed mid-way can be found and deleted), and swapped in one transaction: the output becomes `stable`,
//! the inputs `retired`, and the inputs' `file_batches` lineage moves to the output (a WAL replay then
//! finds the items held by it). The swap happens only while the compactor still holds its lease and
//! every input is still `stable`. Retired files are deleted (object first, then rows) once older than a
//! grace period, so queries that listed them before the swap can still read them.

use crate::files::{FILE_COLUMNS, to_file};
use crate::{Catalog, CatalogError, FileRow};
use sqlx::{AssertSqlSafe, Row};

/// A compaction output not swapped in yet.
pub const COMPACTING: &str = "compacting";
/// Replaced by a compaction output, or past its retention: deleted after the grace period.
pub const RETIRED: &str = "retired";

/// Why a file was retired.
pub const BY_COMPACTION: &str = "compaction";
pub const BY_RETENTION: &str = "retention";

/// Which stable files retention looks at: one exporter's files in one store, of one table, of one tenant
/// or of every tenant but `except` (those have their own retention).
#[derive(Clone, Copy, Debug)]
pub struct Expired<'a> {
    pub exporter: &'a str,
    pub root: &'a str,
    pub table: &'a str,
    pub tenant: Option<&'a str>,
    pub except: &'a [String],
}

/// A retired file due for deletion, with its index objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Retired {
    pub file: FileRow,
    pub reason: String,
    pub index_paths: Vec<String>,
}

/// Why a swap did not happen (nothing was changed).
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("the lease {0} is no longer held by this compactor")]
    LeaseLost(String),
    #[error("{0} of the input files are no longer stable (retired or compacted by another)")]
    InputsChanged(usize),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

impl Catalog {
    /// Takes (or renews) the lease `name` for `holder` until `expires_at` when it is free, expired, or
    /// already `holder`'s. Returns whether `holder` holds it now.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<bool, CatalogError> {
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, expires_at = $3 \
             WHERE leases.expires_at < $4 OR leases.holder = $2",
        )
        .bind(name.to_string())
        .bind(holder.to_string())
        .bind(expires_at)
        .bind(now)
        .execute(self.pool().await?)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up (when `holder` has it).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name.to_string())
            .bind(holder.to_string())
            .execute(self.pool().await?)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Stable files of `exporter` in `root` smaller than `below_bytes` whose newest row is older than
    /// `before` (ns): what compaction may merge, narrowed in the query (a fleet's catalog holds many
    /// more files than are small and settled).
    pub async fn compaction_candidates(
        &self,
        exporter: &str,
        root: &str,
        below_bytes: i64,
        before: i64,
    ) -> Result<Vec<FileRow>, CatalogError> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE state = 'stable' AND exporter = $1 AND root = $2 \
             AND byte_size < $3 AND max_time < $4 ORDER BY file_id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(exporter.to_string())
            .bind(root.to_string())
            .bind(below_bytes)
            .bind(before)
            .fetch_all(self.pool().await?)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(to_file).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Compaction outputs (`compacting`) of `table` and `tenant` in `root`.
    pub async fn compacting_files(&self, root: &str, table: &str, tenant: &str) -> Result<Vec<FileRow>, CatalogError> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE state = $1 AND root = $2 AND table_name = $3 AND tenant = $4 \
             ORDER BY file_id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(COMPACTING)
            .bind(root.to_string())
            .bind(table.to_string())
            .bind(tenant.to_string())
            .fetch_all(self.pool().await?)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(to_file).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Swaps a compaction output in for its inputs, in one transaction, while `lease` is `holder`'s:
    /// the output `stable`, the inputs `retired` (reason `compaction`), their lineage moved to the output.
    pub async fn swap_compacted(
        &self,
        output: &str,
        inputs: &[String],
        lease: &str,
        holder: &str,
        now: i64,
    ) -> Result<(), SwapError> {
        let pool = self.pool().await?;
        let mut tx = pool.begin().await.map_err(|e| self.err(e))?;
        let held = sqlx::query("UPDATE leases SET expires_at = expires_at WHERE name = $1 AND holder = $2")
            .bind(lease.to_string())
            .bind(holder.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        if held.rows_affected() != 1 {
            return Err(SwapError::LeaseLost(lease.to_string()));
        }
        let mut changed = 0;
        for id in inputs {
            if !self.retire_one(&mut tx, id, BY_COMPACTION, now).await? {
                continue;
            }
            changed += 1;
            sqlx::query("UPDATE file_batches SET file_id = $2 WHERE file_id = $1")
                .bind(id.clone())
                .bind(output.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
        }
        if changed != inputs.len() {
            // Dropping the transaction rolls it back.
            return Err(SwapError::InputsChanged(inputs.len() - changed));
        }
        sqlx::query("UPDATE files SET state = 'stable', uploaded_at = $2 WHERE file_id = $1 AND state = $3")
            .bind(output.to_string())
            .bind(now)
            .bind(COMPACTING)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Stable files of `which` whose newest row is older than `before` (ns), oldest first, at most
    /// `limit`. Every narrowing is in the query, so a page is never filled with files the caller would
    /// skip.
    pub async fn expired_files(
        &self,
        which: &Expired<'_>,
        before: i64,
        limit: i64,
    ) -> Result<Vec<FileRow>, CatalogError> {
        let except: Vec<String> = (0..which.except.len()).map(|i| format!("${}", i + 7)).collect();
        let not_in =
            if except.is_empty() { String::new() } else { format!(" AND tenant NOT IN ({})", except.join(", ")) };
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE state = 'stable' AND exporter = $1 AND root = $2 AND table_name = $3 \
             AND ($4 IS NULL OR tenant = $4) AND max_time < $5{not_in} ORDER BY max_time, file_id LIMIT $6"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(which.exporter.to_string())
            .bind(which.root.to_string())
            .bind(which.table.to_string())
            .bind(which.tenant.map(str::to_string))
            .bind(before)
            .bind(limit);
        for t in which.except {
            q = q.bind(t.clone());
        }
        let rows = q.fetch_all(self.pool().await?).await.map_err(|e| self.err(e))?;
        rows.iter().map(to_file).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Retires stable files (reason `retention`); returns how many were still stable.
    pub async fn retire(&self, ids: &[String], reason: &str, now: i64) -> Result<u64, CatalogError> {
        let mut tx = self.pool().await?.begin().await.map_err(|e| self.err(e))?;
        let mut n = 0;
        for id in ids {
            if self.retire_one(&mut tx, id, reason, now).await? {
                n += 1;
            }
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(n)
    }

    /// Retires one file in `tx` when it is stable (recording why and when); whether it was.
    async fn retire_one(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        id: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, CatalogError> {
        let changed = sqlx::query("UPDATE files SET state = $2 WHERE file_id = $1 AND state = 'stable'")
            .bind(id.to_string())
            .bind(RETIRED)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.err(e))?
            .rows_affected();
        if changed != 1 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO retired (file_id, reason, retired_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(reason.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Retired files of `exporter` in `root` retired before `before` (ms), with their index objects, at
    /// most `limit`.
    pub async fn retired_before(
        &self,
        exporter: &str,
        root: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<Retired>, CatalogError> {
        let cols: Vec<String> = FILE_COLUMNS.split(", ").map(|c| format!("f.{}", c.trim())).collect();
        let sql = format!(
            "SELECT {}, r.reason FROM retired r JOIN files f ON f.file_id = r.file_id \
             WHERE f.root = $1 AND r.retired_at < $2 AND f.exporter = $4 ORDER BY r.retired_at, f.file_id LIMIT $3",
            cols.join(", ")
        );
        let pool = self.pool().await?;
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(root.to_string())
            .bind(before)
            .bind(limit)
            .bind(exporter.to_string())
            .fetch_all(pool)
            .await
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let file = to_file(r).map_err(|e| self.err(e))?;
            let reason: String = r.try_get("reason").map_err(|e| self.err(e))?;
            let index_paths = sqlx::query("SELECT path FROM indexes WHERE file_id = $1")
                .bind(file.file_id.clone())
                .fetch_all(pool)
                .await
                .map_err(|e| self.err(e))?
                .iter()
                .map(|r| r.try_get::<String, _>("path"))
                .collect::<Result<_, _>>()
                .map_err(|e| self.err(e))?;
            out.push(Retired { file, reason, index_paths });
        }
        Ok(out)
    }

    /// Forgets a file whose objects are deleted: its row, lineage, indexes and retirement, in one
    /// transaction.
    pub async fn forget_file(&self, file_id: &str) -> Result<(), CatalogError> {
        let mut tx = self.pool().await?.begin().await.map_err(|e| self.err(e))?;
        for sql in [
            "DELETE FROM file_batches WHERE file_id = $1",
            "DELETE FROM indexes WHERE file_id = $1",
            "DELETE FROM retired WHERE file_id = $1",
            "DELETE FROM files WHERE file_id = $1",
        ] {
            sqlx::query(sql).bind(file_id.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Deletes finished batches (`completed`) last updated before `before` (ms); returns how many.
    pub async fn prune_batches(&self, before: i64) -> Result<u64, CatalogError> {
        sqlx::query("DELETE FROM batch_tracker WHERE status = 'completed' AND updated_at < $1")
            .bind(before)
            .execute(self.pool().await?)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| self.err(e))
    }
}
