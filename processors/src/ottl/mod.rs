//! The OpenTelemetry Transformation Language, as the Collector's `filter` and `transform` processors
//! use it: statements (`set(attributes["k"], "v") where name == "x"`) and conditions.
//!
//! `lexer` and `parser` turn text into `ast`; `program` binds it to a context (`paths`) and to the
//! functions OpenWit has (`functions`), so that an unknown path or function is refused at start; `val`
//! holds the values it computes with; `columns` evaluates conditions a column at a time over
//! a batch's Arrow rows. `docs/ottl.md` lists what exists.

pub mod ast;
pub mod columns;
pub mod functions;
pub mod leaf;
pub mod lexer;
pub mod parser;
pub mod paths;
pub mod program;
pub mod val;
pub mod walk;

/// What a processor does when a statement or condition fails on an item (the Collector's `error_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorMode {
    /// Log the error and carry on with the next statement or item.
    #[default]
    Propagate,
    Ignore,
    Silent,
}
