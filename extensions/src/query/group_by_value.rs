//! Groups on dictionary-encoded strings by their values.
//!
//! The tables hold low-cardinality strings (`service_name`, `name`, `scope_name`…) as
//! `Dictionary(Int32, Utf8)`. DataFusion has grouping tables specialised for strings and string views,
//! but none for dictionaries: a `GROUP BY service_name` went through its generic row encoder
//! (`GroupValuesRows`, about a fifth of a time-window aggregation's CPU on 3M spans,
//! docs/BENCHMARKS.md "Queries"). This rule groups on the values as string views instead (a cast that
//! points into the dictionary's own buffer), then casts the few group keys back to the dictionary
//! type, so what a query returns keeps its types.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, cast};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use std::sync::Arc;

#[derive(Debug, Default)]
pub struct GroupByValue;

/// The type a dictionary of this type is grouped as, if it is one of strings or bytes.
fn value_view(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Dictionary(_, v) => match v.as_ref() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(DataType::Utf8View),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Some(DataType::BinaryView),
            _ => None,
        },
        _ => None,
    }
}

impl OptimizerRule for GroupByValue {
    fn name(&self) -> &str {
        "openwit_group_by_value"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = plan else {
            return Ok(Transformed::no(plan));
        };
        // Grouping sets (ROLLUP, CUBE) are left alone: their keys go through another path.
        let fields = agg.schema.fields().len();
        let mut keys = Vec::with_capacity(agg.group_expr.len());
        let mut changed = false;
        for (i, e) in agg.group_expr.iter().enumerate() {
            if matches!(e, Expr::GroupingSet(_)) {
                return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
            }
            let (qualifier, field) = agg.schema.qualified_field(i);
            match value_view(field.data_type()) {
                Some(view) => {
                    changed = true;
                    keys.push(cast(e.clone(), view).alias_qualified(qualifier.cloned(), field.name()));
                }
                _ => keys.push(e.clone()),
            }
        }
        if !changed {
            return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
        }
        let grouped = Aggregate::try_new(agg.input.clone(), keys, agg.aggr_expr.clone())?;
        // Every output column as it was: the changed keys cast back to their dictionary type.
        let back = (0..fields)
            .map(|i| {
                let (qualifier, field) = agg.schema.qualified_field(i);
                let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
                if i < agg.group_expr.len() && value_view(field.data_type()).is_some() {
                    cast(column, field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name())
                } else {
                    column
                }
            })
            .collect();
        let projection = Projection::try_new(back, Arc::new(LogicalPlan::Aggregate(grouped)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, DictionaryArray, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{Field, Int32Type, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    /// A table `t` of a dictionary column `k` and a number `v`, in a session with or without the rule.
    fn session(with_rule: bool) -> SessionContext {
        let k: DictionaryArray<Int32Type> =
            ["b", "a", "b", "c", "a", "b"].into_iter().map(Some).chain([None]).collect();
        let v = Int64Array::from(vec![1, 2, 3, 4, 5, 6, 7]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", k.data_type().clone(), true),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v)]).unwrap();
        let mut state = SessionStateBuilder::new().with_default_features();
        if with_rule {
            state = state.with_optimizer_rule(Arc::new(GroupByValue));
        }
        let ctx = SessionContext::new_with_state(state.build());
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (String, Vec<RecordBatch>) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = format!("{}", df.clone().into_optimized_plan().unwrap().display_indent());
        (plan, df.collect().await.unwrap())
    }

    #[tokio::test]
    async fn dictionary_keys_are_grouped_as_string_views_and_come_back_as_they_were() {
        for sql in [
            "SELECT k, count(*) AS n, sum(v) AS s FROM t GROUP BY k ORDER BY k",
            "SELECT t.k AS key, max(v) FROM t WHERE v > 1 GROUP BY t.k HAVING count(*) > 1 ORDER BY key",
            "SELECT DISTINCT k FROM t ORDER BY k",
            "SELECT k, v % 2 AS odd, count(*) FROM t GROUP BY k, v % 2 ORDER BY k, odd",
        ] {
            let (plan, rows) = run(&session(true), sql).await;
            let (plain_plan, expected) = run(&session(false), sql).await;
            assert!(plan.contains("AS Utf8View"), "{sql}: the keys are not grouped as views:\n{plan}");
            assert!(!plain_plan.contains("Utf8View"), "{sql}: {plain_plan}");
            assert_eq!(rows[0].schema(), expected[0].schema(), "{sql}: the result keeps its types");
            assert_eq!(
                pretty_format_batches(&rows).unwrap().to_string(),
                pretty_format_batches(&expected).unwrap().to_string(),
                "{sql}"
            );
        }
    }

    #[tokio::test]
    async fn other_groupings_are_left_alone() {
        for sql in ["SELECT v, count(*) FROM t GROUP BY v", "SELECT k, count(*) FROM t GROUP BY ROLLUP(k)"] {
            let (plan, _) = run(&session(true), sql).await;
            assert!(!plan.contains("Utf8View"), "{sql}: {plan}");
        }
    }
}
