//! The `indexes` table: the full-text index objects beside Parquet files (one per file and kind).

use crate::{Catalog, CatalogError};
use serde::Serialize;
use sqlx::Row;

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

impl Catalog {
    /// Records (or replaces, for a rebuilt index) the index of one file.
    pub async fn record_index(&self, r: &IndexRow) -> Result<(), CatalogError> {
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
        .execute(self.pool().await?)
        .await
        .map(|_| ())
        .map_err(|e| self.err(e))
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
        rows.iter()
            .map(|r| {
                Ok(IndexRow {
                    file_id: r.try_get("file_id")?,
                    kind: r.try_get("kind")?,
                    path: r.try_get("path")?,
                    byte_size: r.try_get("byte_size")?,
                    state: r.try_get("state")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| self.err(e))
    }
}
