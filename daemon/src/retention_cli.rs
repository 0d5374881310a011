//! `openwit retention plan`: what the janitors of the config's `parquet` exporters would retire now
//! under their `retention` settings, read from the catalog; nothing is changed.

use openwit_core::ComponentId;
use openwit_exporters::parquet::config::ParquetConfig;
use std::path::Path;

pub fn plan(cfg: &openwit_config::ResolvedConfig, data_dir: &Path) -> anyhow::Result<String> {
    let url = cfg.catalog.url.clone().unwrap_or_else(|| format!("sqlite://{}", data_dir.join("catalog.db").display()));
    let exporters: Vec<(ComponentId, ParquetConfig)> = cfg
        .tree
        .get("exporters")
        .and_then(|e| e.as_mapping())
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let id = ComponentId::parse(k.as_str()?).ok()?;
            (id.type_name == "parquet").then_some((id, v))
        })
        .map(|(id, v)| {
            let parsed = openwit_core::factory::parse_section::<ParquetConfig>(v)
                .map_err(|e| anyhow::anyhow!("exporters.{id}: {e:?}"))?;
            Ok((id, parsed))
        })
        .collect::<anyhow::Result<_>>()?;
    if exporters.is_empty() {
        return Ok("no parquet exporter in the config: nothing is retired\n".to_string());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let catalog = openwit_catalog::Catalog::connect(&url).await?;
        let storage = openwit_storage::Storage::default();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let mut out = String::new();
        for (id, c) in exporters {
            if !c.retention.any() {
                out.push_str(&format!("exporter {id}: no retention set, everything is kept\n"));
                continue;
            }
            let dest = openwit_exporters::parquet::destination(&id, &c, &storage, data_dir)?;
            let files = openwit_exporters::parquet::janitor::expired(
                &catalog,
                &id.to_string(),
                &dest.root,
                &c.retention,
                now,
                i64::MAX,
            )
            .await?;
            let bytes: i64 = files.iter().map(|f| f.byte_size).sum();
            let rows: i64 = files.iter().map(|f| f.row_count).sum();
            out.push_str(&format!(
                "exporter {id} ({}): {} files, {rows} rows, {bytes} bytes would be retired\n",
                dest.root,
                files.len()
            ));
            for f in files {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(f.max_time.max(0) as u64);
                let newest = humantime::format_rfc3339_seconds(at);
                out.push_str(&format!(
                    "  {:<10} {:<8} newest row {newest}  {:>10} bytes  {}\n",
                    f.tenant, f.table_name, f.byte_size, f.path
                ));
            }
            if !c.retention.batches.is_zero() {
                out.push_str(&format!(
                    "  and finished batch records older than {}\n",
                    humantime::format_duration(c.retention.batches)
                ));
            }
        }
        Ok(out)
    })
}
