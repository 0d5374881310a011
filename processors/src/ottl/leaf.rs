//! The commonest conditions — one path against literals (`attributes["k"] == "v"`, `IsMatch(body,
//! "…")`, `IsString(x)`) — compiled to a `Test` that reads the value in place: no copy of a string, a
//! pattern compiled once at start. The per-item evaluator (`program`) and the column evaluator
//! (`columns`) both use it, so they cannot disagree on what a test means.

use super::ast::CmpOp;
use super::functions::{self, Converter};
use super::paths::Bound;
use super::program::{CBool, CExpr};
use super::val::{Val, compare, ordered};
use opentelemetry_proto::tonic::common::v1::AnyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use regex::Regex;

/// A test of one value against literals.
#[derive(Clone, Debug)]
pub enum Test {
    /// `value op literal`.
    Cmp(CmpOp, Val),
    /// `IsMatch(value, "literal pattern")`.
    IsMatch(Regex),
    /// `IsString` … `IsList`.
    Is(Converter),
}

/// One value as a test sees it: borrowed where that is free, a `Val` otherwise.
pub enum Cell<'a> {
    Nil,
    Str(&'a str),
    Int(i64),
    Other(Val),
}

/// `path op literal`, `literal op path`, `IsMatch(path, "literal")`, `IsString(path)`…, as a path and
/// its test; `None` for any other condition.
pub fn leaf(b: &CBool) -> Option<(&Bound, Test)> {
    Some(match b {
        CBool::Compare(CExpr::Path(p), op, CExpr::Lit(v)) => (p, Test::Cmp(*op, v.clone())),
        CBool::Compare(CExpr::Lit(v), op, CExpr::Path(p)) => (p, Test::Cmp(mirror(*op), v.clone())),
        CBool::Call(CExpr::Call(c, args, keys)) if keys.is_empty() => match (c, args.as_slice()) {
            (Converter::IsMatch, [CExpr::Path(p), CExpr::Lit(Val::Str(pattern))]) => {
                (p, Test::IsMatch(Regex::new(pattern).ok()?))
            }
            (
                Converter::IsString
                | Converter::IsInt
                | Converter::IsDouble
                | Converter::IsBool
                | Converter::IsMap
                | Converter::IsList,
                [CExpr::Path(p)],
            ) => (p, Test::Is(*c)),
            _ => return None,
        },
        _ => return None,
    })
}

/// `lit op path` as `path op' lit`.
fn mirror(op: CmpOp) -> CmpOp {
    match op {
        CmpOp::Lt => CmpOp::Gt,
        CmpOp::Le => CmpOp::Ge,
        CmpOp::Gt => CmpOp::Lt,
        CmpOp::Ge => CmpOp::Le,
        other => other,
    }
}

impl Test {
    /// Whether `cell` passes, with OTTL's rules (`val::compare`, `IsMatch` on the value's text).
    pub fn on(&self, cell: Cell) -> bool {
        match self {
            Test::Cmp(op, lit) => match (&cell, lit) {
                (Cell::Str(s), Val::Str(l)) => ordered(Some((*s).cmp(l.as_str())), *op),
                (Cell::Int(x), Val::Int(y)) => ordered(Some(x.cmp(y)), *op),
                _ => compare(&cell.into_val(), *op, lit),
            },
            Test::IsMatch(re) => match cell {
                Cell::Str(s) => re.is_match(s),
                Cell::Nil => false,
                other => match other.into_val() {
                    Val::Nil => false,
                    v => re.is_match(&v.to_text()),
                },
            },
            Test::Is(c) => {
                let v = match cell {
                    // The type is all these tests read: no need to copy the text.
                    Cell::Str(_) => Val::Str(String::new()),
                    other => other.into_val(),
                };
                matches!(functions::call(*c, functions::Args::from_iter([v])), Ok(Val::Bool(true)))
            }
        }
    }
}

impl<'a> Cell<'a> {
    /// An attribute or body value, as `Val::from_any` reads it.
    pub fn of_any(v: Option<&'a AnyValue>) -> Cell<'a> {
        match v.and_then(|v| v.value.as_ref()) {
            None => Cell::Nil,
            Some(Value::StringValue(s)) => Cell::Str(s),
            Some(Value::IntValue(i)) => Cell::Int(*i),
            Some(_) => Cell::Other(Val::from_any(v)),
        }
    }

    pub fn into_val(self) -> Val {
        match self {
            Cell::Nil => Val::Nil,
            Cell::Str(s) => Val::Str(s.to_string()),
            Cell::Int(i) => Val::Int(i),
            Cell::Other(v) => v,
        }
    }
}
