//! `batches` and `files`: read-only views of the catalog, holding only the querying tenant's rows.

use super::sources::Sources;
use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use openwit_catalog::{BatchFilter, FileFilter, Stage};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum View {
    Batches,
    Files,
    Nodes,
}

impl View {
    pub const ALL: [View; 3] = [View::Batches, View::Files, View::Nodes];

    pub fn name(self) -> &'static str {
        match self {
            View::Batches => "batches",
            View::Files => "files",
            View::Nodes => "nodes",
        }
    }

    pub fn schema(self) -> SchemaRef {
        let text = |n: &str, null| Field::new(n, DataType::Utf8, null);
        let int = |n: &str, null| Field::new(n, DataType::Int64, null);
        let ms = |n: &str, null| Field::new(n, DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), null);
        let ns = |n: &str| Field::new(n, DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())), false);
        let fields = match self {
            View::Batches => {
                let mut f = vec![
                    text("batch_id", false),
                    text("tenant", false),
                    text("signal", false),
                    text("receiver", false),
                    text("node_id", false),
                    int("item_count", false),
                    int("byte_size", false),
                    text("topics", true),
                    int("first_offset", true),
                    int("last_offset", true),
                    ms("created_at", false),
                    text("status", false),
                ];
                for s in Stage::ALL {
                    f.push(Field::new(format!("{}_pip", s.column()), DataType::Boolean, false));
                    f.push(ms(&format!("{}_pip_completed_at", s.column()), true));
                }
                f.extend([text("error_stage", true), text("error_message", true), int("retry_count", false)]);
                f.push(ms("updated_at", false));
                f
            }
            View::Files => vec![
                text("file_id", false),
                text("exporter", false),
                text("node_id", false),
                text("tenant", false),
                text("signal", false),
                text("table_name", false),
                text("root", false),
                text("path", false),
                ns("min_time"),
                ns("max_time"),
                int("row_count", false),
                int("byte_size", false),
                text("state", false),
                ms("created_at", false),
                ms("uploaded_at", true),
            ],
            View::Nodes => vec![
                text("node_id", false),
                text("hostname", false),
                text("version", false),
                text("address", false),
                ms("started_at", false),
                ms("heartbeat_at", false),
                text("state", false),
            ],
        };
        Arc::new(Schema::new(fields))
    }
}

#[derive(Debug)]
pub struct CatalogView {
    pub view: View,
    pub tenant: String,
    pub sources: Arc<Sources>,
}

#[async_trait]
impl TableProvider for CatalogView {
    fn schema(&self) -> SchemaRef {
        self.view.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let batch = self.read().await.map_err(DataFusionError::External)?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![batch]], self.schema(), projection.cloned())?)
    }
}

impl CatalogView {
    async fn read(&self) -> Result<RecordBatch, Box<dyn std::error::Error + Send + Sync>> {
        let catalog = self.sources.catalog();
        let columns: Vec<ArrayRef> = match self.view {
            View::Files => {
                let filter = FileFilter { tenant: Some(self.tenant.clone()), ..Default::default() };
                let fresh = self.sources.fresh(None, &self.tenant).await;
                let mut rows: Vec<_> = catalog
                    .files(&filter)
                    .await
                    .map_err(|e| self.sources.unavailable(e))?
                    .into_iter()
                    .filter(|f| f.tenant == self.tenant)
                    .collect();
                // Files not in the catalog yet: active ones (rows in memory and in their `.part` file) and
                // staged ones not yet recorded (recorded ones are `uploading` there).
                let known: std::collections::HashSet<String> = rows.iter().map(|r| r.file_id.clone()).collect();
                let now = crate::now_ms();
                rows.extend(fresh.files.iter().filter(|f| !known.contains(&f.file_id)).map(|f| {
                    openwit_catalog::FileRow {
                        file_id: f.file_id.clone(),
                        exporter: f.exporter.clone(),
                        node_id: f.node_id.clone(),
                        tenant: f.tenant.clone(),
                        signal: f.signal.as_str().to_string(),
                        table_name: openwit_core::columnar::table_name(f.signal).to_string(),
                        root: f.path.parent().map(|p| p.display().to_string()).unwrap_or_default(),
                        path: f.path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default(),
                        min_time: f.min_time,
                        max_time: f.max_time,
                        row_count: f.rows as i64,
                        byte_size: f.len as i64,
                        state: f.state.as_str().to_string(),
                        created_at: now,
                        uploaded_at: None,
                    }
                }));
                let text = |f: &dyn Fn(&openwit_catalog::FileRow) -> &str| -> ArrayRef {
                    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
                };
                let int = |f: &dyn Fn(&openwit_catalog::FileRow) -> i64| -> ArrayRef {
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(f)))
                };
                let ns = |f: &dyn Fn(&openwit_catalog::FileRow) -> i64| -> ArrayRef {
                    Arc::new(
                        arrow::array::TimestampNanosecondArray::from_iter_values(rows.iter().map(f))
                            .with_timezone("UTC"),
                    )
                };
                vec![
                    text(&|r| &r.file_id),
                    text(&|r| &r.exporter),
                    text(&|r| &r.node_id),
                    text(&|r| &r.tenant),
                    text(&|r| &r.signal),
                    text(&|r| &r.table_name),
                    text(&|r| &r.root),
                    text(&|r| &r.path),
                    ns(&|r| r.min_time),
                    ns(&|r| r.max_time),
                    int(&|r| r.row_count),
                    int(&|r| r.byte_size),
                    text(&|r| &r.state),
                    millis(rows.iter().map(|r| Some(r.created_at))),
                    millis(rows.iter().map(|r| r.uploaded_at)),
                ]
            }
            View::Nodes => {
                // The daemons sharing the catalog: the same for every tenant (no tenant data in it).
                let now = crate::now_ms();
                let rows = catalog.nodes(now).await.map_err(|e| self.sources.unavailable(e))?;
                let text = |f: &dyn Fn(&openwit_catalog::NodeRow) -> &str| -> ArrayRef {
                    Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
                };
                vec![
                    text(&|r| &r.node_id),
                    text(&|r| &r.hostname),
                    text(&|r| &r.version),
                    text(&|r| &r.address),
                    millis(rows.iter().map(|r| Some(r.started_at))),
                    millis(rows.iter().map(|r| Some(r.heartbeat_at))),
                    text(&|r| &r.state),
                ]
            }
            View::Batches => {
                let filter = BatchFilter { tenant: Some(self.tenant.clone()), limit: i64::MAX, ..Default::default() };
                let rows: Vec<_> = catalog
                    .batches(&filter, i64::MAX)
                    .await
                    .map_err(|e| self.sources.unavailable(e))?
                    .into_iter()
                    .filter(|b| b.batch.client_id == self.tenant)
                    .collect();
                let text = |f: &dyn Fn(&openwit_catalog::BatchRow) -> Option<&str>| -> ArrayRef {
                    Arc::new(StringArray::from_iter(rows.iter().map(f)))
                };
                let int = |f: &dyn Fn(&openwit_catalog::BatchRow) -> Option<i64>| -> ArrayRef {
                    Arc::new(Int64Array::from_iter(rows.iter().map(f)))
                };
                let mut c = vec![
                    text(&|r| Some(&r.batch.batch_id)),
                    text(&|r| Some(&r.batch.client_id)),
                    text(&|r| Some(&r.batch.signal)),
                    text(&|r| Some(&r.batch.receiver)),
                    text(&|r| Some(&r.batch.node_id)),
                    int(&|r| Some(r.batch.item_count)),
                    int(&|r| Some(r.batch.byte_size)),
                    text(&|r| r.batch.topics.as_deref()),
                    int(&|r| r.batch.first_offset),
                    int(&|r| r.batch.last_offset),
                    millis(rows.iter().map(|r| Some(r.batch.created_at))),
                    text(&|r| Some(&r.status)),
                ];
                for s in Stage::ALL {
                    let stage = |r: &openwit_catalog::BatchRow| r.stages.iter().find(|x| x.stage == s).cloned();
                    c.push(Arc::new(BooleanArray::from_iter(
                        rows.iter().map(|r| Some(stage(r).is_some_and(|x| x.done))),
                    )));
                    c.push(millis(rows.iter().map(|r| stage(r).and_then(|x| x.completed_at))));
                }
                c.extend([
                    text(&|r| r.error_stage.as_deref()),
                    text(&|r| r.error_message.as_deref()),
                    int(&|r| Some(r.retry_count)),
                    millis(rows.iter().map(|r| Some(r.updated_at))),
                ]);
                c
            }
        };
        Ok(RecordBatch::try_new(self.schema(), columns)?)
    }
}

fn millis(values: impl Iterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from_iter(values).with_timezone("UTC"))
}
