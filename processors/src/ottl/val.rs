//! The values OTTL computes with, and how they compare (the Collector's `pkg/ottl/compare.go`): nil
//! equals only nil; numbers compare across int and double; strings, bytes and booleans compare with their
//! own kind; values of different kinds are unequal and never ordered (`<` is false).

use crate::value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value};
use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Nil,
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    Map(Vec<KeyValue>),
    List(Vec<AnyValue>),
}

impl Val {
    pub fn from_any(v: Option<&AnyValue>) -> Val {
        match v.and_then(|v| v.value.as_ref()) {
            None => Val::Nil,
            Some(Value::StringValue(s)) => Val::Str(s.clone()),
            Some(Value::IntValue(i)) => Val::Int(*i),
            Some(Value::DoubleValue(d)) => Val::Float(*d),
            Some(Value::BoolValue(b)) => Val::Bool(*b),
            Some(Value::BytesValue(b)) => Val::Bytes(b.clone()),
            Some(Value::KvlistValue(m)) => Val::Map(m.values.clone()),
            Some(Value::ArrayValue(a)) => Val::List(a.values.clone()),
            Some(Value::StringValueStrindex(i)) => Val::Int(i64::from(*i)),
        }
    }

    /// As an attribute value (`None` for nil).
    pub fn into_any(self) -> Option<AnyValue> {
        let value = match self {
            Val::Nil => return None,
            Val::Str(s) => Value::StringValue(s),
            Val::Int(i) => Value::IntValue(i),
            Val::Float(f) => Value::DoubleValue(f),
            Val::Bool(b) => Value::BoolValue(b),
            Val::Bytes(b) => Value::BytesValue(b),
            Val::Map(m) => Value::KvlistValue(KeyValueList { values: m }),
            Val::List(l) => Value::ArrayValue(ArrayValue { values: l }),
        };
        Some(AnyValue { value: Some(value) })
    }

    /// The type's name in messages (`string`, `int`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Nil => "nil",
            Val::Str(_) => "string",
            Val::Int(_) => "int",
            Val::Float(_) => "double",
            Val::Bool(_) => "bool",
            Val::Bytes(_) => "bytes",
            Val::Map(_) => "map",
            Val::List(_) => "slice",
        }
    }

    /// The value as text, as `String()` and `Concat` write it.
    pub fn to_text(&self) -> String {
        match self {
            Val::Nil => String::new(),
            Val::Str(s) => s.clone(),
            Val::Bytes(b) => b.iter().map(|x| format!("{x:02x}")).collect(),
            other => other.clone().into_any().map(|a| value::as_string(&a)).unwrap_or_default(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        if let Val::Str(s) = self { Some(s) } else { None }
    }
}

/// `a op b` with OTTL's rules.
pub fn compare(a: &Val, op: super::ast::CmpOp, b: &Val) -> bool {
    let ord = match (a, b) {
        (Val::Nil, Val::Nil) => Some(Ordering::Equal),
        (Val::Int(x), Val::Int(y)) => Some(x.cmp(y)),
        (Val::Float(x), Val::Float(y)) => x.partial_cmp(y),
        #[allow(clippy::cast_precision_loss)]
        (Val::Int(x), Val::Float(y)) => (*x as f64).partial_cmp(y),
        #[allow(clippy::cast_precision_loss)]
        (Val::Float(x), Val::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        (Val::Bytes(x), Val::Bytes(y)) => Some(x.cmp(y)),
        // Booleans, maps and lists are equal or not; they have no order.
        (Val::Bool(x), Val::Bool(y)) => return eq_only(x == y, op),
        (Val::Map(x), Val::Map(y)) => return eq_only(x == y, op),
        (Val::List(x), Val::List(y)) => return eq_only(x == y, op),
        _ => None,
    };
    ordered(ord, op)
}

/// Whether an ordering (`None`: the values are not comparable) satisfies `op`.
pub fn ordered(ord: Option<Ordering>, op: super::ast::CmpOp) -> bool {
    use super::ast::CmpOp::*;
    match (ord, op) {
        (Some(o), Eq) => o == Ordering::Equal,
        (Some(o), Ne) => o != Ordering::Equal,
        (Some(o), Lt) => o == Ordering::Less,
        (Some(o), Le) => o != Ordering::Greater,
        (Some(o), Gt) => o == Ordering::Greater,
        (Some(o), Ge) => o != Ordering::Less,
        (None, Ne) => true,
        (None, _) => false,
    }
}

fn eq_only(equal: bool, op: super::ast::CmpOp) -> bool {
    match op {
        super::ast::CmpOp::Eq => equal,
        super::ast::CmpOp::Ne => !equal,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::ast::CmpOp::*;
    use super::*;

    #[test]
    fn comparisons_follow_ottl() {
        assert!(compare(&Val::Int(1), Lt, &Val::Float(1.5)));
        assert!(compare(&Val::Nil, Eq, &Val::Nil));
        assert!(compare(&Val::Str("1".into()), Ne, &Val::Int(1)));
        assert!(!compare(&Val::Str("1".into()), Eq, &Val::Int(1)));
        assert!(!compare(&Val::Str("a".into()), Lt, &Val::Int(1)), "different kinds are never ordered");
        assert!(compare(&Val::Str("a".into()), Lt, &Val::Str("b".into())));
        assert!(!compare(&Val::Bool(false), Lt, &Val::Bool(true)), "booleans have no order");
        assert!(compare(&Val::Float(f64::NAN), Ne, &Val::Float(f64::NAN)));
        assert!(compare(&Val::Nil, Ne, &Val::Str(String::new())));
    }
}
