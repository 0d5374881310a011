//! OTTL's grammar (the Collector's `pkg/ottl/grammar.go`), as a recursive-descent parser into `ast`.
//!
//! ```text
//! statement  := editor [ "where" boolean ]            condition := boolean
//! editor     := lower "(" [ arg { "," arg } ] ")"     converter := Upper "(" [ arg { "," arg } ] ")" { key }
//! arg        := [ lower "=" ] ( value | Upper )       (a bare Upper name is a function passed by name)
//! boolean    := term { "or" term }                    term := bvalue { "and" bvalue }
//! bvalue     := [ "not" ] ( value cmp value | "true" | "false" | converter | "(" boolean ")" )
//! value      := "nil" | math | bytes | string | bool | ENUM | map | list
//! math       := mterm { ("+"|"-") mterm }             mterm := mvalue { ("*"|"/") mvalue }
//! mvalue     := converter | float | int | path | "(" math ")"
//! path       := field { "." field }                   field := lower { key }      key := "[" (string | int) "]"
//! ```

use super::ast::{Arg, BoolExpr, Call, CmpOp, Expr, Field, Key, MathOp, Path, Statement};
use super::lexer::{Spanned, Tok, lex};

/// Parses one statement (`set(attributes["x"], 1) where name == "y"`).
pub fn statement(text: &str) -> Result<Statement, String> {
    let mut p = Parser::new(text)?;
    let (editor, keys) = match p.peek() {
        Some(Tok::Ident(name)) if starts_lower(name) => {
            let call = p.call()?;
            (call.0, call.1)
        }
        Some(Tok::Ident(name)) if starts_upper(name) => {
            return Err(format!("editor names must start with a lowercase letter but got '{name}'"));
        }
        _ => return Err(p.expected("an editor (set, delete_key, …)")),
    };
    if !keys.is_empty() {
        return Err(format!("only paths and converters may be indexed, not editors, but got {}", editor.name));
    }
    let condition = match p.peek() {
        Some(Tok::Ident(w)) if w == "where" => {
            p.next();
            Some(p.boolean()?)
        }
        _ => None,
    };
    p.end()?;
    Ok(Statement { editor, condition })
}

/// Parses one condition (`attributes["http.route"] == "/health"`).
pub fn condition(text: &str) -> Result<BoolExpr, String> {
    let mut p = Parser::new(text)?;
    let b = p.boolean()?;
    p.end()?;
    Ok(b)
}

/// Parses one value expression (`Concat([a, b], "-")`), for settings that take one.
pub fn value(text: &str) -> Result<Expr, String> {
    let mut p = Parser::new(text)?;
    let v = p.value()?;
    p.end()?;
    Ok(v)
}

fn starts_lower(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn starts_upper(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
}

/// An enum symbol: upper case, digits and `_` only (`SPAN_KIND_SERVER`).
fn is_enum(s: &str) -> bool {
    starts_upper(s) && s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A path field: lower case, digits and `_` only.
fn is_field(s: &str) -> bool {
    starts_lower(s) && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Spanned>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Parser<'a>, String> {
        Ok(Parser { text, toks: lex(text)?, at: 0 })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at).map(|(t, _)| t)
    }

    fn peek2(&self) -> Option<&Tok> {
        self.toks.get(self.at + 1).map(|(t, _)| t)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).map(|(t, _)| t.clone());
        self.at += 1;
        t
    }

    fn expected(&self, what: &str) -> String {
        match self.toks.get(self.at) {
            Some((t, pos)) => format!("at {pos} ({:?}…): expected {what}, found '{t}'", clip(&self.text[*pos..])),
            None => format!("expected {what} at the end of {:?}", self.text),
        }
    }

    fn eat(&mut self, t: &Tok, what: &str) -> Result<(), String> {
        if self.peek() == Some(t) {
            self.next();
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    fn end(&self) -> Result<(), String> {
        if self.at < self.toks.len() { Err(self.expected("the end of the statement")) } else { Ok(()) }
    }

    /// `name(args) keys*`; the name's case is checked by the caller.
    fn call(&mut self) -> Result<(Call, Vec<Key>), String> {
        let Some(Tok::Ident(name)) = self.next() else { unreachable!("called on an identifier") };
        self.eat(&Tok::LParen, &format!("'(' after {name}"))?;
        let mut args = Vec::new();
        if self.peek() != Some(&Tok::RParen) {
            loop {
                args.push(self.arg()?);
                if self.peek() == Some(&Tok::Comma) {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.eat(&Tok::RParen, &format!("',' or ')' in the arguments of {name}"))?;
        let keys = self.keys()?;
        Ok((Call { name, args }, keys))
    }

    fn arg(&mut self) -> Result<Arg, String> {
        let name = match (self.peek(), self.peek2()) {
            (Some(Tok::Ident(n)), Some(Tok::Equal)) if is_field(n) => {
                let n = n.clone();
                self.next();
                self.next();
                Some(n)
            }
            _ => None,
        };
        // A function passed by name: an upper-case identifier not called and not an enum.
        if let (Some(Tok::Ident(n)), next) = (self.peek(), self.peek2())
            && starts_upper(n)
            && !is_enum(n)
            && next != Some(&Tok::LParen)
        {
            let n = n.clone();
            self.next();
            return Ok(Arg { name, value: Expr::FunctionName(n) });
        }
        Ok(Arg { name, value: self.value()? })
    }

    fn keys(&mut self) -> Result<Vec<Key>, String> {
        let mut keys = Vec::new();
        while self.peek() == Some(&Tok::LBracket) {
            self.next();
            let k = match self.next() {
                Some(Tok::Str(s)) => Key::Str(s),
                Some(Tok::Int(i)) => Key::Int(i),
                _ => {
                    self.at -= 1;
                    return Err(self.expected("a string or an integer key"));
                }
            };
            keys.push(k);
            self.eat(&Tok::RBracket, "']'")?;
        }
        Ok(keys)
    }

    fn boolean(&mut self) -> Result<BoolExpr, String> {
        let mut terms = vec![self.term()?];
        while self.peek() == Some(&Tok::Or) {
            self.next();
            terms.push(self.term()?);
        }
        Ok(if terms.len() == 1 { terms.pop().expect("one") } else { BoolExpr::Or(terms) })
    }

    fn term(&mut self) -> Result<BoolExpr, String> {
        let mut values = vec![self.bvalue()?];
        while self.peek() == Some(&Tok::And) {
            self.next();
            values.push(self.bvalue()?);
        }
        Ok(if values.len() == 1 { values.pop().expect("one") } else { BoolExpr::And(values) })
    }

    fn bvalue(&mut self) -> Result<BoolExpr, String> {
        if self.peek() == Some(&Tok::Not) {
            self.next();
            return Ok(BoolExpr::Not(Box::new(self.bvalue_inner()?)));
        }
        self.bvalue_inner()
    }

    fn bvalue_inner(&mut self) -> Result<BoolExpr, String> {
        // A parenthesised sub-expression, unless it is the start of a math expression compared with
        // something: try the comparison first, and fall back.
        let mark = self.at;
        if let Ok(left) = self.value()
            && let Some(Tok::Cmp(op)) = self.peek()
        {
            let op = CmpOp::from_token(op);
            self.next();
            let right = self.value()?;
            return Ok(BoolExpr::Compare(left, op, right));
        }
        self.at = mark;
        match self.peek() {
            Some(Tok::Bool(b)) => {
                let b = *b;
                self.next();
                Ok(BoolExpr::Const(b))
            }
            Some(Tok::Ident(n)) if starts_upper(n) && self.peek2() == Some(&Tok::LParen) => {
                let (call, keys) = self.call()?;
                Ok(BoolExpr::Converter(call, keys))
            }
            Some(Tok::LParen) => {
                self.next();
                let b = self.boolean()?;
                self.eat(&Tok::RParen, "')'")?;
                Ok(b)
            }
            _ => Err(self.expected("a condition (a comparison, true, false, a converter or '(')")),
        }
    }

    fn value(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Tok::Nil) => {
                self.next();
                Ok(Expr::Nil)
            }
            Some(Tok::Bytes(_)) => match self.next() {
                Some(Tok::Bytes(b)) => Ok(Expr::Bytes(b)),
                _ => unreachable!(),
            },
            Some(Tok::Str(_)) => match self.next() {
                Some(Tok::Str(s)) => Ok(Expr::Str(s)),
                _ => unreachable!(),
            },
            Some(Tok::Bool(b)) => {
                let b = *b;
                self.next();
                Ok(Expr::Bool(b))
            }
            Some(Tok::Ident(n)) if is_enum(n) && self.peek2() != Some(&Tok::LParen) => {
                let n = n.clone();
                self.next();
                Ok(Expr::Enum(n))
            }
            Some(Tok::LBrace) => self.map(),
            Some(Tok::LBracket) => self.list(),
            _ => self.math(),
        }
    }

    fn map(&mut self) -> Result<Expr, String> {
        self.next();
        let mut items = Vec::new();
        while self.peek() != Some(&Tok::RBrace) {
            let key = match self.next() {
                Some(Tok::Str(s)) => s,
                _ => {
                    self.at -= 1;
                    return Err(self.expected("a string key or '}'"));
                }
            };
            self.eat(&Tok::Colon, "':' after a map key")?;
            items.push((key, self.value()?));
            if self.peek() == Some(&Tok::Comma) {
                self.next();
            }
        }
        self.next();
        Ok(Expr::Map(items))
    }

    fn list(&mut self) -> Result<Expr, String> {
        self.next();
        let mut items = Vec::new();
        while self.peek() != Some(&Tok::RBracket) {
            items.push(self.value()?);
            match self.peek() {
                Some(Tok::Comma) => {
                    self.next();
                }
                Some(Tok::RBracket) => {}
                _ => return Err(self.expected("',' or ']' in a list")),
            }
        }
        self.next();
        Ok(Expr::List(items))
    }

    fn math(&mut self) -> Result<Expr, String> {
        let mut left = self.mterm()?;
        while let Some(Tok::AddSub(c)) = self.peek() {
            let op = if *c == '+' { MathOp::Add } else { MathOp::Sub };
            self.next();
            left = Expr::Math(Box::new(left), op, Box::new(self.mterm()?));
        }
        Ok(left)
    }

    fn mterm(&mut self) -> Result<Expr, String> {
        let mut left = self.mvalue()?;
        while let Some(Tok::MulDiv(c)) = self.peek() {
            let op = if *c == '*' { MathOp::Mul } else { MathOp::Div };
            self.next();
            left = Expr::Math(Box::new(left), op, Box::new(self.mvalue()?));
        }
        Ok(left)
    }

    fn mvalue(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(Tok::Int(i)) => {
                let i = *i;
                self.next();
                Ok(Expr::Int(i))
            }
            Some(Tok::Float(f)) => {
                let f = *f;
                self.next();
                Ok(Expr::Float(f))
            }
            Some(Tok::LParen) => {
                self.next();
                let m = self.math()?;
                self.eat(&Tok::RParen, "')'")?;
                Ok(m)
            }
            Some(Tok::Ident(n)) if self.peek2() == Some(&Tok::LParen) => {
                if starts_lower(n) {
                    return Err(format!("converter names must start with an uppercase letter but got '{n}'"));
                }
                let (call, keys) = self.call()?;
                Ok(Expr::Converter(call, keys))
            }
            Some(Tok::Ident(n)) if is_field(n) => self.path(),
            _ => Err(self.expected("a value (a literal, a path, a converter, a list or a map)")),
        }
    }

    fn path(&mut self) -> Result<Expr, String> {
        let mut fields = Vec::new();
        loop {
            match self.next() {
                Some(Tok::Ident(n)) if is_field(&n) => {
                    let keys = self.keys()?;
                    fields.push(Field { name: n, keys });
                }
                _ => {
                    self.at -= 1;
                    return Err(self.expected("a path field (lower case)"));
                }
            }
            if self.peek() == Some(&Tok::Dot) {
                self.next();
                continue;
            }
            return Ok(Expr::Path(Path { fields }));
        }
    }
}

fn clip(s: &str) -> String {
    s.chars().take(24).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_of_the_collectors_docs_parse() {
        for s in [
            r#"set(attributes["test"], "pass")"#,
            r#"set(attributes["test"], "pass") where name == "operationA""#,
            r#"delete_key(attributes, "http.request.header.authorization")"#,
            r#"keep_keys(attributes, ["service.name", "service.namespace", "cloud.region"])"#,
            r#"replace_pattern(attributes["http.url"], "client_id=[^&]+", "client_id={redacted}")"#,
            r#"replace_all_patterns(attributes, "value", "^kube_([0-9A-Za-z]+_)", "k8s.$$1.")"#,
            r#"limit(attributes, 100, [])"#,
            r#"truncate_all(attributes, 4096)"#,
            r#"set(body, Concat([attributes["a"], "-", attributes["b"]], ""))"#,
            r#"merge_maps(cache, ParseJSON(body), "upsert") where IsMatch(body, "^\\{")"#,
            r#"set(severity_number, SEVERITY_NUMBER_ERROR) where IsString(body) and not (severity_text == nil)"#,
            r#"set(attributes["duration_ms"], (end_time_unix_nano - start_time_unix_nano) / 1000000)"#,
            r#"set(status.code, 2) where attributes["http.response.status_code"] >= 500 or kind == SPAN_KIND_CLIENT"#,
            r#"set(resource.attributes["x"], Split(attributes["y"], ",")[0])"#,
            r#"set(attributes["h"], SHA256(attributes["email"])) where span.name != "x""#,
            r#"set(attributes["m"], {"a": 1, "b": [1, 2.5, -3], "c": {"d": nil}})"#,
            r#"set(trace_id, TraceID(0x0102030405060708090a0b0c0d0e0f10))"#,
            r#"set(attributes["s"], Sort(attributes["l"], order = "desc"))"#,
        ] {
            statement(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    #[test]
    fn precedence_and_grouping() {
        let c = condition("a == 1 or b == 2 and not c == 3").unwrap();
        let BoolExpr::Or(terms) = c else { panic!("{c:?}") };
        assert!(matches!(terms[0], BoolExpr::Compare(..)));
        let BoolExpr::And(vals) = &terms[1] else { panic!() };
        assert!(matches!(vals[1], BoolExpr::Not(_)));
        let e = value("1 + 2 * 3 - 4").unwrap();
        let Expr::Math(l, MathOp::Sub, _) = e else { panic!("{e:?}") };
        let Expr::Math(_, MathOp::Add, r) = *l else { panic!() };
        assert!(matches!(*r, Expr::Math(_, MathOp::Mul, _)));
        // A parenthesised math expression on the left of a comparison.
        assert!(matches!(condition("(a + 1) * 2 > 3").unwrap(), BoolExpr::Compare(..)));
        assert!(matches!(condition("(a > 1)").unwrap(), BoolExpr::Compare(..)));
        assert!(matches!(condition("IsMatch(name, \"x\")").unwrap(), BoolExpr::Converter(..)));
    }

    #[test]
    fn paths_keep_their_fields_and_keys() {
        let Expr::Path(p) = value(r#"resource.attributes["k8s"]["pod"][0]"#).unwrap() else { panic!() };
        assert_eq!(p.fields.len(), 2);
        assert_eq!(p.fields[1].keys, [Key::Str("k8s".into()), Key::Str("pod".into()), Key::Int(0)]);
    }

    #[test]
    fn errors_say_where_and_what() {
        for (s, want) in [
            ("Set(name, 1)", "editor names must start with a lowercase letter"),
            ("set(name, concat(a))", "converter names must start with an uppercase letter"),
            ("set(name, 1)[0]", "only paths and converters may be indexed"),
            ("set(name 1)", "expected ',' or ')'"),
            ("set(name, 1) where", "expected a condition"),
            ("set(name, 1) when x", "expected the end"),
            ("set(attributes[x], 1)", "expected a string or an integer key"),
        ] {
            let e = statement(s).unwrap_err();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
