//! Telemetry helpers for SQL: id hex formatting and parsing, typed attribute access, `time_bucket`,
//! and the rewrite that lets `trace_id = 'af3c…'` compare ids as users write them.

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, MapArray, StringBuilder,
};
use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, ScalarValue, plan_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, LogicalPlan, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use std::sync::Arc;

/// Every helper, to register in a session.
pub fn all() -> Vec<ScalarUDF> {
    let date_bin = datafusion::functions::datetime::date_bin();
    vec![
        ScalarUDF::from(IdToHex::new()),
        ScalarUDF::from(HexToId::new()),
        ScalarUDF::from(Attr::new("attr", AttrType::Text)),
        ScalarUDF::from(Attr::new("attr_int", AttrType::Int)),
        ScalarUDF::from(Attr::new("attr_float", AttrType::Float)),
        ScalarUDF::from(Attr::new("attr_bool", AttrType::Bool)),
        // `time_bucket(interval, time)`: the name other time-series databases use for `date_bin`.
        ScalarUDF::new_from_impl(Renamed { name: "time_bucket".into(), inner: date_bin }),
    ]
}

/// `id_to_hex(trace_id)`: lowercase hex text of an id (any binary value).
#[derive(Debug, PartialEq, Eq, Hash)]
struct IdToHex {
    signature: Signature,
}

impl IdToHex {
    fn new() -> Self {
        IdToHex { signature: Signature::uniform(1, vec![DataType::Binary], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for IdToHex {
    fn name(&self) -> &str {
        "id_to_hex"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let ids = one_array(&args)?;
        let ids = arrow::compute::cast(&ids, &DataType::Binary)?;
        let mut out = StringBuilder::with_capacity(ids.len(), ids.len() * 32);
        for v in ids.as_binary::<i32>().iter() {
            out.append_option(v.map(hex::encode));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `hex_to_id('af3c…')`: the id the hex text spells; an error names text that is not hex.
#[derive(Debug, PartialEq, Eq, Hash)]
struct HexToId {
    signature: Signature,
}

impl HexToId {
    fn new() -> Self {
        HexToId { signature: Signature::uniform(1, vec![DataType::Utf8], Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for HexToId {
    fn name(&self) -> &str {
        "hex_to_id"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let texts = one_array(&args)?;
        let texts = arrow::compute::cast(&texts, &DataType::Utf8)?;
        let mut out = BinaryBuilder::new();
        for v in texts.as_string::<i32>().iter() {
            match v {
                Some(t) => out.append_value(parse_hex_id(t)?),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

fn parse_hex_id(text: &str) -> Result<Vec<u8>> {
    hex::decode(text.trim()).map_err(|e| {
        DataFusionError::Plan(format!(
            "{text:?} is not a hex id ({e}): write trace ids as 32 hex digits and span ids as 16, for example '5b8efff798038103d269b633813fc60c'"
        ))
    })
}

#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum AttrType {
    Text,
    Int,
    Float,
    Bool,
}

/// `attr(attributes, 'key')` and its typed variants `attr_int`, `attr_float`, `attr_bool`: the value of
/// the first entry with that key, null when there is none or (typed variants) when its text is not of
/// that type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Attr {
    name: &'static str,
    kind: AttrType,
    signature: Signature,
}

impl Attr {
    fn new(name: &'static str, kind: AttrType) -> Self {
        Attr { name, kind, signature: Signature::any(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for Attr {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !matches!(args.first(), Some(DataType::Map(..))) {
            return plan_err!(
                "{}(map, key): the first argument must be an attributes map (attributes, resource_attributes, scope_attributes, …), not {:?}",
                self.name,
                args.first()
            );
        }
        Ok(match self.kind {
            AttrType::Text => DataType::Utf8,
            AttrType::Int => DataType::Int64,
            AttrType::Float => DataType::Float64,
            AttrType::Bool => DataType::Boolean,
        })
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let maps = args.args[0].to_array(rows)?;
        let keys = arrow::compute::cast(&args.args[1].to_array(rows)?, &DataType::Utf8)?;
        let (maps, keys) = (maps.as_map(), keys.as_string::<i32>());
        let text = |i: usize| lookup(maps, i, keys.is_valid(i).then(|| keys.value(i)));
        let out: ArrayRef = match self.kind {
            AttrType::Text => {
                let mut b = StringBuilder::new();
                (0..rows).for_each(|i| b.append_option(text(i)));
                Arc::new(b.finish())
            }
            AttrType::Int => {
                let mut b = Int64Builder::new();
                (0..rows).for_each(|i| b.append_option(text(i).and_then(|t| t.trim().parse().ok())));
                Arc::new(b.finish())
            }
            AttrType::Float => {
                let mut b = Float64Builder::new();
                (0..rows).for_each(|i| b.append_option(text(i).and_then(|t| t.trim().parse().ok())));
                Arc::new(b.finish())
            }
            AttrType::Bool => {
                let mut b = BooleanBuilder::new();
                (0..rows).for_each(|i| b.append_option(text(i).and_then(|t| t.trim().parse().ok())));
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

/// The value of the first entry of row `i` of `maps` whose key is `key`.
fn lookup<'a>(maps: &'a MapArray, i: usize, key: Option<&str>) -> Option<&'a str> {
    let key = key?;
    if maps.is_null(i) {
        return None;
    }
    let (keys, values) = (maps.keys().as_string::<i32>(), maps.values().as_string::<i32>());
    let offsets = maps.value_offsets();
    (offsets[i] as usize..offsets[i + 1] as usize)
        .find(|&j| keys.value(j) == key)
        .and_then(|j| values.is_valid(j).then(|| values.value(j)))
}

fn one_array(args: &ScalarFunctionArgs) -> Result<ArrayRef> {
    args.args[0].to_array(args.number_rows)
}

/// Another function under another name (an alias that `SHOW FUNCTIONS` and errors name properly).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Renamed {
    name: String,
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for Renamed {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }
    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(args)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }
}

/// Rewrites `id = 'hex'`, `'hex' = id`, `id <> 'hex'` and `id IN ('hex', …)` on binary columns into
/// comparisons with the bytes the hex spells, before type coercion would compare the text's own bytes.
/// With a binary literal, the Parquet reader can also use the ids' bloom filters and statistics.
#[derive(Debug, Default)]
pub struct HexIdLiterals;

impl AnalyzerRule for HexIdLiterals {
    fn name(&self) -> &str {
        "openwit_hex_id_literals"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let inputs: Vec<DFSchema> = node.inputs().iter().map(|p| p.schema().as_ref().clone()).collect();
            if inputs.is_empty() {
                return Ok(Transformed::no(node));
            }
            node.map_expressions(|e| e.transform_up(|e| rewrite(e, &inputs)))
        })
        .map(|t| t.data)
    }
}

fn is_binary_column(e: &Expr, schemas: &[DFSchema]) -> bool {
    let Expr::Column(c) = e else { return false };
    schemas.iter().any(|s| {
        s.qualified_field_from_column(c).is_ok_and(|(_, f)| {
            matches!(f.data_type(), DataType::Binary | DataType::LargeBinary | DataType::BinaryView)
        })
    })
}

fn hex_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)) | ScalarValue::LargeUtf8(Some(s)),
            _,
        ) => Some(s),
        _ => None,
    }
}

fn binary(text: &str) -> Result<Expr> {
    Ok(Expr::Literal(ScalarValue::Binary(Some(parse_hex_id(text)?)), None))
}

fn rewrite(e: Expr, schemas: &[DFSchema]) -> Result<Transformed<Expr>> {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op: op @ (Operator::Eq | Operator::NotEq), right }) => {
            if is_binary_column(&left, schemas)
                && let Some(t) = hex_literal(&right)
            {
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(left, op, Box::new(binary(t)?)))));
            }
            if is_binary_column(&right, schemas)
                && let Some(t) = hex_literal(&left)
            {
                return Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(Box::new(binary(t)?), op, right))));
            }
            Ok(Transformed::no(Expr::BinaryExpr(BinaryExpr { left, op, right })))
        }
        Expr::InList(InList { expr, list, negated })
            if is_binary_column(&expr, schemas) && list.iter().all(|v| hex_literal(v).is_some()) =>
        {
            let list = list.iter().map(|v| binary(hex_literal(v).expect("checked"))).collect::<Result<Vec<_>>>()?;
            Ok(Transformed::yes(Expr::InList(InList { expr, list, negated })))
        }
        other => Ok(Transformed::no(other)),
    }
}
