//! `include` / `exclude`: which items a processor acts on, with the Collector's match properties
//! (`internal/filter/filterconfig`). Every property given must match (an item matches a list when it
//! matches one of its entries); `strict` compares exactly, `regexp` searches anywhere in the text (as
//! Go's `regexp.MatchString`, so anchor with `^…$` for a whole match). An item is processed when it
//! matches `include` (if given) and does not match `exclude` (if given).

use crate::value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use openwit_core::{ConfigIssue, Signal};
use regex::Regex;
use serde::Deserialize;

/// `include:` or `exclude:`, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchProperties {
    /// `strict` or `regexp`.
    pub match_type: String,
    /// The Collector's regexp cache settings: accepted; OpenWit compiles each pattern once.
    pub regexp: Option<RegexpCache>,
    pub services: Vec<String>,
    pub span_names: Vec<String>,
    pub span_kinds: Vec<String>,
    pub log_bodies: Vec<String>,
    pub log_severity_texts: Vec<String>,
    pub log_severity_number: Option<SeverityMatch>,
    pub metric_names: Vec<String>,
    pub attributes: Vec<AttributeMatch>,
    pub resources: Vec<AttributeMatch>,
    pub libraries: Vec<LibraryMatch>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegexpCache {
    pub cacheenabled: bool,
    pub cachemaxnumentries: usize,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttributeMatch {
    pub key: String,
    /// Absent: the key being there is enough.
    pub value: serde_yaml_ng::Value,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LibraryMatch {
    pub name: String,
    pub version: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityMatch {
    /// A severity number (1–24) or its name (`INFO`, `warn2`, …).
    pub min: serde_yaml_ng::Value,
    #[serde(default)]
    pub match_undefined: bool,
}

/// `include` and `exclude` compiled for one signal.
#[derive(Clone, Debug, Default)]
pub struct ItemFilter {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

/// What one item offers to be matched.
pub struct Item<'a> {
    pub resource: Option<&'a Resource>,
    pub scope: Option<&'a InstrumentationScope>,
    /// The item's own attributes (a span's, a log record's; a metric has none of its own here).
    pub attributes: &'a [KeyValue],
    pub kind: ItemKind<'a>,
}

pub enum ItemKind<'a> {
    Span { name: &'a str, kind: i32 },
    Log { body: Option<&'a AnyValue>, severity_text: &'a str, severity_number: i32 },
    Metric { name: &'a str },
}

impl ItemFilter {
    /// Compiles `include`/`exclude` for `signal`, refusing properties that do not apply to it (as the
    /// Collector does when it builds the processor for that signal).
    pub fn compile(
        include: Option<&MatchProperties>,
        exclude: Option<&MatchProperties>,
        signal: Signal,
    ) -> Result<ItemFilter, ConfigIssue> {
        Ok(ItemFilter {
            include: include.map(|m| Matcher::compile(m, signal, "include")).transpose()?,
            exclude: exclude.map(|m| Matcher::compile(m, signal, "exclude")).transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    /// Whether the processor acts on this item.
    pub fn selects(&self, item: &Item) -> bool {
        self.include.as_ref().is_none_or(|m| m.matches(item)) && !self.exclude.as_ref().is_some_and(|m| m.matches(item))
    }
}

#[derive(Clone, Debug)]
struct Matcher {
    services: Option<Patterns>,
    span_names: Option<Patterns>,
    span_kinds: Option<Patterns>,
    log_bodies: Option<Patterns>,
    severity_texts: Option<Patterns>,
    severity: Option<(i32, bool)>,
    metric_names: Option<Patterns>,
    attributes: Vec<(String, Option<ValueMatch>)>,
    resources: Vec<(String, Option<ValueMatch>)>,
    libraries: Vec<(Patterns, Option<Patterns>)>,
}

#[derive(Clone, Debug)]
enum Patterns {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

#[derive(Clone, Debug)]
enum ValueMatch {
    Exact(AnyValue),
    Regexp(Regex),
}

const SPAN_KINDS: [&str; 5] =
    ["SPAN_KIND_CLIENT", "SPAN_KIND_CONSUMER", "SPAN_KIND_INTERNAL", "SPAN_KIND_PRODUCER", "SPAN_KIND_SERVER"];

impl Matcher {
    fn compile(m: &MatchProperties, signal: Signal, section: &str) -> Result<Matcher, ConfigIssue> {
        let at = |field: &str| format!("{section}.{field}");
        let refuse = |field: &str, given: bool, what: &str| {
            if given { Err(ConfigIssue::new(at(field), format!("{field} does not apply to {what}"))) } else { Ok(()) }
        };
        let log_only = [
            ("log_bodies", !m.log_bodies.is_empty()),
            ("log_severity_texts", !m.log_severity_texts.is_empty()),
            ("log_severity_number", m.log_severity_number.is_some()),
        ];
        let span_only = [
            ("services", !m.services.is_empty()),
            ("span_names", !m.span_names.is_empty()),
            ("span_kinds", !m.span_kinds.is_empty()),
        ];
        match signal {
            Signal::Traces => {
                for (f, given) in log_only {
                    refuse(f, given, "spans")?;
                }
                refuse("metric_names", !m.metric_names.is_empty(), "spans")?;
            }
            Signal::Logs => {
                for (f, given) in span_only {
                    refuse(f, given, "log records")?;
                }
                refuse("metric_names", !m.metric_names.is_empty(), "log records")?;
            }
            Signal::Metrics => {
                for (f, given) in span_only.into_iter().chain(log_only) {
                    refuse(f, given, "metrics (they match by metric_names and resources)")?;
                }
                refuse("attributes", !m.attributes.is_empty(), "metrics (they match by metric_names and resources)")?;
                refuse("libraries", !m.libraries.is_empty(), "metrics (they match by metric_names and resources)")?;
            }
        }
        let nothing = m.services.is_empty()
            && m.span_names.is_empty()
            && m.span_kinds.is_empty()
            && m.log_bodies.is_empty()
            && m.log_severity_texts.is_empty()
            && m.log_severity_number.is_none()
            && m.metric_names.is_empty()
            && m.attributes.is_empty()
            && m.resources.is_empty()
            && m.libraries.is_empty();
        if nothing {
            return Err(ConfigIssue::new(
                section,
                "names nothing to match: give at least one property (attributes, resources, libraries, …)",
            ));
        }
        let regexp = match m.match_type.as_str() {
            "strict" => false,
            "regexp" => true,
            "" => false,
            other => {
                return Err(ConfigIssue::new(at("match_type"), format!("{other:?} is not one of strict, regexp")));
            }
        };
        // Lists of names need a match type; a list of attribute keys alone does not (as in the Collector).
        let patterns = |field: &str, list: &[String]| -> Result<Option<Patterns>, ConfigIssue> {
            if list.is_empty() {
                return Ok(None);
            }
            if m.match_type.is_empty() {
                return Err(ConfigIssue::new(at("match_type"), format!("{field} needs match_type: strict or regexp")));
            }
            Patterns::compile(list, regexp).map(Some).map_err(|e| ConfigIssue::new(at(field), e))
        };
        if !regexp
            && !m.match_type.is_empty()
            && let Some(bad) = m.span_kinds.iter().find(|k| !SPAN_KINDS.contains(&k.as_str()))
        {
            return Err(ConfigIssue::new(
                at("span_kinds"),
                format!("{bad:?} is not a span kind; with match_type strict use one of {}", SPAN_KINDS.join(", ")),
            ));
        }
        let attrs = |field: &str, list: &[AttributeMatch]| -> Result<Vec<(String, Option<ValueMatch>)>, ConfigIssue> {
            list.iter()
                .enumerate()
                .map(|(i, a)| {
                    let here = at(&format!("{field}[{i}]"));
                    if a.key.is_empty() {
                        return Err(ConfigIssue::new(format!("{here}.key"), "an attribute match needs a key"));
                    }
                    let v = value::from_yaml(&a.value).map_err(|e| ConfigIssue::new(format!("{here}.value"), e))?;
                    let v = match v {
                        None => None,
                        Some(v) if regexp => match &v.value {
                            Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(p)) => {
                                Some(ValueMatch::Regexp(Regex::new(p).map_err(|e| {
                                    ConfigIssue::new(format!("{here}.value"), format!("invalid pattern: {e}"))
                                })?))
                            }
                            _ => {
                                return Err(ConfigIssue::new(
                                    format!("{here}.value"),
                                    format!(
                                        "match_type regexp only matches text, but the value is {}",
                                        value::type_name(&v)
                                    ),
                                ));
                            }
                        },
                        Some(_) if m.match_type.is_empty() => {
                            return Err(ConfigIssue::new(
                                at("match_type"),
                                "matching attribute values needs match_type: strict or regexp",
                            ));
                        }
                        Some(v) => Some(ValueMatch::Exact(v)),
                    };
                    Ok((a.key.clone(), v))
                })
                .collect()
        };
        let libraries = m
            .libraries
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let name =
                    patterns(&format!("libraries[{i}].name"), std::slice::from_ref(&l.name))?.expect("one entry");
                let version = match &l.version {
                    Some(v) => {
                        Some(patterns(&format!("libraries[{i}].version"), std::slice::from_ref(v))?.expect("one entry"))
                    }
                    None => None,
                };
                Ok((name, version))
            })
            .collect::<Result<_, ConfigIssue>>()?;
        let severity = match &m.log_severity_number {
            Some(s) => Some((
                severity_number(&s.min).map_err(|e| ConfigIssue::new(at("log_severity_number.min"), e))?,
                s.match_undefined,
            )),
            None => None,
        };
        Ok(Matcher {
            services: patterns("services", &m.services)?,
            span_names: patterns("span_names", &m.span_names)?,
            span_kinds: patterns("span_kinds", &m.span_kinds)?,
            log_bodies: patterns("log_bodies", &m.log_bodies)?,
            severity_texts: patterns("log_severity_texts", &m.log_severity_texts)?,
            severity,
            metric_names: patterns("metric_names", &m.metric_names)?,
            attributes: attrs("attributes", &m.attributes)?,
            resources: attrs("resources", &m.resources)?,
            libraries,
        })
    }

    fn matches(&self, item: &Item) -> bool {
        let empty_resource = Resource::default();
        let resource = item.resource.unwrap_or(&empty_resource);
        if let Some(p) = &self.services {
            let service = value::get(&resource.attributes, "service.name")
                .map_or_else(|| "<nil-service-name>".to_string(), value::as_string);
            if !p.matches(&service) {
                return false;
            }
        }
        match &item.kind {
            ItemKind::Span { name, kind } => {
                if self.span_names.as_ref().is_some_and(|p| !p.matches(name)) {
                    return false;
                }
                if self.span_kinds.as_ref().is_some_and(|p| !p.matches(span_kind_name(*kind))) {
                    return false;
                }
            }
            ItemKind::Log { body, severity_text, severity_number } => {
                if let Some(p) = &self.log_bodies
                    && !body.is_some_and(|b| p.matches(&value::as_string(b)))
                {
                    return false;
                }
                if self.severity_texts.as_ref().is_some_and(|p| !p.matches(severity_text)) {
                    return false;
                }
                if let Some((min, undefined)) = self.severity {
                    let ok = if *severity_number == 0 { undefined } else { *severity_number >= min };
                    if !ok {
                        return false;
                    }
                }
            }
            ItemKind::Metric { name } => {
                if self.metric_names.as_ref().is_some_and(|p| !p.matches(name)) {
                    return false;
                }
            }
        }
        let empty_scope = InstrumentationScope::default();
        let scope = item.scope.unwrap_or(&empty_scope);
        for (name, version) in &self.libraries {
            if !name.matches(&scope.name) || version.as_ref().is_some_and(|v| !v.matches(&scope.version)) {
                return false;
            }
        }
        if !self.resources.is_empty() && !attributes_match(&self.resources, &resource.attributes) {
            return false;
        }
        attributes_match(&self.attributes, item.attributes)
    }
}

/// Every listed attribute is there (and has the value, when one is given).
fn attributes_match(wanted: &[(String, Option<ValueMatch>)], attrs: &[KeyValue]) -> bool {
    wanted.iter().all(|(key, want)| {
        let Some(got) = value::get(attrs, key) else { return false };
        match want {
            None => true,
            Some(ValueMatch::Exact(v)) => v == got,
            Some(ValueMatch::Regexp(r)) => {
                matches!(
                    &got.value,
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(_)
                            | opentelemetry_proto::tonic::common::v1::any_value::Value::BoolValue(_)
                            | opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(_)
                            | opentelemetry_proto::tonic::common::v1::any_value::Value::DoubleValue(_)
                    )
                ) && r.is_match(&value::as_string(got))
            }
        }
    })
}

impl Patterns {
    fn compile(list: &[String], regexp: bool) -> Result<Patterns, String> {
        if !regexp {
            return Ok(Patterns::Strict(list.to_vec()));
        }
        list.iter()
            .map(|p| Regex::new(p).map_err(|e| format!("invalid pattern {p:?}: {e}")))
            .collect::<Result<_, _>>()
            .map(Patterns::Regexp)
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Patterns::Strict(list) => list.iter().any(|s| s == text),
            Patterns::Regexp(list) => list.iter().any(|r| r.is_match(text)),
        }
    }
}

/// A span kind as the Collector names it in `span_kinds`.
fn span_kind_name(kind: i32) -> &'static str {
    match kind {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

/// A severity number written as a number or as its name (`INFO`, `Warn2`, case-insensitive).
fn severity_number(v: &serde_yaml_ng::Value) -> Result<i32, String> {
    const NAMES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    if let Some(n) = v.as_i64() {
        return i32::try_from(n)
            .ok()
            .filter(|n| (0..=24).contains(n))
            .ok_or_else(|| format!("{n} is not a severity number (0–24)"));
    }
    let text = v.as_str().ok_or("a severity number (1–24) or name (INFO, WARN2, …)")?.to_ascii_uppercase();
    let (name, step) = match text.char_indices().last() {
        Some((i, c @ '2'..='4')) => (&text[..i], i32::from(c as u8 - b'1')),
        _ => (text.as_str(), 0),
    };
    let base = NAMES.iter().position(|n| *n == name).ok_or_else(|| {
        format!("{text:?} is not a severity; use TRACE, DEBUG, INFO, WARN, ERROR or FATAL (with 2–4 after it)")
    })?;
    Ok(i32::try_from(base).expect("six names") * 4 + 1 + step)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn props(yaml: &str) -> MatchProperties {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn resource(service: &str) -> Resource {
        Resource { attributes: vec![kv("service.name", Value::StringValue(service.into()))], ..Default::default() }
    }

    fn span<'a>(r: &'a Resource, name: &'a str, attrs: &'a [KeyValue]) -> Item<'a> {
        Item { resource: Some(r), scope: None, attributes: attrs, kind: ItemKind::Span { name, kind: 2 } }
    }

    #[test]
    fn include_then_exclude_over_spans() {
        let f = ItemFilter::compile(
            Some(&props("{match_type: regexp, services: ['^api'], span_names: ['GET']}")),
            Some(&props("{match_type: strict, attributes: [{key: http.route, value: /health}]}")),
            Signal::Traces,
        )
        .unwrap();
        let (api, db) = (resource("api-gw"), resource("db"));
        let health = [kv("http.route", Value::StringValue("/health".into()))];
        let other = [kv("http.route", Value::StringValue("/users".into()))];
        assert!(f.selects(&span(&api, "GET /users", &other)));
        assert!(!f.selects(&span(&api, "GET /health", &health)), "excluded");
        assert!(!f.selects(&span(&db, "GET /users", &other)), "not included: service");
        assert!(!f.selects(&span(&api, "POST /users", &other)), "not included: name");
    }

    #[test]
    fn strict_values_compare_type_and_value_and_keys_alone_need_no_match_type() {
        let f = ItemFilter::compile(Some(&props("{attributes: [{key: sampled}]}")), None, Signal::Traces).unwrap();
        let r = resource("a");
        assert!(f.selects(&span(&r, "x", &[kv("sampled", Value::BoolValue(false))])));
        assert!(!f.selects(&span(&r, "x", &[])));
        let f = ItemFilter::compile(
            Some(&props("{match_type: strict, attributes: [{key: code, value: 200}]}")),
            None,
            Signal::Traces,
        )
        .unwrap();
        assert!(f.selects(&span(&r, "x", &[kv("code", Value::IntValue(200))])));
        assert!(!f.selects(&span(&r, "x", &[kv("code", Value::StringValue("200".into()))])), "a string is not an int");
        let f = ItemFilter::compile(
            Some(&props("{match_type: regexp, attributes: [{key: code, value: '^2'}]}")),
            None,
            Signal::Traces,
        )
        .unwrap();
        assert!(f.selects(&span(&r, "x", &[kv("code", Value::IntValue(204))])), "regexp matches a number's text");
    }

    #[test]
    fn logs_by_body_and_severity() {
        let f = ItemFilter::compile(
            Some(&props("{match_type: regexp, log_bodies: ['timeout'], log_severity_number: {min: WARN, match_undefined: true}}")),
            None,
            Signal::Logs,
        )
        .unwrap();
        let body = AnyValue { value: Some(Value::StringValue("read timeout".into())) };
        let log = |sev| Item {
            resource: None,
            scope: None,
            attributes: &[],
            kind: ItemKind::Log { body: Some(&body), severity_text: "", severity_number: sev },
        };
        assert!(f.selects(&log(13)));
        assert!(f.selects(&log(21)));
        assert!(!f.selects(&log(9)), "INFO is under WARN");
        assert!(f.selects(&log(0)), "undefined matches when match_undefined");
    }

    #[test]
    fn severity_names_are_the_collectors() {
        let n = |s: &str| severity_number(&serde_yaml_ng::Value::String(s.into()));
        assert_eq!(n("TRACE"), Ok(1));
        assert_eq!(n("info"), Ok(9));
        assert_eq!(n("Warn2"), Ok(14));
        assert_eq!(n("FATAL4"), Ok(24));
        assert!(n("LOUD").is_err());
    }

    #[test]
    fn properties_of_another_signal_are_refused_with_their_path() {
        for (yaml, signal, path) in [
            ("{match_type: strict, log_bodies: [x]}", Signal::Traces, "include.log_bodies"),
            ("{match_type: strict, services: [x]}", Signal::Logs, "include.services"),
            ("{match_type: strict, span_names: [x]}", Signal::Metrics, "include.span_names"),
            ("{match_type: strict, span_kinds: [server]}", Signal::Traces, "include.span_kinds"),
            ("{services: [x]}", Signal::Traces, "include.match_type"),
            ("{match_type: glob, services: [x]}", Signal::Traces, "include.match_type"),
            ("{match_type: regexp, span_names: ['(']}", Signal::Traces, "include.span_names"),
            ("{match_type: strict}", Signal::Traces, "include"),
        ] {
            let e = ItemFilter::compile(Some(&props(yaml)), None, signal).unwrap_err();
            assert_eq!(e.path, path, "{yaml}: {e:?}");
        }
    }
}
