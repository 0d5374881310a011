//! What an OTTL statement or condition is, once parsed.

/// `editor(args) where condition`.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    pub editor: Call,
    pub condition: Option<BoolExpr>,
}

/// A function call: an editor (lower case) or a converter (upper case).
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub name: String,
    pub args: Vec<Arg>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// `name = value` (named arguments, for optional parameters).
    pub name: Option<String>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Nil,
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Bytes(Vec<u8>),
    /// `SPAN_KIND_SERVER`, `SEVERITY_NUMBER_INFO`, …
    Enum(String),
    Path(Path),
    /// A converter call, indexed by `keys` (`Split(x, ",")[0]`).
    Converter(Call, Vec<Key>),
    Math(Box<Expr>, MathOp, Box<Expr>),
    List(Vec<Expr>),
    Map(Vec<(String, Expr)>),
    /// A function passed by name (an argument only).
    FunctionName(String),
}

/// `field.field[key]…`. Whether the first field names a context (`resource.`, `span.`) is decided
/// when the path is bound to a context.
#[derive(Clone, Debug, PartialEq)]
pub struct Path {
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub keys: Vec<Key>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Key {
    Str(String),
    Int(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MathOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn from_token(t: &str) -> CmpOp {
        match t {
            "==" => CmpOp::Eq,
            "!=" => CmpOp::Ne,
            "<" => CmpOp::Lt,
            "<=" => CmpOp::Le,
            ">" => CmpOp::Gt,
            _ => CmpOp::Ge,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum BoolExpr {
    Or(Vec<BoolExpr>),
    And(Vec<BoolExpr>),
    Not(Box<BoolExpr>),
    Const(bool),
    Converter(Call, Vec<Key>),
    Compare(Expr, CmpOp, Expr),
}

impl Statement {
    /// Every path the statement mentions (its arguments' and its condition's).
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = Vec::new();
        for a in &self.editor.args {
            a.value.paths(&mut out);
        }
        if let Some(c) = &self.condition {
            c.paths(&mut out);
        }
        out
    }
}

impl Expr {
    fn paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            Expr::Path(p) => out.push(p),
            Expr::Converter(c, _) => c.args.iter().for_each(|a| a.value.paths(out)),
            Expr::Math(l, _, r) => {
                l.paths(out);
                r.paths(out);
            }
            Expr::List(items) => items.iter().for_each(|x| x.paths(out)),
            Expr::Map(items) => items.iter().for_each(|(_, x)| x.paths(out)),
            _ => {}
        }
    }
}

impl BoolExpr {
    fn paths<'a>(&'a self, out: &mut Vec<&'a Path>) {
        match self {
            BoolExpr::Or(v) | BoolExpr::And(v) => v.iter().for_each(|x| x.paths(out)),
            BoolExpr::Not(x) => x.paths(out),
            BoolExpr::Converter(c, _) => c.args.iter().for_each(|a| a.value.paths(out)),
            BoolExpr::Compare(l, _, r) => {
                l.paths(out);
                r.paths(out);
            }
            BoolExpr::Const(_) => {}
        }
    }
}
