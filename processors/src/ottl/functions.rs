//! The OTTL functions OpenWit has: editors (lower case, change the item) and converters (upper case,
//! compute a value), with the Collector's names, parameters and behaviour. `docs/ottl.md` lists them;
//! any other name is refused when the config is loaded.

use super::paths::{Bound, Item};
use super::val::Val;
use crate::value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use regex::Regex;
use sha2::Digest;

/// `(name, required)` per parameter, in order.
type Params = &'static [(&'static str, bool)];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Editor {
    Set,
    DeleteKey,
    DeleteMatchingKeys,
    KeepKeys,
    KeepMatchingKeys,
    Limit,
    TruncateAll,
    ReplacePattern,
    ReplaceAllPatterns,
    ReplaceMatch,
    ReplaceAllMatches,
    MergeMaps,
}

impl Editor {
    /// Whether the first argument is the path the editor changes (all of them do).
    pub fn writes_first_arg(self) -> bool {
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Converter {
    IsMatch,
    IsString,
    IsInt,
    IsDouble,
    IsBool,
    IsMap,
    IsList,
    HasPrefix,
    HasSuffix,
    Concat,
    Split,
    Substring,
    ConvertCase,
    ToLowerCase,
    ToUpperCase,
    Int,
    Double,
    String,
    Len,
    Sha256,
    Sha1,
    ParseJson,
    TraceId,
    SpanId,
    Hex,
    Now,
    UnixNano,
}

/// Every editor: name, variant, parameters.
const EDITORS: &[(&str, Editor, Params)] = &[
    ("set", Editor::Set, &[("target", true), ("value", true)]),
    ("delete_key", Editor::DeleteKey, &[("target", true), ("key", true)]),
    ("delete_matching_keys", Editor::DeleteMatchingKeys, &[("target", true), ("pattern", true)]),
    ("keep_keys", Editor::KeepKeys, &[("target", true), ("keys", true)]),
    ("keep_matching_keys", Editor::KeepMatchingKeys, &[("target", true), ("pattern", true)]),
    ("limit", Editor::Limit, &[("target", true), ("limit", true), ("priority_keys", true)]),
    ("truncate_all", Editor::TruncateAll, &[("target", true), ("limit", true)]),
    ("replace_pattern", Editor::ReplacePattern, &[("target", true), ("regex", true), ("replacement", true)]),
    (
        "replace_all_patterns",
        Editor::ReplaceAllPatterns,
        &[("target", true), ("mode", true), ("regex", true), ("replacement", true)],
    ),
    ("replace_match", Editor::ReplaceMatch, &[("target", true), ("pattern", true), ("replacement", true)]),
    ("replace_all_matches", Editor::ReplaceAllMatches, &[("target", true), ("pattern", true), ("replacement", true)]),
    ("merge_maps", Editor::MergeMaps, &[("target", true), ("source", true), ("strategy", true)]),
];

const CONVERTERS: &[(&str, Converter, Params)] = &[
    ("IsMatch", Converter::IsMatch, &[("target", true), ("pattern", true)]),
    ("IsString", Converter::IsString, &[("value", true)]),
    ("IsInt", Converter::IsInt, &[("value", true)]),
    ("IsDouble", Converter::IsDouble, &[("value", true)]),
    ("IsBool", Converter::IsBool, &[("value", true)]),
    ("IsMap", Converter::IsMap, &[("value", true)]),
    ("IsList", Converter::IsList, &[("value", true)]),
    ("HasPrefix", Converter::HasPrefix, &[("target", true), ("prefix", true)]),
    ("HasSuffix", Converter::HasSuffix, &[("target", true), ("suffix", true)]),
    ("Concat", Converter::Concat, &[("vals", true), ("delimiter", true)]),
    ("Split", Converter::Split, &[("target", true), ("delimiter", true)]),
    ("Substring", Converter::Substring, &[("target", true), ("start", true), ("length", true)]),
    ("ConvertCase", Converter::ConvertCase, &[("target", true), ("toCase", true)]),
    ("ToLowerCase", Converter::ToLowerCase, &[("target", true)]),
    ("ToUpperCase", Converter::ToUpperCase, &[("target", true)]),
    ("Int", Converter::Int, &[("value", true)]),
    ("Double", Converter::Double, &[("value", true)]),
    ("String", Converter::String, &[("value", true)]),
    ("Len", Converter::Len, &[("target", true)]),
    ("SHA256", Converter::Sha256, &[("value", true)]),
    ("SHA1", Converter::Sha1, &[("value", true)]),
    ("ParseJSON", Converter::ParseJson, &[("target", true)]),
    ("TraceID", Converter::TraceId, &[("bytes", true)]),
    ("SpanID", Converter::SpanId, &[("bytes", true)]),
    ("Hex", Converter::Hex, &[("value", true)]),
    ("Now", Converter::Now, &[]),
    ("UnixNano", Converter::UnixNano, &[("time", true)]),
];

/// Whether a parameter takes a regular expression (`pattern` of the `replace_*match*` editors is a glob).
pub fn is_regex_param(function: &str, param: &str) -> bool {
    param == "regex" || (param == "pattern" && !function.starts_with("replace_"))
}

/// The names of every function, for docs and messages.
pub fn names() -> (Vec<&'static str>, Vec<&'static str>) {
    (EDITORS.iter().map(|e| e.0).collect(), CONVERTERS.iter().map(|c| c.0).collect())
}

pub fn editor(name: &str) -> Result<(Editor, Params), String> {
    EDITORS.iter().find(|e| e.0 == name).map(|e| (e.1, e.2)).ok_or_else(|| {
        if CONVERTERS.iter().any(|c| c.0.eq_ignore_ascii_case(name)) {
            format!("{name} is a converter (it computes a value): use it inside an editor such as set(…)")
        } else {
            format!("unknown editor {name}; OpenWit has {}", names().0.join(", "))
        }
    })
}

pub fn converter(name: &str) -> Result<(Converter, Params), String> {
    CONVERTERS
        .iter()
        .find(|c| c.0 == name)
        .map(|c| (c.1, c.2))
        .ok_or_else(|| format!("unknown converter {name}; OpenWit has {} (see docs/ottl.md)", names().1.join(", ")))
}

/// The number an enum symbol stands for.
pub fn enum_value(name: &str) -> Result<i64, String> {
    const SEVERITIES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let v = match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        "METRIC_DATA_TYPE_NONE" => 0,
        "METRIC_DATA_TYPE_GAUGE" => 1,
        "METRIC_DATA_TYPE_SUM" => 2,
        "METRIC_DATA_TYPE_HISTOGRAM" => 3,
        "METRIC_DATA_TYPE_EXPONENTIAL_HISTOGRAM" => 4,
        "METRIC_DATA_TYPE_SUMMARY" => 5,
        "AGGREGATION_TEMPORALITY_UNSPECIFIED" => 0,
        "AGGREGATION_TEMPORALITY_DELTA" => 1,
        "AGGREGATION_TEMPORALITY_CUMULATIVE" => 2,
        "SEVERITY_NUMBER_UNSPECIFIED" => 0,
        other => {
            let sev = other.strip_prefix("SEVERITY_NUMBER_").ok_or_else(|| format!("unknown enum {other}"))?;
            let (base, step) = match sev.char_indices().last() {
                Some((i, c @ '2'..='4')) => (&sev[..i], i64::from(c as u8 - b'1')),
                _ => (sev, 0),
            };
            let i = SEVERITIES.iter().position(|s| *s == base).ok_or_else(|| format!("unknown enum {other}"))?;
            i64::try_from(i).expect("six") * 4 + 1 + step
        }
    };
    Ok(v)
}

fn text(v: &Val, what: &str) -> Result<String, String> {
    text_ref(v, what).map(str::to_string)
}

/// `text` without the copy, for the editors run on every item.
fn text_ref<'a>(v: &'a Val, what: &str) -> Result<&'a str, String> {
    match v {
        Val::Str(s) => Ok(s),
        other => Err(format!("{what} must be a string, got {}", other.kind())),
    }
}

fn int(v: &Val, what: &str) -> Result<i64, String> {
    match v {
        Val::Int(i) => Ok(*i),
        other => Err(format!("{what} must be an int, got {}", other.kind())),
    }
}

/// A pattern, compiled once per thread (patterns are nearly always literals of the config).
fn regex(v: &Val, what: &str) -> Result<Regex, String> {
    thread_local! {
        static CACHE: std::cell::RefCell<std::collections::HashMap<String, Regex>> = Default::default();
    }
    let p = text(v, what)?;
    CACHE.with(|c| {
        if let Some(r) = c.borrow().get(&p) {
            return Ok(r.clone());
        }
        let r = Regex::new(&p).map_err(|e| format!("{what} {p:?} is not a valid regular expression: {e}"))?;
        let mut c = c.borrow_mut();
        // Patterns built from item data could grow this without end: start afresh past a bound.
        if c.len() >= 1024 {
            c.clear();
        }
        c.insert(p, r.clone());
        Ok(r)
    })
}

/// Go's `$1` / `${name}` in a replacement are what the `regex` crate expands too.
fn replace(re: &Regex, s: &str, with: &str) -> String {
    re.replace_all(s, with).into_owned()
}

/// Runs a converter.
/// A function's arguments, evaluated: on the stack for the four or fewer every function takes (one
/// evaluation per item: no allocation for the list).
pub type Args = smallvec::SmallVec<[Val; 4]>;

pub fn call(c: Converter, a: impl Into<Args>) -> Result<Val, String> {
    let a: Args = a.into();
    use Converter::*;
    Ok(match c {
        IsMatch => match &a[0] {
            Val::Nil => Val::Bool(false),
            v => Val::Bool(regex(&a[1], "pattern")?.is_match(&v.to_text())),
        },
        IsString => Val::Bool(matches!(a[0], Val::Str(_))),
        IsInt => Val::Bool(matches!(a[0], Val::Int(_))),
        IsDouble => Val::Bool(matches!(a[0], Val::Float(_))),
        IsBool => Val::Bool(matches!(a[0], Val::Bool(_))),
        IsMap => Val::Bool(matches!(a[0], Val::Map(_))),
        IsList => Val::Bool(matches!(a[0], Val::List(_))),
        HasPrefix => Val::Bool(text(&a[0], "target")?.starts_with(&text(&a[1], "prefix")?)),
        HasSuffix => Val::Bool(text(&a[0], "target")?.ends_with(&text(&a[1], "suffix")?)),
        Concat => {
            let Val::List(items) = &a[0] else { return Err("Concat: vals must be a list".into()) };
            let sep = text(&a[1], "delimiter")?;
            Val::Str(items.iter().map(|i| Val::from_any(Some(i)).to_text()).collect::<Vec<_>>().join(&sep))
        }
        Split => match &a[0] {
            Val::Nil => Val::Nil,
            v => {
                let sep = text(&a[1], "delimiter")?;
                let s = text(v, "target")?;
                let parts: Vec<&str> = if sep.is_empty() {
                    s.split_terminator("").skip(1).collect()
                } else {
                    s.split(sep.as_str()).collect()
                };
                Val::List(parts.into_iter().map(value::string).collect())
            }
        },
        Substring => {
            let s = text(&a[0], "target")?;
            let (start, len) = (int(&a[1], "start")?, int(&a[2], "length")?);
            let (Ok(start), Ok(len)) = (usize::try_from(start), usize::try_from(len)) else {
                return Err(format!("Substring: start ({start}) and length ({len}) must not be negative"));
            };
            let sub = start.checked_add(len).and_then(|end| s.get(start..end));
            Val::Str(
                sub.ok_or_else(|| {
                    format!("Substring: {start}..{} is outside the {} bytes of the string", start + len, s.len())
                })?
                .to_string(),
            )
        }
        ConvertCase => {
            let s = text(&a[0], "target")?;
            Val::Str(match text(&a[1], "toCase")?.as_str() {
                "lower" => s.to_lowercase(),
                "upper" => s.to_uppercase(),
                "snake" => snake(&s),
                "camel" => camel(&s),
                other => return Err(format!("ConvertCase: toCase {other:?} is not one of lower, upper, snake, camel")),
            })
        }
        ToLowerCase => Val::Str(text(&a[0], "target")?.to_lowercase()),
        ToUpperCase => Val::Str(text(&a[0], "target")?.to_uppercase()),
        #[allow(clippy::cast_possible_truncation)]
        Int => match &a[0] {
            Val::Int(i) => Val::Int(*i),
            Val::Float(f) => Val::Int(f.trunc() as i64),
            Val::Bool(b) => Val::Int(i64::from(*b)),
            Val::Str(s) => s.trim().parse::<i64>().map_or(Val::Nil, Val::Int),
            _ => Val::Nil,
        },
        #[allow(clippy::cast_precision_loss)]
        Double => match &a[0] {
            Val::Float(f) => Val::Float(*f),
            Val::Int(i) => Val::Float(*i as f64),
            Val::Bool(b) => Val::Float(if *b { 1.0 } else { 0.0 }),
            Val::Str(s) => s.trim().parse::<f64>().map_or(Val::Nil, Val::Float),
            _ => Val::Nil,
        },
        String => match &a[0] {
            Val::Nil => Val::Nil,
            v => Val::Str(v.to_text()),
        },
        Len => Val::Int(
            i64::try_from(match &a[0] {
                // Bytes, as Go's len().
                Val::Str(s) => s.len(),
                Val::Bytes(b) => b.len(),
                Val::Map(m) => m.len(),
                Val::List(l) => l.len(),
                other => return Err(format!("Len: a {} has no length", other.kind())),
            })
            .unwrap_or(i64::MAX),
        ),
        Sha256 => Val::Str(hex(&sha2::Sha256::digest(text(&a[0], "value")?.as_bytes()))),
        Sha1 => Val::Str(hex(&sha1_digest(text(&a[0], "value")?.as_bytes()))),
        ParseJson => {
            let s = text(&a[0], "target")?;
            let j: serde_json::Value = serde_json::from_str(&s).map_err(|e| format!("ParseJSON: {e}"))?;
            match value::from_json(&j).value {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::KvlistValue(m)) => Val::Map(m.values),
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::ArrayValue(l)) => Val::List(l.values),
                _ => return Err("ParseJSON: the text is not a JSON object or array".into()),
            }
        }
        TraceId => match &a[0] {
            Val::Bytes(b) if b.len() == 16 => Val::Bytes(b.clone()),
            other => return Err(format!("TraceID takes 16 bytes, got {}", describe(other))),
        },
        SpanId => match &a[0] {
            Val::Bytes(b) if b.len() == 8 => Val::Bytes(b.clone()),
            other => return Err(format!("SpanID takes 8 bytes, got {}", describe(other))),
        },
        Hex => Val::Str(match &a[0] {
            Val::Bytes(b) => hex(b),
            Val::Str(s) => hex(s.as_bytes()),
            Val::Int(i) => hex(&i.to_be_bytes()),
            Val::Float(f) => hex(&f.to_bits().to_be_bytes()),
            Val::Bool(b) => hex(&[u8::from(*b)]),
            other => return Err(format!("Hex: cannot encode a {}", other.kind())),
        }),
        Now => Val::Int(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        ),
        UnixNano => Val::Int(int(&a[0], "time")?),
    })
}

fn describe(v: &Val) -> String {
    match v {
        Val::Bytes(b) => format!("{} bytes", b.len()),
        other => format!("a {}", other.kind()),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-1 (OTTL's `SHA1`), from `sha2`'s sibling algorithm family: written out here because it is
/// short and the `sha1` crate would be a dependency for one converter.
fn sha1_digest(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in chunk.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (i, x) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn camel(s: &str) -> String {
    let mut out = String::new();
    let mut up = true;
    for c in s.chars() {
        if c == '_' || c == '-' || c == ' ' || c == '.' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `s` matches a glob (`*` any run, `?` one character), whole.
fn glob(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Runs `f` on the map `target` names: in place when it is an attribute map itself (no copy per item),
/// otherwise (a map inside a value) on a copy written back. Where there is no map, nothing happens, or
/// with `create` `f` starts from an empty one.
fn with_map(
    item: &mut Item,
    target: &Bound,
    create: bool,
    f: impl FnOnce(&mut Vec<KeyValue>) -> Result<(), String>,
) -> Result<(), String> {
    if target.keys.is_empty() && item.map_mut(target.field).is_some() {
        return f(item.map_mut(target.field).expect("checked above"));
    }
    let mut m = match item.get(target) {
        Val::Map(m) => m,
        Val::Nil if create => Vec::new(),
        Val::Nil => return Ok(()),
        other => return Err(format!("the target must be a map, got {}", other.kind())),
    };
    f(&mut m)?;
    item.set(target, Val::Map(m))
}

/// Runs an editor on `item`'s `target`.
pub fn edit(e: Editor, item: &mut Item, target: Option<&Bound>, a: Args) -> Result<(), String> {
    let target = target.expect("every editor has a target");
    match e {
        Editor::Set => item.set(target, a.into_iter().next().unwrap_or(Val::Nil)),
        Editor::DeleteKey
        | Editor::DeleteMatchingKeys
        | Editor::KeepKeys
        | Editor::KeepMatchingKeys
        | Editor::Limit => {
            with_map(item, target, false, |m| {
                match e {
                    Editor::DeleteKey => {
                        value::remove(m, text_ref(&a[0], "key")?);
                    }
                    Editor::DeleteMatchingKeys => {
                        let re = regex(&a[0], "pattern")?;
                        m.retain(|kv| !re.is_match(&kv.key));
                    }
                    Editor::KeepKeys => {
                        let Val::List(keys) = &a[0] else { return Err("keep_keys: keys must be a list".into()) };
                        let keys: Vec<String> = keys.iter().map(|k| Val::from_any(Some(k)).to_text()).collect();
                        m.retain(|kv| keys.contains(&kv.key));
                    }
                    Editor::KeepMatchingKeys => {
                        let re = regex(&a[0], "pattern")?;
                        m.retain(|kv| re.is_match(&kv.key));
                    }
                    _ => {
                        let limit = usize::try_from(int(&a[0], "limit")?).map_err(|_| "limit: must not be negative")?;
                        let priority: Vec<String> = match &a[1] {
                            Val::List(l) => l.iter().map(|k| Val::from_any(Some(k)).to_text()).collect(),
                            _ => Vec::new(),
                        };
                        if m.len() > limit {
                            // Priority keys first, then the others in order, up to the limit.
                            let (mut keep, rest): (Vec<_>, Vec<_>) =
                                std::mem::take(m).into_iter().partition(|kv| priority.contains(&kv.key));
                            keep.truncate(limit);
                            let room = limit - keep.len();
                            keep.extend(rest.into_iter().take(room));
                            *m = keep;
                        }
                    }
                }
                Ok(())
            })
        }
        Editor::TruncateAll => with_map(item, target, false, |m| {
            let limit = usize::try_from(int(&a[0], "limit")?).map_err(|_| "limit: must not be negative")?;
            for kv in m.iter_mut() {
                if let Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)),
                }) = &mut kv.value
                    && s.len() > limit
                {
                    let mut end = limit;
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s.truncate(end);
                }
            }
            Ok(())
        }),
        Editor::ReplacePattern => {
            let Val::Str(s) = item.get(target) else { return Ok(()) };
            let out = replace(&regex(&a[0], "regex")?, &s, &text(&a[1], "replacement")?);
            item.set(target, Val::Str(out))
        }
        Editor::ReplaceMatch => {
            let Val::Str(s) = item.get(target) else { return Ok(()) };
            if glob(&text(&a[0], "pattern")?, &s) {
                item.set(target, Val::Str(text(&a[1], "replacement")?))
            } else {
                Ok(())
            }
        }
        Editor::ReplaceAllPatterns | Editor::ReplaceAllMatches => with_map(item, target, false, |m| {
            if e == Editor::ReplaceAllMatches {
                let (pattern, with) = (text(&a[0], "pattern")?, text(&a[1], "replacement")?);
                for kv in m.iter_mut() {
                    if let Some(Val::Str(s)) = kv.value.as_ref().map(|v| Val::from_any(Some(v)))
                        && glob(&pattern, &s)
                    {
                        kv.value = Some(value::string(with.clone()));
                    }
                }
            } else {
                let mode = text(&a[0], "mode")?;
                let (re, with) = (regex(&a[1], "regex")?, text(&a[2], "replacement")?);
                for kv in m.iter_mut() {
                    match mode.as_str() {
                        "key" => kv.key = replace(&re, &kv.key, &with),
                        "value" => {
                            if let Some(Val::Str(s)) = kv.value.as_ref().map(|v| Val::from_any(Some(v))) {
                                kv.value = Some(value::string(replace(&re, &s, &with)));
                            }
                        }
                        other => return Err(format!("replace_all_patterns: mode {other:?} is not key or value")),
                    }
                }
            }
            Ok(())
        }),
        Editor::MergeMaps => {
            let Val::Map(source) = &a[0] else { return Ok(()) };
            with_map(item, target, true, |m| {
                let strategy = text(&a[1], "strategy")?;
                for kv in source {
                    let present = value::get(m, &kv.key).is_some();
                    let write = match strategy.as_str() {
                        "insert" => !present,
                        "update" => present,
                        "upsert" => true,
                        other => return Err(format!("merge_maps: strategy {other:?} is not insert, update or upsert")),
                    };
                    if write {
                        value::put(m, &kv.key, kv.value.clone().unwrap_or_default());
                    }
                }
                Ok(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_and_severities() {
        assert_eq!(enum_value("SPAN_KIND_CLIENT"), Ok(3));
        assert_eq!(enum_value("SEVERITY_NUMBER_WARN2"), Ok(14));
        assert_eq!(enum_value("SEVERITY_NUMBER_INFO"), Ok(9));
        assert!(enum_value("SPAN_KIND_WEIRD").is_err());
    }

    #[test]
    fn converters_as_the_collector() {
        let s = |x: &str| Val::Str(x.into());
        assert_eq!(
            call(Converter::Concat, vec![Val::List(vec![value::string("a"), value::string("b")]), s("-")]),
            Ok(s("a-b"))
        );
        assert_eq!(call(Converter::Substring, vec![s("abcdef"), Val::Int(1), Val::Int(3)]), Ok(s("bcd")));
        assert!(call(Converter::Substring, vec![s("ab"), Val::Int(1), Val::Int(3)]).is_err());
        assert_eq!(call(Converter::ConvertCase, vec![s("HelloWorld"), s("snake")]), Ok(s("hello_world")));
        assert_eq!(call(Converter::Int, vec![s("42")]), Ok(Val::Int(42)));
        assert_eq!(call(Converter::Int, vec![s("x")]), Ok(Val::Nil));
        assert_eq!(call(Converter::Len, vec![s("héllo")]), Ok(Val::Int(6)), "bytes, as in Go");
        assert_eq!(
            call(Converter::Sha1, vec![s("abc")]),
            Ok(s("a9993e364706816aba3e25717850c26c9cd0d89d")),
            "the FIPS 180 test vector"
        );
        assert_eq!(
            call(Converter::Sha256, vec![s("abc")]),
            Ok(s("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"))
        );
        assert_eq!(call(Converter::IsMatch, vec![s("GET /health"), s("^GET")]), Ok(Val::Bool(true)));
        assert_eq!(call(Converter::IsMatch, vec![Val::Nil, s(".*")]), Ok(Val::Bool(false)));
        let Ok(Val::Map(m)) = call(Converter::ParseJson, vec![s(r#"{"a": {"b": 1}}"#)]) else { panic!() };
        assert_eq!(value::as_string(value::get(&m, "a").unwrap()), r#"{"b":1}"#);
        assert!(call(Converter::TraceId, vec![Val::Bytes(vec![1; 15])]).is_err());
    }

    /// Each map editor gives the same map whether it edits an attribute map in place or a map held in
    /// a value (copied out and written back).
    #[test]
    fn map_editors_in_place_and_on_a_nested_map_agree() {
        use super::super::paths::Context;
        use super::super::program::statement;
        use super::super::walk::visit;
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValueList, any_value};
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        use openwit_core::Payload;
        let base: Vec<KeyValue> = [("a", "x"), ("b", "yy"), ("drop.c", "z"), ("d", "yyy")]
            .iter()
            .map(|(k, v)| KeyValue { key: k.to_string(), value: Some(value::string(*v)), ..Default::default() })
            .collect();
        let logs = |attributes: Vec<KeyValue>| {
            Payload::Logs(ExportLogsServiceRequest {
                resource_logs: vec![ResourceLogs {
                    scope_logs: vec![ScopeLogs {
                        log_records: vec![LogRecord { attributes, ..Default::default() }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            })
        };
        let attributes = |p: &Payload| match p {
            Payload::Logs(r) => r.resource_logs[0].scope_logs[0].log_records[0].attributes.clone(),
            _ => unreachable!(),
        };
        let nested = vec![KeyValue {
            key: "m".into(),
            value: Some(AnyValue { value: Some(any_value::Value::KvlistValue(KeyValueList { values: base.clone() })) }),
            ..Default::default()
        }];
        for template in [
            r#"delete_key(T, "a")"#,
            r#"delete_matching_keys(T, "^drop[.]")"#,
            r#"keep_keys(T, ["a", "b"])"#,
            r#"keep_matching_keys(T, "^[ab]$")"#,
            r#"limit(T, 2, ["d"])"#,
            r#"truncate_all(T, 1)"#,
            r#"replace_all_patterns(T, "value", "y+", "Y")"#,
            r#"replace_all_patterns(T, "key", "^drop", "kept")"#,
            r#"replace_all_matches(T, "y*", "Z")"#,
            r#"merge_maps(T, {"n": "1", "a": "q"}, "insert")"#,
            r#"merge_maps(T, {"n": "1", "a": "q"}, "upsert")"#,
        ] {
            let run = |target: &str, attrs: Vec<KeyValue>| {
                let s = statement(&template.replace('T', target), Context::Log).unwrap();
                let mut p = logs(attrs);
                visit(&mut p, Context::Log, |item| {
                    s.run(item).unwrap();
                    false
                });
                attributes(&p)
            };
            let in_place = run("attributes", base.clone());
            let copied = run(r#"attributes["m"]"#, nested.clone());
            let Some(any_value::Value::KvlistValue(m)) = copied[0].value.as_ref().and_then(|v| v.value.as_ref()) else {
                panic!("{template}: {copied:?}")
            };
            assert_eq!(in_place, m.values, "{template}");
            assert_ne!(in_place, base, "{template} changed nothing");
        }
    }

    #[test]
    fn globs_match_whole_strings() {
        assert!(glob("/api/*", "/api/v1/users"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("/api/*", "/web/api/x"));
        assert!(glob("*", ""));
    }

    #[test]
    fn regex_params_are_known() {
        assert!(is_regex_param("IsMatch", "pattern"));
        assert!(is_regex_param("delete_matching_keys", "pattern"));
        assert!(is_regex_param("replace_pattern", "regex"));
        assert!(!is_regex_param("replace_match", "pattern"));
        assert!(!is_regex_param("replace_all_matches", "pattern"));
    }

    #[test]
    fn unknown_functions_are_named() {
        assert!(editor("frobnicate").unwrap_err().contains("unknown editor frobnicate"));
        assert!(editor("Concat").unwrap_err().contains("is a converter"));
        assert!(converter("Frob").unwrap_err().contains("unknown converter Frob"));
    }
}
