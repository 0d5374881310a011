//! Groups on dictionary-encoded strings by numbers that stand for their values.
//!
//! The tables hold low-cardinality strings (`service_name`, `name`, `scope_name`…) as
//! `Dictionary(Int32, Utf8)`. DataFusion has grouping tables specialised for numbers, strings and string
//! views, but none for dictionaries: a `GROUP BY service_name` went through its generic row encoder
//! (`GroupValuesRows`, about a fifth of a time-window aggregation's CPU on 3M spans,
//! docs/BENCHMARKS.md "Queries"). Grouping on the values cast to string views was faster, but still
//! built a view and hashed a string per row (~40 % of the all-time error rate's CPU on 10M spans).
//!
//! This rule groups on `openwit_value_id(key)` instead: each query gets its own table of the values
//! it has met ([`ValueIds`]), and a batch's dictionary values are looked up there once per batch (a
//! dictionary holds a few of them for thousands of rows), so each row costs a copy of a number and the
//! grouping table is DataFusion's one for integers. The few group keys are turned back into their
//! values and type by `openwit_id_value(id)` above the aggregation, so what a query returns keeps its
//! types. The table lives as long as the plan and holds each value once, as the grouping would anyway.

use datafusion::arrow::array::ArrayData;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder, Int32Array};
use datafusion::arrow::buffer::ScalarBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int32Type};
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue, exec_err};
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, LogicalPlan, Projection, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct GroupByValue;

/// Whether a group key of this type is grouped by value ids: dictionaries of strings or bytes.
fn by_value_id(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(_, v) => matches!(
            v.as_ref(),
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
        ),
        _ => false,
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
        if agg.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
            return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
        }
        let fields = agg.schema.fields().len();
        let mut keys = Vec::with_capacity(agg.group_expr.len());
        // Per changed key, the function that turns its ids back into values.
        let mut back_to_values = HashMap::new();
        for (i, e) in agg.group_expr.iter().enumerate() {
            let (qualifier, field) = agg.schema.qualified_field(i);
            if by_value_id(field.data_type()) {
                let ids = Arc::new(ValueIds::default());
                let to_id = ScalarUDF::new_from_impl(ValueToId::new(ids.clone()));
                keys.push(to_id.call(vec![e.clone()]).alias_qualified(qualifier.cloned(), field.name()));
                back_to_values.insert(i, ScalarUDF::new_from_impl(IdToValue::new(ids, field.data_type().clone())));
            } else {
                keys.push(e.clone());
            }
        }
        if back_to_values.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Aggregate(agg)));
        }
        let grouped = Aggregate::try_new(agg.input.clone(), keys, agg.aggr_expr.clone())?;
        // Every output column as it was: the changed keys turned back into their values and type.
        let back = (0..fields)
            .map(|i| {
                let (qualifier, field) = agg.schema.qualified_field(i);
                let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
                match back_to_values.get(&i) {
                    Some(to_value) => to_value.call(vec![column]).alias_qualified(qualifier.cloned(), field.name()),
                    None => column,
                }
            })
            .collect();
        let projection = Projection::try_new(back, Arc::new(LogicalPlan::Aggregate(grouped)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

/// The values one group key of one query has met, each numbered from 0 in the order met.
#[derive(Debug, Default)]
pub(super) struct ValueIds {
    table: Mutex<ValueTable>,
}

#[derive(Debug, Default)]
struct ValueTable {
    ids: HashMap<Box<[u8]>, i32>,
    values: Vec<Box<[u8]>>,
    /// The ids of the dictionaries met last (one per partition reading, and a spare).
    recent: VecDeque<(ArrayData, Arc<[i32]>)>,
}

/// How many dictionaries' ids [`ValueTable::recent`] keeps.
const RECENT_DICTIONARIES: usize = 4;

impl ValueTable {
    fn id(&mut self, value: &[u8]) -> Result<i32> {
        if let Some(id) = self.ids.get(value) {
            return Ok(*id);
        }
        let Ok(id) = i32::try_from(self.values.len()) else {
            return exec_err!("a GROUP BY key has more than {} distinct values", i32::MAX);
        };
        self.values.push(value.into());
        self.ids.insert(value.into(), id);
        Ok(id)
    }
}

impl ValueIds {
    /// The id of each row's value (null where the value is): once per dictionary value, not per row.
    pub(super) fn ids_of(&self, array: &ArrayRef) -> Result<Int32Array> {
        let value_ids = match array.as_any_dictionary_opt() {
            Some(dict) => self.ids_of_values(dict.values())?,
            None => self.intern(array)?.into(),
        };
        // A null key's slot may hold any number: its id is masked by the nulls below.
        let id_of = |k: usize| value_ids.get(k).copied().unwrap_or(0);
        let ids: ScalarBuffer<i32> = if let Some(dict) = array.as_dictionary_opt::<Int32Type>() {
            // The tables' dictionaries: their keys read in place.
            dict.keys().values().iter().map(|k| id_of(*k as usize)).collect()
        } else if let Some(dict) = array.as_any_dictionary_opt() {
            dict.normalized_keys().into_iter().map(id_of).collect()
        } else {
            value_ids.iter().copied().collect()
        };
        Ok(Int32Array::new(ids, array.logical_nulls()))
    }

    /// The ids of a dictionary's values. A reader hands out one dictionary (a column chunk's) for
    /// batch after batch, so the last few are remembered by their buffers and not looked up again.
    pub(super) fn ids_of_values(&self, values: &ArrayRef) -> Result<Arc<[i32]>> {
        let data = values.to_data();
        {
            let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
            // Held here, the buffers cannot be freed and their addresses reused by other values.
            if let Some((_, ids)) = table.recent.iter().find(|(d, _)| d.ptr_eq(&data)) {
                return Ok(ids.clone());
            }
        }
        let ids: Arc<[i32]> = self.intern(values)?.into();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.recent.len() == RECENT_DICTIONARIES {
            table.recent.pop_front();
        }
        table.recent.push_back((data, ids.clone()));
        Ok(ids)
    }

    /// Each value's id (0 where the value is null: masked by the caller).
    fn intern(&self, values: &ArrayRef) -> Result<Vec<i32>> {
        let values = cast(values, &DataType::Binary)?;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        values.as_binary::<i32>().iter().map(|v| v.map_or(Ok(0), |v| table.id(v))).collect()
    }

    /// How many values have an id: every id given is less.
    pub(super) fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).values.len()
    }

    /// The values of these ids, as an array of `value_type`.
    fn values_of(&self, ids: &Int32Array, value_type: &DataType) -> Result<ArrayRef> {
        let mut out = BinaryBuilder::with_capacity(ids.len(), 0);
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids.iter() {
            match id.and_then(|id| table.values.get(usize::try_from(id).ok()?)) {
                Some(v) => out.append_value(v),
                None if id.is_none() => out.append_null(),
                None => return exec_err!("group id {id:?} was never given to a value"),
            }
        }
        Ok(cast(&out.finish(), value_type)?)
    }
}

/// `openwit_value_id(key)`: the number the query's [`ValueIds`] gives each value of `key`.
#[derive(Debug)]
pub(super) struct ValueToId {
    ids: Arc<ValueIds>,
    signature: Signature,
}

/// `openwit_id_value(id)`: the value a number stands for, as the key's own type.
#[derive(Debug)]
struct IdToValue {
    ids: Arc<ValueIds>,
    key_type: DataType,
    signature: Signature,
}

impl ValueToId {
    fn new(ids: Arc<ValueIds>) -> Self {
        ValueToId { ids, signature: Signature::any(1, Volatility::Immutable) }
    }

    /// The query's table of values this function numbers them with.
    pub(super) fn ids(&self) -> &Arc<ValueIds> {
        &self.ids
    }
}

impl IdToValue {
    fn new(ids: Arc<ValueIds>, key_type: DataType) -> Self {
        IdToValue { ids, key_type, signature: Signature::exact(vec![DataType::Int32], Volatility::Immutable) }
    }
}

// Two calls are the same function only if they share the query's table of values.
impl PartialEq for ValueToId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ids, &other.ids)
    }
}
impl Eq for ValueToId {}
impl Hash for ValueToId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.ids).hash(state)
    }
}
impl PartialEq for IdToValue {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ids, &other.ids) && self.key_type == other.key_type
    }
}
impl Eq for IdToValue {}
impl Hash for IdToValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.ids).hash(state)
    }
}

/// Runs `f` on the argument as an array and gives back a scalar if the argument was one.
fn on_array(args: ScalarFunctionArgs, f: impl FnOnce(&ArrayRef) -> Result<ArrayRef>) -> Result<ColumnarValue> {
    match &args.args[0] {
        ColumnarValue::Array(a) => Ok(ColumnarValue::Array(f(a)?)),
        ColumnarValue::Scalar(s) => {
            let out = f(&s.to_array()?)?;
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?))
        }
    }
}

impl ScalarUDFImpl for ValueToId {
    fn name(&self) -> &str {
        "openwit_value_id"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(self.name(), DataType::Int32, args.arg_fields[0].is_nullable())))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        on_array(args, |a| Ok(Arc::new(self.ids.ids_of(a)?)))
    }
}

impl ScalarUDFImpl for IdToValue {
    fn name(&self) -> &str {
        "openwit_id_value"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.key_type.clone())
    }
    // Null only where the key was: the grouping keeps a key's nullability.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(self.name(), self.key_type.clone(), args.arg_fields[0].is_nullable())))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        on_array(args, |a| self.ids.values_of(a.as_primitive::<Int32Type>(), &self.key_type))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use datafusion::arrow::array::{DictionaryArray, Int64Array, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{Schema, UInt8Type};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    /// A table `t` of a dictionary column `k` and a number `v`, in two partitions whose dictionaries
    /// list the values in other orders (and one lists a value no row uses), in a session with or without
    /// the rule (and the partial aggregation it makes possible, as the engine has them).
    fn session(with_rule: bool) -> SessionContext {
        session_with(with_rule, None)
    }

    /// The same, with the memory pool given; `t2` has each partition's batches twice, `t3` rows in runs.
    pub(in crate::query) fn session_with(
        with_rule: bool,
        pool: Option<Arc<dyn datafusion::execution::memory_pool::MemoryPool>>,
    ) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)), true),
            Field::new("v", DataType::Int64, false),
        ]));
        let first: DictionaryArray<Int32Type> =
            ["b", "a", "b", "c", "a", "b"].into_iter().map(Some).chain([None]).collect();
        let first = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(first), Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6, 7]))],
        )
        .unwrap();
        let second = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(vec![Some(2), None, Some(0), Some(2), Some(3)]),
            Arc::new(StringArray::from(vec![Some("c"), Some("unused"), Some("a"), None])),
        )
        .unwrap();
        let second = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(second), Arc::new(Int64Array::from(vec![8, 9, 10, 11, 12]))],
        )
        .unwrap();
        let config = datafusion::prelude::SessionConfig::new().with_target_partitions(2);
        let mut state = SessionStateBuilder::new().with_config(config).with_default_features();
        if let Some(pool) = pool {
            let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new().with_memory_pool(pool);
            state = state.with_runtime_env(runtime.build_arc().unwrap());
        }
        if with_rule {
            state = state
                .with_optimizer_rule(Arc::new(GroupByValue))
                .with_physical_optimizer_rule(Arc::new(super::super::value_id_aggregate::PartialAggregateByValueId));
        }
        let ctx = SessionContext::new_with_state(state.build());
        // `t3`: rows sorted by `k` in runs of hundreds (and one batch whose groups alternate row by row).
        let sorted = |keys: &[(Option<&str>, usize)], from: i64| {
            let k: DictionaryArray<Int32Type> = keys.iter().flat_map(|(k, n)| std::iter::repeat_n(*k, *n)).collect();
            let v = Int64Array::from((from..from + k.len() as i64).collect::<Vec<_>>());
            RecordBatch::try_new(schema.clone(), vec![Arc::new(k), Arc::new(v)]).unwrap()
        };
        let runs = vec![
            vec![
                sorted(&[(Some("a"), 700), (Some("b"), 900), (None, 400)], 0),
                sorted(&[(Some("b"), 1), (Some("c"), 1)].repeat(300), 5_000),
            ],
            vec![sorted(&[(Some("c"), 1200), (Some("a"), 800)], 10_000), sorted(&[(Some("d"), 600)], 20_000)],
        ];
        ctx.register_table("t3", Arc::new(MemTable::try_new(schema.clone(), runs).unwrap())).unwrap();
        let twice = vec![vec![first.clone(), first.clone()], vec![second.clone(), second.clone()]];
        ctx.register_table("t2", Arc::new(MemTable::try_new(schema.clone(), twice).unwrap())).unwrap();
        let table = MemTable::try_new(schema, vec![vec![first], vec![second]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (String, Vec<RecordBatch>) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = format!("{}", df.clone().into_optimized_plan().unwrap().display_indent());
        (plan, df.collect().await.unwrap())
    }

    #[tokio::test]
    async fn dictionary_keys_are_grouped_by_value_ids_and_come_back_as_they_were() {
        for sql in [
            "SELECT k, count(*) AS n, sum(v) AS s FROM t GROUP BY k ORDER BY k",
            "SELECT t.k AS key, max(v) FROM t WHERE v > 1 GROUP BY t.k HAVING count(*) > 1 ORDER BY key",
            "SELECT DISTINCT k FROM t ORDER BY k",
            "SELECT k, v % 2 AS odd, count(*) FROM t GROUP BY k, v % 2 ORDER BY k, odd",
            "SELECT k, count(*) FROM t GROUP BY k, k ORDER BY k",
            "SELECT a.k, count(*) FROM t a JOIN (SELECT k FROM t GROUP BY k) b ON a.k = b.k GROUP BY a.k ORDER BY 1",
            "SELECT coalesce(k, 'none') AS c, sum(v) FROM t GROUP BY 1 ORDER BY 1",
        ] {
            let (plan, rows) = run(&session(true), sql).await;
            let (plain_plan, expected) = run(&session(false), sql).await;
            assert!(plan.contains("openwit_value_id"), "{sql}: the keys are not grouped by value ids:\n{plan}");
            assert!(!plain_plan.contains("openwit_value_id"), "{sql}: {plain_plan}");
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
            assert!(!plan.contains("openwit_value_id"), "{sql}: {plan}");
        }
    }

    #[test]
    fn a_value_has_one_id_whatever_array_holds_it() {
        let ids = ValueIds::default();
        let int32: DictionaryArray<Int32Type> = ["x", "y", "x"].into_iter().map(Some).collect();
        let uint8: DictionaryArray<UInt8Type> = [Some("y"), None, Some("z")].into_iter().collect();
        let plain = StringArray::from(vec![Some("z"), Some("x"), None]);
        let got: Vec<_> = [Arc::new(int32) as ArrayRef, Arc::new(uint8), Arc::new(plain)]
            .iter()
            .map(|a| ids.ids_of(a).unwrap().iter().collect::<Vec<_>>())
            .collect();
        assert_eq!(
            got,
            vec![vec![Some(0), Some(1), Some(0)], vec![Some(1), None, Some(2)], vec![Some(2), Some(0), None]]
        );
        let back = ids.values_of(&Int32Array::from(vec![Some(2), None, Some(0)]), &DataType::Utf8).unwrap();
        assert_eq!(back.as_string::<i32>().iter().collect::<Vec<_>>(), vec![Some("z"), None, Some("x")]);
        assert!(ids.values_of(&Int32Array::from(vec![7]), &DataType::Utf8).is_err(), "an id never given");
        // A dictionary met again (the same buffers, as a reader hands out batch after batch) is not
        // looked up again; another with the same values is.
        let recent = || ids.table.lock().unwrap().recent.len();
        assert_eq!(recent(), 2, "the two dictionaries above");
        let again: DictionaryArray<Int32Type> = ["x", "y", "x"].into_iter().map(Some).collect();
        let again = Arc::new(again) as ArrayRef;
        let first = ids.ids_of(&again).unwrap();
        assert_eq!(recent(), 3);
        let sliced = again.slice(1, 2);
        assert_eq!(ids.ids_of(&sliced).unwrap().iter().collect::<Vec<_>>(), vec![Some(1), Some(0)]);
        assert_eq!(ids.ids_of(&again).unwrap(), first);
        assert_eq!(recent(), 3, "the same dictionary is remembered");
    }
}
