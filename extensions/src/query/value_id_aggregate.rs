//! The partial aggregation of a `GROUP BY` on one dictionary key, finding each row's group without
//! hashing the row.
//!
//! `group_by_value` makes such a query group on `openwit_value_id(key)`: numbers that stand for the
//! key's values, given once per batch's dictionary. DataFusion's partial aggregation then still hashes
//! every row's number and probes its table for the group (~20 % of the all-time error rate's CPU on 10M
//! spans, docs/BENCHMARKS.md "Queries"), though the numbers are dense from 0. This operator replaces that
//! partial aggregation: each number indexes a vector of groups directly, and the rows' groups go to
//! DataFusion's own accumulators, which produce the same partial state. The final aggregation above is
//! DataFusion's, unchanged.
//!
//! Only the plain shape is replaced: a partial aggregation on that one key, without grouping sets,
//! `DISTINCT`, ordered aggregates, or aggregates without a grouped accumulator. When the memory pool
//! refuses more, the groups so far are emitted and started again, as a partial aggregation may.

use super::group_by_value::{ValueIds, ValueToId};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{Int32Type, SchemaRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::{Accumulator, EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::metrics::{BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, InputOrderMode, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Replaces DataFusion's partial aggregations on one `openwit_value_id` key by
/// [`PartialAggregateByValueIdExec`].
#[derive(Debug, Default)]
pub struct PartialAggregateByValueId;

impl PhysicalOptimizerRule for PartialAggregateByValueId {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let replaced = node.downcast_ref::<AggregateExec>().and_then(PartialAggregateByValueIdExec::replacing);
            Ok(match replaced {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .data()
    }

    fn name(&self) -> &str {
        "openwit_partial_aggregate_by_value_id"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A partial aggregation grouping on the numbers of one [`ValueIds`] table, with the schema, state and
/// properties of the `AggregateExec` it replaces.
#[derive(Debug)]
pub struct PartialAggregateByValueIdExec {
    /// The replaced aggregation: its input, aggregates, filters, schema and properties.
    aggregate: Arc<AggregateExec>,
    ids: Arc<ValueIds>,
    /// What `openwit_value_id` was called on.
    key: Arc<dyn PhysicalExpr>,
    metrics: ExecutionPlanMetricsSet,
}

impl PartialAggregateByValueIdExec {
    /// The operator that can stand for `agg`, if it has the shape this one handles.
    fn replacing(agg: &AggregateExec) -> Option<Self> {
        let group_by = agg.group_expr();
        if *agg.mode() != AggregateMode::Partial
            || !group_by.is_single()
            || group_by.expr().len() != 1
            || *agg.input_order_mode() != InputOrderMode::Linear
            || !agg.dynamic_expressions_produced().is_empty()
            || agg
                .aggr_expr()
                .iter()
                .any(|a| a.is_distinct() || !a.order_bys().is_empty() || !a.groups_accumulator_supported())
        {
            return None;
        }
        let call = group_by.expr()[0].0.downcast_ref::<ScalarFunctionExpr>()?;
        let to_id = call.fun().inner().downcast_ref::<ValueToId>()?;
        let [key] = call.args() else { return None };
        Some(PartialAggregateByValueIdExec {
            aggregate: Arc::new(agg.clone()),
            ids: to_id.ids().clone(),
            key: key.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for PartialAggregateByValueIdExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let (group, name) = &self.aggregate.group_expr().expr()[0];
        let aggregates: Vec<&str> = self.aggregate.aggr_expr().iter().map(|a| a.name()).collect();
        write!(f, "PartialAggregateByValueId: gby=[{group} as {name}], aggr=[{}]", aggregates.join(", "))
    }
}

impl ExecutionPlan for PartialAggregateByValueIdExec {
    fn name(&self) -> &str {
        "PartialAggregateByValueIdExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.aggregate.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.aggregate.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let arguments = self.aggregate.aggr_expr().iter().flat_map(|a| a.expressions());
        let filters = self.aggregate.filter_expr().iter().flatten().cloned();
        for e in std::iter::once(self.key.clone()).chain(arguments).chain(filters) {
            if f(&e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children).or_else(|c| internal_err!("{} children for one", c.len()))?;
        let agg = &self.aggregate;
        let aggregate = AggregateExec::try_new(
            *agg.mode(),
            agg.group_expr().clone(),
            agg.aggr_expr().to_vec(),
            agg.filter_expr().to_vec(),
            input,
            agg.input_schema(),
        )?;
        Ok(Arc::new(PartialAggregateByValueIdExec {
            aggregate: Arc::new(aggregate),
            ids: self.ids.clone(),
            key: self.key.clone(),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.aggregate.input().execute(partition, context.clone())?;
        let accumulators =
            self.aggregate.aggr_expr().iter().map(|a| a.create_groups_accumulator()).collect::<Result<Vec<_>>>()?;
        let reservation =
            MemoryConsumer::new(format!("PartialAggregateByValueId[{partition}]")).register(context.memory_pool());
        let groups = Groups {
            ids: self.ids.clone(),
            key: self.key.clone(),
            arguments: self.aggregate.aggr_expr().iter().map(|a| a.expressions()).collect(),
            filters: self.aggregate.filter_expr().to_vec(),
            accumulators,
            aggregates: self.aggregate.aggr_expr().to_vec(),
            run_accumulators: self.aggregate.aggr_expr().iter().map(|_| Vec::new()).collect(),
            run_bytes: 0,
            group_of_id: Vec::new(),
            null_group: None,
            group_ids: Vec::new(),
            row_groups: Vec::new(),
            reservation,
            over_budget: false,
            schema: self.schema(),
            metrics: BaselineMetrics::new(&self.metrics, partition),
            rows_in_runs: MetricBuilder::new(&self.metrics).counter("rows_in_runs", partition),
        };
        let stream = futures::stream::unfold(Some((input, groups)), |state| async move {
            let (mut input, mut groups) = state?;
            loop {
                match input.next().await {
                    Some(Ok(batch)) => {
                        if let Err(e) = groups.update(&batch) {
                            return Some((Err(e), None));
                        }
                        if groups.over_budget {
                            let out = groups.emit();
                            let next = out.is_ok().then_some((input, groups));
                            return Some((out, next));
                        }
                    }
                    Some(Err(e)) => return Some((Err(e), None)),
                    None if groups.group_ids.is_empty() => return None,
                    None => return Some((groups.emit(), None)),
                }
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// No group yet for this id.
const NO_GROUP: u32 = u32::MAX;

/// A batch goes to its groups run by run when its runs of one group are this long on average (a run
/// costs a few slices and a call; below this, the grouped accumulators' row-by-row update is cheaper).
const MIN_RUN_ROWS: usize = 256;

/// One partition's groups and their accumulators.
struct Groups {
    ids: Arc<ValueIds>,
    key: Arc<dyn PhysicalExpr>,
    /// Per aggregate, its arguments and its `FILTER (WHERE …)`.
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// The aggregates, to make the accumulators of rows that come in runs.
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Per aggregate, per group: the plain accumulator its runs of rows went to, if any did.
    run_accumulators: Vec<Vec<Option<Box<dyn Accumulator>>>>,
    /// What the run accumulators hold, in bytes.
    run_bytes: usize,
    /// Per value id, its group (`NO_GROUP` until a row has it).
    group_of_id: Vec<u32>,
    null_group: Option<usize>,
    /// Per group, its value id (`None`: the rows whose key is null).
    group_ids: Vec<Option<i32>>,
    /// Per row of the batch at hand, its group (kept to reuse its allocation).
    row_groups: Vec<usize>,
    reservation: MemoryReservation,
    over_budget: bool,
    schema: SchemaRef,
    metrics: BaselineMetrics,
    /// Rows that went to their groups in runs (`EXPLAIN ANALYZE` shows it as `rows_in_runs`).
    rows_in_runs: Count,
}

impl Groups {
    fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        let elapsed = self.metrics.elapsed_compute().clone();
        let _timer = elapsed.timer();
        let key = self.key.evaluate(batch)?.into_array(batch.num_rows())?;
        // Each row's code: its dictionary entry (the tables' dictionaries), else its value id; -1 for a
        // null key. The rows are taken run by run of equal codes, each run's group found once.
        let dict = key.as_dictionary_opt::<Int32Type>();
        let (codes, entries): (Cow<[i32]>, Option<Int32Array>) = match dict {
            Some(dict) => {
                let keys = dict.keys();
                let codes = match keys.nulls() {
                    None => Cow::Borrowed(&keys.values()[..]),
                    Some(_) => Cow::Owned(keys.iter().map(|k| k.unwrap_or(-1)).collect()),
                };
                let ids = self.ids.ids_of_values(dict.values())?;
                (codes, Some(Int32Array::new(ids.iter().copied().collect(), dict.values().logical_nulls())))
            }
            None => (Cow::Owned(self.ids.ids_of(&key)?.iter().map(|id| id.unwrap_or(-1)).collect()), None),
        };
        self.grow_to_ids();
        // An entry's group is found when a row first uses it, so entries no row uses make no group.
        let mut entry_groups = vec![NO_GROUP; entries.as_ref().map_or(0, |e| e.len())];
        let mut runs = Vec::new();
        let mut start = 0;
        while start < codes.len() {
            let code = codes[start];
            let mut end = start + 1;
            while end < codes.len() && codes[end] == code {
                end += 1;
            }
            let group = match (&entries, usize::try_from(code)) {
                (_, Err(_)) => self.group_of(None),
                (None, Ok(_)) => self.group_of(Some(code)),
                (Some(entries), Ok(entry)) => {
                    if entry_groups[entry] == NO_GROUP {
                        let id = entries.is_valid(entry).then(|| entries.value(entry));
                        entry_groups[entry] = self.group_of(id) as u32;
                    }
                    entry_groups[entry] as usize
                }
            };
            runs.push((start, end, group));
            start = end;
        }
        let groups = self.group_ids.len();
        // Rows sorted by the key (the tables are, per row group) come in long runs of one group: a run
        // goes to its group's own accumulator as a slice, whose sum or count is a loop over values
        // rather than a read and write of the group's state per row.
        let by_runs = self.filters.iter().all(Option::is_none) && codes.len() >= MIN_RUN_ROWS * runs.len();
        self.row_groups.clear();
        if by_runs {
            self.rows_in_runs.add(codes.len());
        } else {
            self.row_groups.reserve(codes.len());
            for &(start, end, group) in &runs {
                self.row_groups.extend(std::iter::repeat_n(group, end - start));
            }
        }
        for (i, accumulator) in self.accumulators.iter_mut().enumerate() {
            let values = self.arguments[i]
                .iter()
                .map(|e| e.evaluate(batch).and_then(|v| v.into_array(batch.num_rows())))
                .collect::<Result<Vec<ArrayRef>>>()?;
            if by_runs {
                let per_group = &mut self.run_accumulators[i];
                for &(start, end, group) in &runs {
                    if per_group.len() <= group {
                        per_group.resize_with(group + 1, || None);
                    }
                    let run_accumulator = match &mut per_group[group] {
                        Some(a) => a,
                        slot => slot.insert(self.aggregates[i].create_accumulator()?),
                    };
                    self.run_bytes -= run_accumulator.size().min(self.run_bytes);
                    let slices: Vec<ArrayRef> = values.iter().map(|v| v.slice(start, end - start)).collect();
                    run_accumulator.update_batch(&slices)?;
                    self.run_bytes += run_accumulator.size();
                }
                continue;
            }
            let filter: Option<BooleanArray> = match &self.filters[i] {
                Some(f) => Some(f.evaluate(batch)?.into_array(batch.num_rows())?.as_boolean().clone()),
                None => None,
            };
            accumulator.update_batch(&values, &self.row_groups, filter.as_ref(), groups)?;
        }
        let held = self.accumulators.iter().map(|a| a.size()).sum::<usize>()
            + self.run_bytes
            + self.group_of_id.capacity() * size_of::<u32>()
            + self.group_ids.capacity() * size_of::<Option<i32>>()
            + self.row_groups.capacity() * size_of::<usize>();
        self.over_budget = self.reservation.try_resize(held).is_err();
        Ok(())
    }

    /// Makes room for every id given so far (all below the table's length): once per batch, not per row.
    fn grow_to_ids(&mut self) {
        let known = self.ids.len();
        if self.group_of_id.len() < known {
            self.group_of_id.resize(known, NO_GROUP);
        }
    }

    /// The group of the rows with this value id (`None`: a null key), made if it is the first.
    fn group_of(&mut self, id: Option<i32>) -> usize {
        let Some(id) = id else {
            return *self.null_group.get_or_insert_with(|| {
                self.group_ids.push(None);
                self.group_ids.len() - 1
            });
        };
        let slot = &mut self.group_of_id[id as usize];
        if *slot == NO_GROUP {
            *slot = self.group_ids.len() as u32;
            self.group_ids.push(Some(id));
        }
        *slot as usize
    }

    /// The groups so far with their partial state, in the replaced aggregation's schema; starts again.
    fn emit(&mut self) -> Result<RecordBatch> {
        let elapsed = self.metrics.elapsed_compute().clone();
        let _timer = elapsed.timer();
        let mut columns: Vec<ArrayRef> = vec![Arc::new(Int32Array::from(std::mem::take(&mut self.group_ids)))];
        let groups = columns[0].len();
        for (accumulator, per_group) in self.accumulators.iter_mut().zip(&mut self.run_accumulators) {
            // The runs' states merged into the grouped accumulator, which then holds every group.
            let mut merged = Vec::new();
            let mut states: Vec<Vec<ScalarValue>> = Vec::new();
            for (group, run_accumulator) in std::mem::take(per_group).into_iter().enumerate() {
                if let Some(mut a) = run_accumulator {
                    merged.push(group);
                    states.push(a.state()?);
                }
            }
            if !merged.is_empty() {
                let fields = (0..states[0].len())
                    .map(|f| ScalarValue::iter_to_array(states.iter().map(|s| s[f].clone())))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                accumulator.merge_batch(&fields, &merged, groups)?;
            }
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        self.run_bytes = 0;
        self.group_of_id.fill(NO_GROUP);
        self.null_group = None;
        self.over_budget = false;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.metrics.record_output(batch.num_rows());
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::super::group_by_value::tests::session_with;
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::common::Result;
    use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation, UnboundedMemoryPool};
    use datafusion::physical_plan::{ExecutionPlan, collect, displayable};
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    /// The physical plan of `sql` in `ctx`, as text, and its answer, sorted as it asks.
    async fn run(ctx: &SessionContext, sql: &str) -> (Arc<dyn ExecutionPlan>, String) {
        let plan = ctx.sql(sql).await.unwrap().create_physical_plan().await.unwrap();
        let rows = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
        (plan, pretty_format_batches(&rows).unwrap().to_string())
    }

    fn text(plan: &Arc<dyn ExecutionPlan>) -> String {
        displayable(plan.as_ref()).indent(true).to_string()
    }

    /// Rows the partial aggregations by value id emitted, over the whole plan.
    fn emitted(plan: &Arc<dyn ExecutionPlan>) -> usize {
        metric(plan, "output_rows")
    }

    /// A metric of the partial aggregations by value id, summed over the whole plan.
    fn metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
        let own = if plan.name() == "PartialAggregateByValueIdExec" {
            plan.metrics().and_then(|m| m.sum_by_name(name)).map_or(0, |v| v.as_usize())
        } else {
            0
        };
        own + plan.children().into_iter().map(|c| metric(c, name)).sum::<usize>()
    }

    const QUERIES: [&str; 10] = [
        "SELECT k, count(*) AS n, sum(v) AS s, avg(v) AS a, min(v), max(v) FROM t3 GROUP BY k ORDER BY k",
        "SELECT k, avg(CASE WHEN v % 3 = 0 THEN 1.0 ELSE 0.0 END) AS rate FROM t3 WHERE v > 300 GROUP BY k ORDER BY k",
        "SELECT k, count(*) FILTER (WHERE v % 2 = 0) AS even, sum(v) FROM t3 GROUP BY k ORDER BY k",
        // DataFusion makes this a grouping by (k, v) under a plain count grouped by k.
        "SELECT k, count(DISTINCT v) FROM t GROUP BY k ORDER BY k",
        "SELECT k, count(*) AS n, sum(v) AS s, avg(v) AS a FROM t GROUP BY k ORDER BY k",
        "SELECT k, min(v), max(v), count(v) FILTER (WHERE v % 2 = 0) AS even FROM t GROUP BY k ORDER BY k",
        "SELECT k, avg(CASE WHEN v > 3 THEN 1.0 ELSE 0.0 END) AS rate FROM t2 GROUP BY k ORDER BY k",
        "SELECT DISTINCT k FROM t2 ORDER BY k",
        "SELECT k, count(*) FROM t WHERE v > 100 GROUP BY k",
        "SELECT k, sum(v) FROM t2 GROUP BY k HAVING sum(v) > 10 ORDER BY 2 DESC",
    ];

    #[tokio::test]
    async fn a_group_by_one_dictionary_key_is_partially_aggregated_by_value_id_with_the_same_answers() {
        for sql in QUERIES {
            let (plan, rows) = run(&session_with(true, None), sql).await;
            let (plain_plan, expected) = run(&session_with(false, None), sql).await;
            assert!(
                text(&plan).contains("PartialAggregateByValueId: gby=[openwit_value_id(k@"),
                "{sql}:\n{}",
                text(&plan)
            );
            assert!(!text(&plain_plan).contains("PartialAggregateByValueId"), "{sql}");
            assert_eq!(rows, expected, "{sql}");
            let in_runs = metric(&plan, "rows_in_runs");
            if sql.contains("FROM t3") && !sql.contains("FILTER") {
                assert!(in_runs >= 2_000, "{sql}: {in_runs} rows in runs");
            } else {
                assert_eq!(in_runs, 0, "{sql}: short runs, or filtered aggregates, go row by row");
            }
        }
    }

    #[tokio::test]
    async fn other_aggregations_keep_datafusions_operator() {
        for sql in [
            "SELECT k, count(DISTINCT v), count(DISTINCT v % 2) FROM t GROUP BY k ORDER BY k",
            "SELECT k, array_agg(v ORDER BY v) FROM t GROUP BY k ORDER BY k",
            "SELECT k, v % 2 AS odd, count(*) FROM t GROUP BY k, v % 2 ORDER BY k, odd",
            "SELECT v, count(*) FROM t GROUP BY v ORDER BY v",
        ] {
            let (plan, rows) = run(&session_with(true, None), sql).await;
            let (_, expected) = run(&session_with(false, None), sql).await;
            assert!(!text(&plan).contains("PartialAggregateByValueId"), "{sql}:\n{}", text(&plan));
            assert_eq!(rows, expected, "{sql}");
        }
    }

    /// A pool that refuses every partial aggregation by value id any memory, and grants the rest.
    #[derive(Debug, Default)]
    struct RefusingPartialAggregates(UnboundedMemoryPool);

    impl std::fmt::Display for RefusingPartialAggregates {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(self.name())
        }
    }

    impl MemoryPool for RefusingPartialAggregates {
        fn name(&self) -> &str {
            "refusing partial aggregates"
        }
        fn grow(&self, r: &MemoryReservation, additional: usize) {
            self.0.grow(r, additional)
        }
        fn shrink(&self, r: &MemoryReservation, shrink: usize) {
            self.0.shrink(r, shrink)
        }
        fn try_grow(&self, r: &MemoryReservation, additional: usize) -> Result<()> {
            if r.consumer().name().starts_with("PartialAggregateByValueId") {
                return datafusion::common::resources_err!("refused for the test");
            }
            self.0.try_grow(r, additional)
        }
        fn reserved(&self) -> usize {
            self.0.reserved()
        }
        fn register(&self, c: &MemoryConsumer) {
            self.0.register(c)
        }
        fn unregister(&self, c: &MemoryConsumer) {
            self.0.unregister(c)
        }
    }

    #[tokio::test]
    async fn refused_memory_emits_the_groups_so_far_and_the_answers_stay_the_same() {
        let pool = Arc::new(RefusingPartialAggregates::default());
        for sql in QUERIES {
            let (plan, rows) = run(&session_with(true, Some(pool.clone())), sql).await;
            let (roomy, expected) = run(&session_with(true, None), sql).await;
            assert_eq!(rows, expected, "{sql}");
            if sql.contains("FROM t2") {
                // Each partition's two batches were emitted one by one: twice the groups.
                assert_eq!(emitted(&plan), 2 * emitted(&roomy), "{sql}");
            }
        }
    }
}
