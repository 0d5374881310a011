//! Compiled OTTL: statements and conditions bound to a context, with every path and function checked
//! at compile time (an unknown function or path is a config error naming it, at start), then
//! evaluated per item.

use super::ast::{Arg, BoolExpr, Call, CmpOp, Expr, Key, MathOp, Statement};
use super::functions::{self, Converter, Editor};
use super::leaf::{Test, leaf};
use super::paths::{Bound, Context, Item, bind, get_keys};
use super::val::{Val, compare};

/// A value expression, bound.
#[derive(Clone, Debug)]
pub enum CExpr {
    Lit(Val),
    Path(Bound),
    Call(Converter, Vec<CExpr>, Vec<Key>),
    Math(Box<CExpr>, MathOp, Box<CExpr>),
    List(Vec<CExpr>),
    Map(Vec<(String, CExpr)>),
}

#[derive(Clone, Debug)]
pub enum CBool {
    Or(Vec<CBool>),
    And(Vec<CBool>),
    Not(Box<CBool>),
    Const(bool),
    Call(CExpr),
    Compare(CExpr, CmpOp, CExpr),
    /// One path against literals, read in place (`leaf`).
    Leaf(Bound, Test),
}

/// A condition (`filter`, `where`, `conditions`).
#[derive(Clone, Debug)]
pub struct Condition(CBool);

/// A statement: an editor and its `where`.
#[derive(Clone, Debug)]
pub struct CStatement {
    pub text: String,
    editor: Editor,
    /// The editor's target, when its first argument is a path it writes.
    target: Option<Bound>,
    args: Vec<CExpr>,
    condition: Option<CBool>,
}

/// Compiles a condition in `ctx`.
pub fn condition(text: &str, ctx: Context) -> Result<Condition, String> {
    let ast = super::parser::condition(text)?;
    Ok(Condition(bool_expr(&ast, ctx)?))
}

/// Compiles a statement in `ctx`.
pub fn statement(text: &str, ctx: Context) -> Result<CStatement, String> {
    let ast: Statement = super::parser::statement(text)?;
    let (editor, params) = functions::editor(&ast.editor.name)?;
    let args = order_args(&ast.editor, params)?;
    let mut compiled = Vec::new();
    let mut target = None;
    for (i, a) in args.iter().enumerate() {
        match (i, a) {
            (0, Some(Expr::Path(p))) if editor.writes_first_arg() => target = Some(bind(p, ctx)?),
            (0, _) if editor.writes_first_arg() => {
                return Err(format!("{}: the first argument must be a path (what it changes)", ast.editor.name));
            }
            (_, Some(e)) => compiled.push(expr(e, ctx)?),
            (_, None) => compiled.push(CExpr::Lit(Val::Nil)),
        }
    }
    let condition = ast.condition.as_ref().map(|c| bool_expr(c, ctx)).transpose()?;
    Ok(CStatement { text: text.to_string(), editor, target, args: compiled, condition })
}

/// Puts positional and named arguments in parameter order, checking their number; optional ones not
/// given are `None`.
fn order_args<'a>(call: &'a Call, params: &[(&str, bool)]) -> Result<Vec<Option<&'a Expr>>, String> {
    let mut out: Vec<Option<&Expr>> = vec![None; params.len()];
    let mut named = false;
    for (i, Arg { name, value }) in call.args.iter().enumerate() {
        let slot = match name {
            Some(n) => {
                named = true;
                params
                    .iter()
                    .position(|(p, _)| p == n)
                    .ok_or_else(|| format!("{}: no parameter named {n}", call.name))?
            }
            None if named => return Err(format!("{}: positional arguments must come before named ones", call.name)),
            None => i,
        };
        if slot >= params.len() {
            return Err(format!("{}: takes at most {} arguments, got {}", call.name, params.len(), call.args.len()));
        }
        if out[slot].is_some() {
            return Err(format!("{}: {} given twice", call.name, params[slot].0));
        }
        out[slot] = Some(value);
    }
    if let Some((p, _)) =
        params.iter().zip(&out).find(|((_, required), given)| *required && given.is_none()).map(|(p, _)| p)
    {
        return Err(format!("{}: missing argument {p}", call.name));
    }
    // A regular expression written in the config is checked now, not on the first item.
    for ((param, _), arg) in params.iter().zip(&out) {
        if let Some(Expr::Str(p)) = arg
            && functions::is_regex_param(&call.name, param)
        {
            regex::Regex::new(p)
                .map_err(|e| format!("{}: {param} {p:?} is not a valid regular expression: {e}", call.name))?;
        }
    }
    Ok(out)
}

fn bool_expr(b: &BoolExpr, ctx: Context) -> Result<CBool, String> {
    bool_expr_with(b, ctx, true)
}

/// A condition compiled without `leaf` tests: every comparison and call evaluated the general way.
/// The tests check the leaves give the same answers.
#[cfg(test)]
pub(crate) fn condition_without_leaves(text: &str, ctx: Context) -> Result<Condition, String> {
    Ok(Condition(bool_expr_with(&super::parser::condition(text)?, ctx, false)?))
}

fn bool_expr_with(b: &BoolExpr, ctx: Context, leaves: bool) -> Result<CBool, String> {
    let sub = |x: &BoolExpr| bool_expr_with(x, ctx, leaves);
    let c = match b {
        BoolExpr::Or(v) => CBool::Or(v.iter().map(sub).collect::<Result<_, _>>()?),
        BoolExpr::And(v) => CBool::And(v.iter().map(sub).collect::<Result<_, _>>()?),
        BoolExpr::Not(x) => CBool::Not(Box::new(sub(x)?)),
        BoolExpr::Const(c) => CBool::Const(*c),
        BoolExpr::Converter(call, keys) => CBool::Call(converter(call, keys, ctx)?),
        BoolExpr::Compare(l, op, r) => CBool::Compare(expr(l, ctx)?, *op, expr(r, ctx)?),
    };
    Ok(match leaf(&c).filter(|_| leaves) {
        Some((path, test)) => CBool::Leaf(path.clone(), test),
        None => c,
    })
}

fn converter(call: &Call, keys: &[Key], ctx: Context) -> Result<CExpr, String> {
    let (c, params) = functions::converter(&call.name)?;
    let args = order_args(call, params)?
        .into_iter()
        .map(|a| a.map_or(Ok(CExpr::Lit(Val::Nil)), |e| expr(e, ctx)))
        .collect::<Result<_, _>>()?;
    Ok(CExpr::Call(c, args, keys.to_vec()))
}

fn expr(e: &Expr, ctx: Context) -> Result<CExpr, String> {
    Ok(match e {
        Expr::Nil => CExpr::Lit(Val::Nil),
        Expr::Int(i) => CExpr::Lit(Val::Int(*i)),
        Expr::Float(f) => CExpr::Lit(Val::Float(*f)),
        Expr::Str(s) => CExpr::Lit(Val::Str(s.clone())),
        Expr::Bool(b) => CExpr::Lit(Val::Bool(*b)),
        Expr::Bytes(b) => CExpr::Lit(Val::Bytes(b.clone())),
        Expr::Enum(name) => CExpr::Lit(Val::Int(functions::enum_value(name)?)),
        Expr::Path(p) => CExpr::Path(bind(p, ctx)?),
        Expr::Converter(call, keys) => converter(call, keys, ctx)?,
        Expr::Math(l, op, r) => CExpr::Math(Box::new(expr(l, ctx)?), *op, Box::new(expr(r, ctx)?)),
        Expr::List(items) => CExpr::List(items.iter().map(|x| expr(x, ctx)).collect::<Result<_, _>>()?),
        Expr::Map(items) => {
            CExpr::Map(items.iter().map(|(k, v)| Ok((k.clone(), expr(v, ctx)?))).collect::<Result<_, String>>()?)
        }
        Expr::FunctionName(n) => return Err(format!("{n}: functions passed by name are not supported")),
    })
}

impl CExpr {
    pub fn eval(&self, item: &mut Item) -> Result<Val, String> {
        Ok(match self {
            CExpr::Lit(v) => v.clone(),
            CExpr::Path(b) => item.get(b),
            CExpr::Call(c, args, keys) => {
                let vals = args.iter().map(|a| a.eval(item)).collect::<Result<functions::Args, _>>()?;
                get_keys(functions::call(*c, vals)?, keys)
            }
            CExpr::Math(l, op, r) => math(l.eval(item)?, *op, r.eval(item)?)?,
            CExpr::List(items) => Val::List(
                items
                    .iter()
                    .map(|x| Ok(x.eval(item)?.into_any().unwrap_or_default()))
                    .collect::<Result<_, String>>()?,
            ),
            CExpr::Map(items) => {
                let mut m = Vec::new();
                for (k, v) in items {
                    if let Some(a) = v.eval(item)?.into_any() {
                        crate::value::put(&mut m, k, a);
                    }
                }
                Val::Map(m)
            }
        })
    }
}

fn math(l: Val, op: MathOp, r: Val) -> Result<Val, String> {
    Ok(match (l, r) {
        (Val::Int(a), Val::Int(b)) => Val::Int(match op {
            MathOp::Add => a.wrapping_add(b),
            MathOp::Sub => a.wrapping_sub(b),
            MathOp::Mul => a.wrapping_mul(b),
            MathOp::Div => a.checked_div(b).ok_or("division by zero")?,
        }),
        (Val::Float(a), Val::Float(b)) => Val::Float(match op {
            MathOp::Add => a + b,
            MathOp::Sub => a - b,
            MathOp::Mul => a * b,
            MathOp::Div => {
                if b == 0.0 {
                    return Err("division by zero".into());
                }
                a / b
            }
        }),
        (a, b) => return Err(format!("cannot do math on {} and {} (both ints or both doubles)", a.kind(), b.kind())),
    })
}

impl CBool {
    fn eval(&self, item: &mut Item) -> Result<bool, String> {
        Ok(match self {
            CBool::Or(v) => {
                for x in v {
                    if x.eval(item)? {
                        return Ok(true);
                    }
                }
                false
            }
            CBool::And(v) => {
                for x in v {
                    if !x.eval(item)? {
                        return Ok(false);
                    }
                }
                true
            }
            CBool::Not(x) => !x.eval(item)?,
            CBool::Const(c) => *c,
            CBool::Call(e) => match e.eval(item)? {
                Val::Bool(b) => b,
                other => return Err(format!("a condition must be a bool, got {}", other.kind())),
            },
            CBool::Compare(l, op, r) => compare(&l.eval(item)?, *op, &r.eval(item)?),
            CBool::Leaf(path, test) => test.on(item.peek(path)),
        })
    }
}

impl Condition {
    /// The compiled tree, for the column evaluator (`super::columns`).
    pub(crate) fn tree(&self) -> &CBool {
        &self.0
    }

    pub fn eval(&self, item: &mut Item) -> Result<bool, String> {
        self.0.eval(item)
    }
}

impl CStatement {
    /// Runs the statement on one item (when its `where` holds). Returns whether it ran.
    pub fn run(&self, item: &mut Item) -> Result<bool, String> {
        if let Some(c) = &self.condition
            && !c.eval(item)?
        {
            return Ok(false);
        }
        let args = self.args.iter().map(|a| a.eval(item)).collect::<Result<functions::Args, _>>()?;
        functions::edit(self.editor, item, self.target.as_ref(), args).map_err(|e| format!("{}: {e}", self.text))?;
        Ok(true)
    }
}
