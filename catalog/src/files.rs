//! The `files` and `file_batches` tables: every Parquet file an exporter wrote, and which items of which
//! WAL batches it holds.

use crate::{Catalog, CatalogError};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

/// A file's state: `uploading` from just before its upload starts, `stable` once it is verified in the store.
pub const UPLOADING: &str = "uploading";
pub const STABLE: &str = "stable";

/// Items `item_start..item_start + item_count` of one WAL batch, held by a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileBatch {
    pub batch_id: String,
    pub item_start: i64,
    pub item_count: i64,
}

/// A Parquet file as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileRow {
    pub file_id: String,
    /// The exporter that wrote it (`parquet`, `parquet/archive`, …).
    pub exporter: String,
    pub node_id: String,
    pub tenant: String,
    pub signal: String,
    pub table_name: String,
    /// The exporter's destination (`file:///…`, `s3://bucket/prefix`, …).
    pub root: String,
    /// The object's path under `root` (`spans/tenant=…/date=…/hour=…/….parquet`).
    pub path: String,
    /// The rows' earliest and latest time, UTC nanoseconds.
    pub min_time: i64,
    pub max_time: i64,
    pub row_count: i64,
    pub byte_size: i64,
    pub state: String,
    pub created_at: i64,
    pub uploaded_at: Option<i64>,
}

/// Which files to list. Every field narrows the list when set.
#[derive(Clone, Debug, Default)]
pub struct FileFilter {
    pub exporter: Option<String>,
    pub node_id: Option<String>,
    pub tenant: Option<String>,
    pub table_name: Option<String>,
    pub state: Option<String>,
}

/// Items of a WAL batch that some file holds, and that file's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldItems {
    pub file_id: String,
    pub state: String,
    pub items: FileBatch,
}

pub(crate) const FILE_COLUMNS: &str = "file_id, exporter, node_id, tenant, signal, table_name, root, path, min_time, max_time, \
    row_count, byte_size, state, created_at, uploaded_at";

/// Rows per INSERT statement for `file_batches` (4 parameters each; well under SQLite's limit).
const BATCH_ROWS_PER_INSERT: usize = 500;

impl Catalog {
    /// Records a file in state `uploading` with the items it holds, in one transaction. Recording the
    /// same file again changes nothing.
    pub async fn add_file(&self, f: &FileRow, batches: &[FileBatch]) -> Result<(), CatalogError> {
        let mut tx = self.pool().await?.begin().await.map_err(|e| self.err(e))?;
        let sql = format!(
            "INSERT INTO files ({FILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (file_id) DO NOTHING"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(f.file_id.clone())
            .bind(f.exporter.clone())
            .bind(f.node_id.clone())
            .bind(f.tenant.clone())
            .bind(f.signal.clone())
            .bind(f.table_name.clone())
            .bind(f.root.clone())
            .bind(f.path.clone())
            .bind(f.min_time)
            .bind(f.max_time)
            .bind(f.row_count)
            .bind(f.byte_size)
            .bind(f.state.clone())
            .bind(f.created_at)
            .bind(f.uploaded_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.err(e))?;
        for chunk in batches.chunks(BATCH_ROWS_PER_INSERT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${}, ${})", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4))
                .collect();
            let sql = format!(
                "INSERT INTO file_batches (file_id, batch_id, item_start, item_count) VALUES {} \
                 ON CONFLICT (file_id, batch_id, item_start) DO NOTHING",
                values.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for b in chunk {
                q = q.bind(f.file_id.clone()).bind(b.batch_id.clone()).bind(b.item_start).bind(b.item_count);
            }
            q.execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Marks a file verified in its store.
    pub async fn file_stable(&self, file_id: &str, at_ms: i64) -> Result<(), CatalogError> {
        sqlx::query("UPDATE files SET state = 'stable', uploaded_at = $2 WHERE file_id = $1")
            .bind(file_id.to_string())
            .bind(at_ms)
            .execute(self.pool().await?)
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Forgets a file that never reached its store (its items are written again from the WAL).
    pub async fn remove_file(&self, file_id: &str) -> Result<(), CatalogError> {
        let mut tx = self.pool().await?.begin().await.map_err(|e| self.err(e))?;
        for sql in ["DELETE FROM file_batches WHERE file_id = $1", "DELETE FROM files WHERE file_id = $1"] {
            sqlx::query(sql).bind(file_id.to_string()).execute(&mut *tx).await.map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }

    /// Files matching a filter, oldest first.
    pub async fn files(&self, f: &FileFilter) -> Result<Vec<FileRow>, CatalogError> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE ($1 IS NULL OR exporter = $1) AND ($2 IS NULL OR node_id = $2) \
             AND ($3 IS NULL OR tenant = $3) AND ($4 IS NULL OR table_name = $4) AND ($5 IS NULL OR state = $5) \
             ORDER BY created_at, file_id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(f.exporter.clone())
            .bind(f.node_id.clone())
            .bind(f.tenant.clone())
            .bind(f.table_name.clone())
            .bind(f.state.clone())
            .fetch_all(self.pool().await?)
            .await
            .map_err(|e| self.err(e))?;
        rows.iter().map(to_file).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The items a file holds.
    pub async fn file_batches(&self, file_id: &str) -> Result<Vec<FileBatch>, CatalogError> {
        let rows = sqlx::query(
            "SELECT batch_id, item_start, item_count FROM file_batches WHERE file_id = $1 ORDER BY batch_id, item_start",
        )
        .bind(file_id.to_string())
        .fetch_all(self.pool().await?)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter().map(to_file_batch).collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The items of the given WAL batches that `exporter`'s files already hold.
    pub async fn held_items(&self, exporter: &str, batch_ids: &[String]) -> Result<Vec<HeldItems>, CatalogError> {
        let mut out = Vec::new();
        for chunk in batch_ids.chunks(BATCH_ROWS_PER_INSERT) {
            let params: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT fb.file_id, f.state, fb.batch_id, fb.item_start, fb.item_count FROM file_batches fb \
                 JOIN files f ON f.file_id = fb.file_id WHERE f.exporter = $1 AND fb.batch_id IN ({})",
                params.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(exporter.to_string());
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(self.pool().await?).await.map_err(|e| self.err(e))? {
                let held = (|| {
                    Ok::<_, sqlx::Error>(HeldItems {
                        file_id: r.try_get("file_id")?,
                        state: r.try_get("state")?,
                        items: to_file_batch(&r)?,
                    })
                })();
                out.push(held.map_err(|e| self.err(e))?);
            }
        }
        Ok(out)
    }
}

pub(crate) fn to_file(r: &AnyRow) -> Result<FileRow, sqlx::Error> {
    Ok(FileRow {
        file_id: r.try_get("file_id")?,
        exporter: r.try_get("exporter")?,
        node_id: r.try_get("node_id")?,
        tenant: r.try_get("tenant")?,
        signal: r.try_get("signal")?,
        table_name: r.try_get("table_name")?,
        root: r.try_get("root")?,
        path: r.try_get("path")?,
        min_time: r.try_get("min_time")?,
        max_time: r.try_get("max_time")?,
        row_count: r.try_get("row_count")?,
        byte_size: r.try_get("byte_size")?,
        state: r.try_get("state")?,
        created_at: r.try_get("created_at")?,
        uploaded_at: r.try_get("uploaded_at")?,
    })
}

fn to_file_batch(r: &AnyRow) -> Result<FileBatch, sqlx::Error> {
    Ok(FileBatch {
        batch_id: r.try_get("batch_id")?,
        item_start: r.try_get("item_start")?,
        item_count: r.try_get("item_count")?,
    })
}
