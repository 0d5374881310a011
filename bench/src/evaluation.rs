//! What a `filter` condition costs to evaluate, on one core, in-process: per item over the decoded
//! OTLP (the evaluator used before `batch`), and a column at a time over the Arrow rows (used after
//! `batch` in a pipeline storing Parquet), beside what making those rows costs. The condition is the
//! benchmark's filter (`not IsMatch(attributes["thread.name"], "-1$")`, ~97 % of the generated logs).

use openwit_core::{Payload, columnar};
use openwit_processors::ottl::columns::ColumnCondition;
use openwit_processors::ottl::paths::Context;
use openwit_processors::ottl::program::condition;
use openwit_processors::ottl::walk::visit;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The benchmark's filter condition.
pub const CONDITION: &str = r#"not IsMatch(attributes["thread.name"], "-1$")"#;

#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    pub condition: String,
    /// Items per second, per item over decoded OTLP.
    pub per_item_items_per_s: f64,
    /// Items per second, a column at a time over Arrow rows made beforehand.
    pub by_columns_items_per_s: f64,
    /// Items per second turned into Arrow rows (what the column evaluation needs first).
    pub to_arrow_items_per_s: f64,
    /// Share of the items the condition matched (what a filter drops).
    pub matched: f64,
}

/// Runs each way for at least `time` over `payloads` (logs).
pub fn evaluate(payloads: &[Payload], time: Duration) -> anyhow::Result<Evaluation> {
    let c = condition(CONDITION, Context::Log).map_err(anyhow::Error::msg)?;
    let columns =
        ColumnCondition::compile(&c, Context::Log).ok_or_else(|| anyhow::anyhow!("{CONDITION} has no column form"))?;
    let items: u64 = payloads.iter().map(|p| p.item_count() as u64).sum();
    let rate = |mut round: Box<dyn FnMut() -> anyhow::Result<u64> + '_>| -> anyhow::Result<(f64, u64)> {
        let (mut done, mut matched, start) = (0u64, 0u64, Instant::now());
        while start.elapsed() < time || done == 0 {
            matched = round()?;
            done += items;
        }
        Ok((done as f64 / start.elapsed().as_secs_f64(), matched))
    };
    let mut copies = payloads.to_vec();
    let (per_item, matched) = rate(Box::new(|| {
        let mut n = 0;
        for p in copies.iter_mut() {
            n += visit(p, Context::Log, |item| c.eval(item).unwrap_or(false)).iter().filter(|m| **m).count() as u64;
        }
        Ok(n)
    }))?;
    let rows = payloads.iter().map(|p| columnar::to_record_batch("default", p)).collect::<Result<Vec<_>, _>>()?;
    let (by_columns, matched_columns) = rate(Box::new(|| {
        let mut n = 0;
        for r in &rows {
            n += columns.eval(r).map_err(anyhow::Error::msg)?.iter().filter(|m| **m).count() as u64;
        }
        Ok(n)
    }))?;
    anyhow::ensure!(matched == matched_columns, "the evaluators disagree: {matched} against {matched_columns}");
    let (to_arrow, _) = rate(Box::new(|| {
        for p in payloads {
            columnar::to_record_batch("default", p)?;
        }
        Ok(0)
    }))?;
    Ok(Evaluation {
        condition: CONDITION.to_string(),
        per_item_items_per_s: per_item,
        by_columns_items_per_s: by_columns,
        to_arrow_items_per_s: to_arrow,
        matched: matched as f64 / items as f64,
    })
}
