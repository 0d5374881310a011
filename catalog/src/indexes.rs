//! The `indexes` table: the full-text index objects beside Parquet files (one per file and kind).

use crate::files::{FILE_COLUMNS, to_file};
use crate::{Catalog, CatalogError, FileRow};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};
use std::collections::HashMap;

/// The kind of the Tantivy bundles `openwit-index` builds.
pub const TANTIVY: &str = "tantivy";

/// An index object as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IndexRow {
    pub file_id: String,
    pub kind: String,
    /// The object's path under its file's root.
    pub path: String,
    pub byte_size: i64,
    /// `stable` once the object is verified in the store.
    pub state: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Sets `index_pip` on the batches (of those `$1` selects) whose every logs and spans file has a stable
/// index, once they are stored. A batch with no such file (metrics) has nothing to index: set at store.
const INDEX_PIP: &str = "UPDATE batch_tracker SET index_pip = TRUE, index_pip_completed_at = $2, updated_at = $2 \
     WHERE index_pip = FALSE AND storage_pip = TRUE AND batch_id IN ({batches}) AND NOT EXISTS ( \
       SELECT 1 FROM file_batches fb JOIN files f ON f.file_id = fb.file_id \
       LEFT JOIN indexes i ON i.file_id = f.file_id AND i.kind = 'tantivy' AND i.state = 'stable' \
       WHERE fb.batch_id = batch_tracker.batch_id AND f.table_name IN ('logs', 'spans') AND i.file_id IS NULL)";

/// The `index_pip` update for the batches whose items are in file `$1`.
pub(crate) fn index_pip_of_file() -> String {
    INDEX_PIP.replace("{batches}", "SELECT batch_id FROM file_batches WHERE file_id = $1")
}

/// The `index_pip` update for batch `$1`.
pub(crate) fn index_pip_of_batch() -> String {
    INDEX_PIP.replace("{batches}", "$1")
}

/// Which files `unindexed_files` looks at: those one exporter of one node wrote under one root, in
/// the tables it indexes.
#[derive(Clone, Copy, Debug)]
pub struct Unindexed<'a> {
    pub exporter: &'a str,
    pub node_id: &'a str,
    pub root: &'a str,
    pub tables: &'a [&'a str],
}

impl Catalog {
    /// Records (or replaces, for a rebuilt index) the index of one file, and sets `index_pip` on the
    /// batches it completes, in one transaction.
    pub async fn record_index(&self, r: &IndexRow) -> Result<(), CatalogError> {
        let mut tx = self.pool().await?.begin().await.map_err(|e| self.err(e))?;
        sqlx::query(
            "INSERT INTO indexes (file_id, kind, path, byte_size, state, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (file_id, kind) DO UPDATE SET path = excluded.path, byte_size = excluded.byte_size, \
             state = excluded.state, created_at = excluded.created_at",
        )
        .bind(r.file_id.clone())
        .bind(r.kind.clone())
        .bind(r.path.clone())
        .bind(r.byte_size)
        .bind(r.state.clone())
        .bind(r.created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.err(e))?;
        sqlx::query(AssertSqlSafe(index_pip_of_file()))
            .bind(r.file_id.clone())
            .bind(r.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Marks an index (for example one a query could not read: `missing`), so that the janitor rebuilds it.
    pub async fn set_index_state(&self, file_id: &str, kind: &str, state: &str) -> Result<(), CatalogError> {
        sqlx::query("UPDATE indexes SET state = $3 WHERE file_id = $1 AND kind = $2")
            .bind(file_id.to_string())
            .bind(kind.to_string())
            .bind(state.to_string())
            .execute(self.pool().await?)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The stable index of `kind` of each of `file_ids` that has one.
    pub async fn indexes_for(
        &self,
        file_ids: &[String],
        kind: &str,
    ) -> Result<HashMap<String, IndexRow>, CatalogError> {
        let mut out = HashMap::new();
        for chunk in file_ids.chunks(500) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT file_id, kind, path, byte_size, state, created_at FROM indexes \
                 WHERE kind = $1 AND state = 'stable' AND file_id IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(kind.to_string());
            for id in chunk {
                q = q.bind(id.clone());
            }
            let rows = q.fetch_all(self.pool().await?).await.map_err(|e| self.err(e))?;
            for r in &rows {
                let row = to_index(r).map_err(|e| self.err(e))?;
                out.insert(row.file_id.clone(), row);
            }
        }
        Ok(out)
    }

    /// Stable files `which` selects that have no stable index of `kind`, oldest first, at most `limit`.
    /// Only the tables and the root the caller indexes are listed, so that files it would skip cannot
    /// fill the page and keep the others waiting.
    pub async fn unindexed_files(
        &self,
        kind: &str,
        which: &Unindexed<'_>,
        limit: i64,
    ) -> Result<Vec<FileRow>, CatalogError> {
        if which.tables.is_empty() {
            return Ok(Vec::new());
        }
        let columns: Vec<String> = FILE_COLUMNS.split(',').map(|c| format!("f.{}", c.trim())).collect();
        let tables: Vec<String> = (0..which.tables.len()).map(|i| format!("${}", i + 6)).collect();
        let sql = format!(
            "SELECT {} FROM files f LEFT JOIN indexes i ON i.file_id = f.file_id AND i.kind = $1 AND i.state = 'stable' \
             WHERE f.state = 'stable' AND i.file_id IS NULL AND f.exporter = $2 AND f.node_id = $3 AND f.root = $4 \
             AND f.table_name IN ({}) ORDER BY f.created_at, f.file_id LIMIT $5",
            columns.join(", "),
            tables.join(", ")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(kind.to_string())
            .bind(which.exporter.to_string())
            .bind(which.node_id.to_string())
            .bind(which.root.to_string())
            .bind(limit);
        for t in which.tables {
            q = q.bind(t.to_string());
        }
        let rows = q.fetch_all(self.pool().await?).await.map_err(|e| self.err(e))?;
        rows.iter().map(to_file).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The indexes of one file.
    pub async fn indexes_of(&self, file_id: &str) -> Result<Vec<IndexRow>, CatalogError> {
        let rows = sqlx::query(
            "SELECT file_id, kind, path, byte_size, state, created_at FROM indexes WHERE file_id = $1 ORDER BY kind",
        )
        .bind(file_id.to_string())
        .fetch_all(self.pool().await?)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(to_index).collect::<Result<_, sqlx::Error>>().map_err(|e| self.err(e))
    }
}

fn to_index(r: &AnyRow) -> Result<IndexRow, sqlx::Error> {
    Ok(IndexRow {
        file_id: r.try_get("file_id")?,
        kind: r.try_get("kind")?,
        path: r.try_get("path")?,
        byte_size: r.try_get("byte_size")?,
        state: r.try_get("state")?,
        created_at: r.try_get("created_at")?,
    })
}
