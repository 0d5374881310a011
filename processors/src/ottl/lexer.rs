//! OTTL's tokens, with the Collector's lexical rules (`pkg/ottl/grammar.go`): a sign directly before
//! digits belongs to the number (`-1`), `0x…` is bytes, strings are double-quoted with Go's escapes,
//! `and`/`or`/`not`/`true`/`false`/`nil` are words, identifiers are `Uppercase` (`[A-Z][A-Z0-9_]*`,
//! enums and converter names start so) or `Lowercase` (`[a-z][a-z0-9_]*`).

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Bytes(Vec<u8>),
    Float(f64),
    Int(i64),
    Str(String),
    Not,
    Or,
    And,
    Cmp(&'static str),
    AddSub(char),
    MulDiv(char),
    Bool(bool),
    Nil,
    Equal,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Colon,
    Comma,
    Dot,
    LBracket,
    RBracket,
    /// An identifier and whether it starts upper-case.
    Ident(String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Bytes(b) => write!(f, "0x{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
            Tok::Float(x) => write!(f, "{x}"),
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Not => f.write_str("not"),
            Tok::Or => f.write_str("or"),
            Tok::And => f.write_str("and"),
            Tok::Cmp(op) => f.write_str(op),
            Tok::AddSub(c) | Tok::MulDiv(c) => write!(f, "{c}"),
            Tok::Bool(b) => write!(f, "{b}"),
            Tok::Nil => f.write_str("nil"),
            Tok::Equal => f.write_str("="),
            Tok::LParen => f.write_str("("),
            Tok::RParen => f.write_str(")"),
            Tok::LBrace => f.write_str("{"),
            Tok::RBrace => f.write_str("}"),
            Tok::Colon => f.write_str(":"),
            Tok::Comma => f.write_str(","),
            Tok::Dot => f.write_str("."),
            Tok::LBracket => f.write_str("["),
            Tok::RBracket => f.write_str("]"),
            Tok::Ident(s) => f.write_str(s),
        }
    }
}

/// A token and the byte offset where it starts (for messages).
pub type Spanned = (Tok, usize);

pub fn lex(text: &str) -> Result<Vec<Spanned>, String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let word_end = |mut j: usize| {
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // Bytes: 0x followed by hex digits.
        if c == b'0' && b.get(i + 1) == Some(&b'x') && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) {
            let mut j = i + 2;
            while j < b.len() && b[j].is_ascii_hexdigit() {
                j += 1;
            }
            let hex = &text[i + 2..j];
            if !hex.len().is_multiple_of(2) {
                return Err(format!("at {start}: bytes literal 0x{hex} has an odd number of hex digits"));
            }
            let bytes =
                (0..hex.len()).step_by(2).map(|k| u8::from_str_radix(&hex[k..k + 2], 16).expect("hex")).collect();
            out.push((Tok::Bytes(bytes), start));
            i = j;
            continue;
        }
        // Numbers, with a sign only when a digit (or .digit) follows it directly.
        let signed = (c == b'-' || c == b'+')
            && (b.get(i + 1).is_some_and(u8::is_ascii_digit)
                || (b.get(i + 1) == Some(&b'.') && b.get(i + 2).is_some_and(u8::is_ascii_digit)));
        if c.is_ascii_digit() || signed || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let mut j = if signed { i + 1 } else { i };
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let mut float = false;
            if j < b.len() && b[j] == b'.' && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                float = true;
                j += 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
                    let mut k = j + 1;
                    if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
                        k += 1;
                    }
                    if k < b.len() && b[k].is_ascii_digit() {
                        while k < b.len() && b[k].is_ascii_digit() {
                            k += 1;
                        }
                        j = k;
                    }
                }
            }
            let s = &text[i..j];
            let tok = if float {
                Tok::Float(s.parse().map_err(|e| format!("at {start}: {s}: {e}"))?)
            } else {
                Tok::Int(s.parse().map_err(|_| format!("at {start}: {s} does not fit a 64-bit integer"))?)
            };
            out.push((tok, start));
            i = j;
            continue;
        }
        if c == b'"' {
            let (s, end) = string(text, i).map_err(|e| format!("at {start}: {e}"))?;
            out.push((Tok::Str(s), start));
            i = end;
            continue;
        }
        if c.is_ascii_alphabetic() {
            let j = word_end(i + 1);
            let w = &text[i..j];
            let tok = match w {
                "not" => Tok::Not,
                "or" => Tok::Or,
                "and" => Tok::And,
                "true" => Tok::Bool(true),
                "false" => Tok::Bool(false),
                "nil" => Tok::Nil,
                _ => Tok::Ident(w.to_string()),
            };
            out.push((tok, start));
            i = j;
            continue;
        }
        let two = text.get(i..i + 2).unwrap_or("");
        let (tok, len) = match (two, c) {
            ("==", _) => (Tok::Cmp("=="), 2),
            ("!=", _) => (Tok::Cmp("!="), 2),
            (">=", _) => (Tok::Cmp(">="), 2),
            ("<=", _) => (Tok::Cmp("<="), 2),
            (_, b'>') => (Tok::Cmp(">"), 1),
            (_, b'<') => (Tok::Cmp("<"), 1),
            (_, b'+' | b'-') => (Tok::AddSub(c as char), 1),
            (_, b'*' | b'/') => (Tok::MulDiv(c as char), 1),
            (_, b'=') => (Tok::Equal, 1),
            (_, b'(') => (Tok::LParen, 1),
            (_, b')') => (Tok::RParen, 1),
            (_, b'{') => (Tok::LBrace, 1),
            (_, b'}') => (Tok::RBrace, 1),
            (_, b':') => (Tok::Colon, 1),
            (_, b',') => (Tok::Comma, 1),
            (_, b'.') => (Tok::Dot, 1),
            (_, b'[') => (Tok::LBracket, 1),
            (_, b']') => (Tok::RBracket, 1),
            _ => {
                let ch = text[i..].chars().next().expect("not at the end");
                return Err(format!("at {start}: unexpected character {ch:?}"));
            }
        };
        out.push((tok, start));
        i += len;
    }
    Ok(out)
}

/// A double-quoted string starting at `at`, with Go's escapes; returns it and the offset after it.
fn string(text: &str, at: usize) -> Result<(String, usize), String> {
    let mut out = String::new();
    let mut chars = text[at + 1..].char_indices();
    while let Some((k, ch)) = chars.next() {
        match ch {
            '"' => return Ok((out, at + 1 + k + 1)),
            '\\' => {
                let (_, e) = chars.next().ok_or("unterminated string")?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'v' => out.push('\u{b}'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        let code = u32::from_str_radix(&hex, 16).map_err(|_| format!("bad escape \\{e}{hex}"))?;
                        out.push(char::from_u32(code).ok_or_else(|| format!("\\{e}{hex} is not a character"))?);
                    }
                    other => return Err(format!("unknown escape \\{other} in a string")),
                }
            }
            c => out.push(c),
        }
    }
    Err("unterminated string".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn numbers_take_their_sign_only_when_it_touches_them() {
        assert_eq!(
            toks("-1 - 1 +2.5e3 .5"),
            [Tok::Int(-1), Tok::AddSub('-'), Tok::Int(1), Tok::Float(2500.0), Tok::Float(0.5)]
        );
        assert_eq!(toks("0xAb01"), [Tok::Bytes(vec![0xab, 0x01])]);
        assert!(lex("0xabc").is_err());
        assert!(lex("99999999999999999999").is_err());
    }

    #[test]
    fn words_operators_and_strings() {
        assert_eq!(
            toks(r#"set(attributes["a\"b"], "x\ty") where not name != nil and true"#),
            [
                Tok::Ident("set".into()),
                Tok::LParen,
                Tok::Ident("attributes".into()),
                Tok::LBracket,
                Tok::Str("a\"b".into()),
                Tok::RBracket,
                Tok::Comma,
                Tok::Str("x\ty".into()),
                Tok::RParen,
                Tok::Ident("where".into()),
                Tok::Not,
                Tok::Ident("name".into()),
                Tok::Cmp("!="),
                Tok::Nil,
                Tok::And,
                Tok::Bool(true),
            ]
        );
        assert_eq!(toks(r#""\u00e9""#), [Tok::Str("é".into())]);
        assert!(lex(r#""open"#).is_err());
        assert!(lex("a ~ b").is_err());
    }
}
