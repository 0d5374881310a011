//! Realistic OTLP data, deterministic from a seed.
//!
//! The shape follows what a microservice fleet emits: a dozen services with their own routes, trace
//! trees of client/server pairs across services plus database calls, durations from a log-normal
//! (long-tailed) distribution, popularity that follows Zipf's law (a few hot routes and users, a long
//! tail), errors with exception events at a low rate, log bodies drawn from many templates with
//! variable parts, and metrics of all five kinds. Identical data compresses unrealistically well and
//! would flatter every storage number, so variety is the point.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{self as pm, metric::Data};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};
use std::collections::BTreeMap;

/// 2026-01-01T00:00:00Z: generated time starts here so that the same seed gives the same bytes.
const EPOCH_NS: u64 = 1_767_225_600_000_000_000;

struct Route {
    method: &'static str,
    template: &'static str,
}

struct Service {
    name: &'static str,
    version: &'static str,
    language: &'static str,
    routes: Vec<Route>,
    /// Services this one calls.
    calls: &'static [&'static str],
    db: Option<(&'static str, &'static str)>,
    instances: Vec<(String, String)>,
}

fn r(method: &'static str, template: &'static str) -> Route {
    Route { method, template }
}

fn fleet() -> Vec<Service> {
    let s = |name, version, language, routes, calls, db| Service {
        name,
        version,
        language,
        routes,
        calls,
        db,
        instances: Vec::new(),
    };
    let mut v = vec![
        s(
            "frontend",
            "2.4.1",
            "nodejs",
            vec![
                r("GET", "/"),
                r("GET", "/product/{id}"),
                r("POST", "/cart"),
                r("GET", "/cart"),
                r("POST", "/checkout"),
                r("GET", "/api/recommendations"),
                r("GET", "/static/{asset}"),
            ],
            &["product-catalog", "cart", "checkout", "recommendation", "ad", "currency"][..],
            None,
        ),
        s(
            "checkout",
            "1.9.0",
            "go",
            vec![r("POST", "/checkout/place-order"), r("GET", "/checkout/{order_id}")],
            &["cart", "payment", "shipping", "email", "currency", "fraud-detection"][..],
            Some(("postgresql", "orders")),
        ),
        s(
            "cart",
            "3.1.2",
            "dotnet",
            vec![r("GET", "/cart/{user_id}"), r("POST", "/cart/{user_id}/items"), r("DELETE", "/cart/{user_id}")],
            &[][..],
            Some(("redis", "0")),
        ),
        s(
            "payment",
            "1.2.7",
            "nodejs",
            vec![r("POST", "/charge"), r("POST", "/refund/{charge_id}")],
            &["fraud-detection"][..],
            Some(("postgresql", "payments")),
        ),
        s("shipping", "0.9.3", "rust", vec![r("POST", "/quote"), r("POST", "/ship-order")], &["quote"][..], None),
        s("currency", "1.0.4", "cpp", vec![r("GET", "/convert"), r("GET", "/currencies")], &[][..], None),
        s("email", "1.1.0", "ruby", vec![r("POST", "/send-order-confirmation")], &[][..], None),
        s(
            "recommendation",
            "2.0.0",
            "python",
            vec![r("GET", "/recommendations/{user_id}")],
            &["product-catalog"][..],
            Some(("redis", "1")),
        ),
        s("ad", "1.3.3", "java", vec![r("GET", "/ads"), r("GET", "/ads/{category}")], &[][..], None),
        s(
            "product-catalog",
            "4.2.0",
            "go",
            vec![r("GET", "/products"), r("GET", "/products/{id}"), r("GET", "/products/search")],
            &[][..],
            Some(("postgresql", "catalog")),
        ),
        s("quote", "0.5.1", "php", vec![r("POST", "/getquote")], &[][..], None),
        s("fraud-detection", "1.0.0", "kotlin", vec![r("POST", "/score")], &[][..], Some(("mongodb", "risk"))),
    ];
    for (i, svc) in v.iter_mut().enumerate() {
        let n = 2 + i % 4;
        svc.instances = (0..n)
            .map(|k| {
                (
                    format!("{}-{:x}{:04x}-{k}", svc.name, 0x5a7 + i, 0x1f3 * (k + 1)),
                    format!("node-{}", (i * 7 + k * 3) % 9),
                )
            })
            .collect();
    }
    v
}

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
    "curl/8.5.0",
];

const LOG_TEMPLATES: &[(&str, i32)] = &[
    ("User {user} logged in from {ip}", 9),
    ("{method} {path} completed in {ms}ms with status {status}", 9),
    ("Cache miss for key {key}; loading from database", 5),
    ("Cache hit ratio {ratio} over the last {n} requests", 9),
    ("Connection to {host}:{port} failed: {err}; retrying in {ms}ms", 13),
    ("Order {order} placed by user {user}: {n} items, total {amount} {currency}", 9),
    ("Payment {charge} authorised for {amount} {currency}", 9),
    ("Payment {charge} declined: {reason}", 13),
    ("Slow query took {ms}ms: {sql}", 13),
    ("Scheduled job {job} finished in {ms}ms, processed {n} records", 9),
    ("Feature flag {flag} evaluated to {bool} for user {user}", 5),
    ("Received {n} messages from topic {topic} partition {partition}", 5),
    ("Health check passed ({ms}ms)", 5),
    ("Rate limit exceeded for client {ip}: {n} requests in {ms}ms", 13),
    ("Failed to parse request body: unexpected token at position {n}", 17),
    ("Shipment {order} handed to carrier {carrier}, tracking {tracking}", 9),
    ("Email sent to user {user} (template {template})", 9),
    ("GC pause of {ms}ms (heap {mb} MB)", 5),
    ("Recommendation model {model} served {n} candidates for user {user}", 5),
    ("Currency rates refreshed: {n} currencies, source {host}", 9),
    ("Unhandled exception in {function}: {err}", 17),
    ("Retrying {method} {path} after {err} (attempt {n})", 13),
];

const ERRORS: &[&str] = &[
    "connection reset by peer",
    "context deadline exceeded",
    "i/o timeout",
    "no such host",
    "EOF",
    "too many open files",
    "certificate has expired",
    "broken pipe",
];

/// A seeded source of telemetry.
pub struct Generator {
    rng: ChaCha8Rng,
    fleet: Vec<Service>,
    now_ns: u64,
    users: Zipf<f64>,
    products: Zipf<f64>,
    entry: Zipf<f64>,
    duration_ms: LogNormal<f64>,
}

impl Generator {
    pub fn new(seed: u64) -> Generator {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            fleet: fleet(),
            now_ns: EPOCH_NS,
            users: Zipf::new(50_000.0, 1.1).expect("valid zipf"),
            products: Zipf::new(5_000.0, 1.2).expect("valid zipf"),
            entry: Zipf::new(7.0, 1.3).expect("valid zipf"),
            // Median about 12 ms, with a long tail into seconds.
            duration_ms: LogNormal::new(2.5, 1.1).expect("valid lognormal"),
        }
    }

    fn user(&mut self) -> String {
        format!("u-{:06}", self.users.sample(&mut self.rng) as u64)
    }

    fn product(&mut self) -> String {
        const PREFIX: &[&str] = &["OLJ", "66V", "1YM", "L9E", "2ZY", "0PU", "LS4", "9SI", "6E9", "HQT"];
        let n = self.products.sample(&mut self.rng) as usize;
        format!("{}{:07}", PREFIX[n % PREFIX.len()], n * 7919 % 10_000_000)
    }

    fn ip(&mut self) -> String {
        let r = &mut self.rng;
        format!(
            "{}.{}.{}.{}",
            [10, 172, 192, 81, 93][r.random_range(0..5)],
            r.random_range(0..=255),
            r.random_range(0..=255),
            r.random_range(1..=254)
        )
    }

    fn hex_id(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.rng.random()).collect()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn fill(&mut self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 32);
        let mut rest = template;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let end = rest[i..].find('}').map(|e| i + e).unwrap_or(rest.len() - 1);
            let v = match &rest[i + 1..end] {
                "user" | "user_id" => self.user(),
                "ip" => self.ip(),
                "id" | "order" | "order_id" | "charge" | "charge_id" => {
                    format!("{:016x}", self.rng.random::<u64>())
                }
                "method" => self.pick(&["GET", "POST", "PUT", "DELETE"]).to_string(),
                "path" => format!(
                    "/api/v1/{}/{}",
                    self.pick(&["orders", "users", "products", "carts"]),
                    self.rng.random_range(1..100_000)
                ),
                "ms" => format!("{:.0}", self.duration_ms.sample(&mut self.rng)),
                "status" => self.pick(&["200", "200", "200", "201", "204", "400", "404", "500", "503"]).to_string(),
                "key" => format!(
                    "{}:{}",
                    self.pick(&["session", "product", "cart", "rates"]),
                    self.rng.random_range(0..1_000_000)
                ),
                "ratio" => format!("{:.3}", self.rng.random_range(0.5..0.99)),
                "n" => self.rng.random_range(1..5000).to_string(),
                "host" => {
                    format!("{}.svc.cluster.local", self.pick(&["postgres", "redis", "kafka", "rates-api", "smtp"]))
                }
                "port" => self.pick(&["5432", "6379", "9092", "443", "587"]).to_string(),
                "err" => self.pick(ERRORS).to_string(),
                "amount" => format!("{:.2}", self.rng.random_range(1.0..900.0)),
                "currency" => self.pick(&["USD", "EUR", "GBP", "JPY", "CAD"]).to_string(),
                "reason" => self
                    .pick(&["insufficient funds", "card expired", "fraud suspected", "issuer unavailable"])
                    .to_string(),
                "sql" => self.sql(),
                "job" => self.pick(&["reindex-products", "expire-carts", "send-digests", "rollup-metrics"]).to_string(),
                "flag" => self.pick(&["new-checkout", "dark-mode", "recs-v2", "free-shipping"]).to_string(),
                "bool" => self.rng.random_bool(0.5).to_string(),
                "topic" => self.pick(&["orders", "payments", "shipments", "clickstream"]).to_string(),
                "partition" => self.rng.random_range(0..12).to_string(),
                "carrier" => self.pick(&["UPS", "DHL", "FedEx", "USPS"]).to_string(),
                "tracking" => format!("1Z{:016X}", self.rng.random::<u64>()),
                "template" => self.pick(&["order-confirmation", "shipping-update", "password-reset"]).to_string(),
                "mb" => self.rng.random_range(128..4096).to_string(),
                "model" => self.pick(&["als-2025-11", "two-tower-v3", "popularity"]).to_string(),
                "function" => self
                    .pick(&["OrderService.place", "CartRepository.load", "PaymentClient.charge", "handler.ServeHTTP"])
                    .to_string(),
                "asset" => {
                    format!("{}.{}", self.rng.random_range(1000..9999), self.pick(&["js", "css", "png", "woff2"]))
                }
                "category" => self.pick(&["binoculars", "telescopes", "accessories", "books"]).to_string(),
                other => other.to_string(),
            };
            out.push_str(&v);
            rest = &rest[(end + 1).min(rest.len())..];
        }
        out.push_str(rest);
        out
    }

    fn sql(&mut self) -> String {
        let t = *self.pick(&[
            "SELECT id, name, price_cents FROM products WHERE id = {n}",
            "SELECT * FROM orders WHERE user_id = '{user}' ORDER BY created_at DESC LIMIT 20",
            "INSERT INTO orders (id, user_id, total_cents) VALUES ('{order}', '{user}', {n})",
            "UPDATE inventory SET reserved = reserved + 1 WHERE product_id = {n}",
            "SELECT count(*) FROM sessions WHERE expires_at < now()",
        ]);
        self.fill(t)
    }

    fn advance(&mut self) -> u64 {
        self.now_ns += self.rng.random_range(50_000..2_000_000);
        self.now_ns
    }

    fn resource(&self, svc: usize, inst: usize) -> Resource {
        let s = &self.fleet[svc];
        let (pod, node) = &s.instances[inst];
        Resource {
            attributes: vec![
                kv_s("service.name", s.name),
                kv_s("service.version", s.version),
                kv_s("service.namespace", "shop"),
                kv_s("service.instance.id", pod),
                kv_s("host.name", node),
                kv_s("k8s.pod.name", pod),
                kv_s("k8s.namespace.name", "prod"),
                kv_s("k8s.node.name", node),
                kv_s("cloud.region", if svc.is_multiple_of(3) { "eu-west-1" } else { "us-east-1" }),
                kv_s("deployment.environment", "production"),
                kv_s("telemetry.sdk.name", "opentelemetry"),
                kv_s("telemetry.sdk.language", s.language),
                kv_s("telemetry.sdk.version", "1.29.0"),
            ],
            ..Default::default()
        }
    }

    fn scope(&self, svc: usize) -> InstrumentationScope {
        InstrumentationScope {
            name: format!("io.opentelemetry.{}", self.fleet[svc].language),
            version: "2.10.0".into(),
            ..Default::default()
        }
    }

    /// A trace request of exactly `n` spans (whole traces, the last one possibly cut).
    pub fn traces(&mut self, n: usize) -> ExportTraceServiceRequest {
        let mut spans: Vec<(usize, usize, Span)> = Vec::with_capacity(n + 32);
        while spans.len() < n {
            self.trace(&mut spans);
        }
        spans.truncate(n);
        let mut by_res: BTreeMap<(usize, usize), Vec<Span>> = BTreeMap::new();
        for (svc, inst, s) in spans {
            by_res.entry((svc, inst)).or_default().push(s);
        }
        ExportTraceServiceRequest {
            resource_spans: by_res
                .into_iter()
                .map(|((svc, inst), spans)| ResourceSpans {
                    resource: Some(self.resource(svc, inst)),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(self.scope(svc)),
                        spans,
                        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    fn trace(&mut self, out: &mut Vec<(usize, usize, Span)>) {
        let trace_id = self.hex_id(16);
        let svc = (self.entry.sample(&mut self.rng) as usize - 1).min(self.fleet.len() - 1);
        let start = self.advance();
        let dur = (self.duration_ms.sample(&mut self.rng) * 1e6) as u64 + 200_000;
        self.server_span(out, &trace_id, svc, Vec::new(), start, dur, 0);
    }

    #[allow(clippy::too_many_arguments)]
    fn server_span(
        &mut self,
        out: &mut Vec<(usize, usize, Span)>,
        trace_id: &[u8],
        svc: usize,
        parent: Vec<u8>,
        start: u64,
        dur: u64,
        depth: usize,
    ) {
        let inst = self.rng.random_range(0..self.fleet[svc].instances.len());
        let route_idx = self.rng.random_range(0..self.fleet[svc].routes.len());
        let (method, template) = {
            let r = &self.fleet[svc].routes[route_idx];
            (r.method, r.template)
        };
        let path = self.fill(template);
        let error = self.rng.random_bool(0.02);
        let status_code = if error {
            *self.pick(&[500i64, 502, 503, 504])
        } else {
            *self.pick(&[200i64, 200, 200, 200, 201, 204, 304, 400, 404])
        };
        let span_id = self.hex_id(8);
        let user = self.user();
        let ip = self.ip();
        let ua = self.pick(USER_AGENTS).to_string();
        let mut attributes = vec![
            kv_s("http.request.method", method),
            kv_s("http.route", template),
            kv_s("url.path", &path),
            kv_s("url.scheme", "http"),
            kv_i("http.response.status_code", status_code),
            kv_s("client.address", &ip),
            kv_s("user_agent.original", &ua),
            kv_s("enduser.id", &user),
            kv_s("network.protocol.version", "1.1"),
        ];
        if template.contains("{id}") {
            let p = self.product();
            attributes.push(kv_s("app.product.id", &p));
        }
        let mut events = Vec::new();
        if error {
            let err = self.pick(ERRORS).to_string();
            events.push(span::Event {
                time_unix_nano: start + dur / 2,
                name: "exception".into(),
                attributes: vec![
                    kv_s(
                        "exception.type",
                        self.pick::<&str>(&[
                            "IOException",
                            "TimeoutError",
                            "*net.OpError",
                            "System.Net.Http.HttpRequestException",
                        ]),
                    ),
                    kv_s("exception.message", &err),
                    kv_s(
                        "exception.stacktrace",
                        &format!(
                            "at {}\n  at handler ({}:{})\n  at main",
                            self.fill("{function}"),
                            self.fleet[svc].name,
                            self.rng.random_range(10..900)
                        ),
                    ),
                ],
                dropped_attributes_count: 0,
            });
        } else if self.rng.random_bool(0.05) {
            events.push(span::Event {
                time_unix_nano: start + dur / 3,
                name: self.pick(&["cache.miss", "retry", "message.sent"]).to_string(),
                attributes: vec![],
                dropped_attributes_count: 0,
            });
        }
        let mut children_start = start + dur / 20;
        let calls = self.fleet[svc].calls;
        if depth < 4 && !calls.is_empty() {
            let n = self.rng.random_range(0..=calls.len().min(3));
            for _ in 0..n {
                let callee_name = *self.pick(calls);
                let callee = self.fleet.iter().position(|s| s.name == callee_name).unwrap_or(0);
                let cdur = (dur / 3).max(100_000).min((self.duration_ms.sample(&mut self.rng) * 1e6) as u64 + 100_000);
                let client_id = self.hex_id(8);
                let peer = format!("{}.prod.svc.cluster.local", callee_name);
                out.push((
                    svc,
                    inst,
                    Span {
                        trace_id: trace_id.to_vec(),
                        span_id: client_id.clone(),
                        parent_span_id: span_id.clone(),
                        name: format!("{} {}", self.fleet[callee].routes[0].method, callee_name),
                        kind: span::SpanKind::Client as i32,
                        start_time_unix_nano: children_start,
                        end_time_unix_nano: children_start + cdur,
                        attributes: vec![
                            kv_s("server.address", &peer),
                            kv_i("server.port", 8080),
                            kv_s("http.request.method", self.fleet[callee].routes[0].method),
                            kv_s("rpc.system", "http"),
                        ],
                        flags: 0x101,
                        ..Default::default()
                    },
                ));
                self.server_span(
                    out,
                    trace_id,
                    callee,
                    client_id,
                    children_start + cdur / 20,
                    cdur * 9 / 10,
                    depth + 1,
                );
                children_start += cdur + self.rng.random_range(10_000..500_000);
            }
        }
        if let Some((system, db)) = self.fleet[svc].db {
            let queries = self.rng.random_range(1..4);
            for _ in 0..queries {
                let qdur = (self.duration_ms.sample(&mut self.rng) * 1e5) as u64 + 20_000;
                let stmt = if system == "redis" { self.fill("GET {key}") } else { self.sql() };
                let op = stmt.split_whitespace().next().unwrap_or("QUERY").to_string();
                out.push((
                    svc,
                    inst,
                    Span {
                        trace_id: trace_id.to_vec(),
                        span_id: self.hex_id(8),
                        parent_span_id: span_id.clone(),
                        name: format!("{op} {db}"),
                        kind: span::SpanKind::Client as i32,
                        start_time_unix_nano: children_start,
                        end_time_unix_nano: children_start + qdur,
                        attributes: vec![
                            kv_s("db.system", system),
                            kv_s("db.namespace", db),
                            kv_s("db.operation.name", &op),
                            kv_s("db.query.text", &stmt),
                        ],
                        flags: 0x101,
                        ..Default::default()
                    },
                ));
                children_start += qdur;
            }
        }
        out.push((
            svc,
            inst,
            Span {
                trace_id: trace_id.to_vec(),
                span_id,
                parent_span_id: parent,
                name: format!("{method} {template}"),
                kind: span::SpanKind::Server as i32,
                start_time_unix_nano: start,
                end_time_unix_nano: start + dur,
                attributes,
                events,
                status: Some(if error {
                    Status { code: 2, message: format!("HTTP {status_code}") }
                } else {
                    Status::default()
                }),
                flags: 0x101,
                ..Default::default()
            },
        ));
    }

    /// A log request of exactly `n` records.
    pub fn logs(&mut self, n: usize) -> ExportLogsServiceRequest {
        let mut by_res: BTreeMap<(usize, usize), Vec<LogRecord>> = BTreeMap::new();
        for _ in 0..n {
            let svc = self.rng.random_range(0..self.fleet.len());
            let inst = self.rng.random_range(0..self.fleet[svc].instances.len());
            let (template, sev) = *self.pick(LOG_TEMPLATES);
            let sev = if self.rng.random_bool(0.15) { 5 } else { sev };
            let mut body = self.fill(template);
            if sev >= 17 && self.rng.random_bool(0.3) {
                body.push_str(&format!(
                    "\n\tat {}\n\tat {}.run\n\tat java.base/java.lang.Thread.run",
                    self.fill("{function}"),
                    self.fleet[svc].name
                ));
            }
            let t = self.advance();
            let traced = self.rng.random_bool(0.6);
            let name = self.fleet[svc].name;
            let part = *self.pick(&["handler", "repository", "client", "worker"]);
            let record = LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: t + self.rng.random_range(100_000..5_000_000),
                severity_number: sev,
                severity_text: severity_text(sev).into(),
                body: Some(AnyValue { value: Some(Value::StringValue(body)) }),
                attributes: vec![
                    kv_s("log.logger", &format!("{}.{}", name, part)),
                    kv_s(
                        "thread.name",
                        &format!(
                            "{}-{}",
                            self.pick(&["http-nio", "worker", "tokio-runtime-worker", "main"]),
                            self.rng.random_range(1..32)
                        ),
                    ),
                    kv_s("code.function", self.pick::<&str>(&["handle", "process", "load", "send", "run"])),
                ],
                trace_id: if traced { self.hex_id(16) } else { Vec::new() },
                span_id: if traced { self.hex_id(8) } else { Vec::new() },
                flags: u32::from(traced),
                ..Default::default()
            };
            by_res.entry((svc, inst)).or_default().push(record);
        }
        ExportLogsServiceRequest {
            resource_logs: by_res
                .into_iter()
                .map(|((svc, inst), log_records)| ResourceLogs {
                    resource: Some(self.resource(svc, inst)),
                    scope_logs: vec![ScopeLogs {
                        scope: Some(self.scope(svc)),
                        log_records,
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                })
                .collect(),
        }
    }

    /// A metrics request of exactly `n` data points, covering all five metric kinds.
    pub fn metrics(&mut self, n: usize) -> ExportMetricsServiceRequest {
        let mut out: Vec<pm::ResourceMetrics> = Vec::new();
        let mut left = n;
        while left > 0 {
            let svc = self.rng.random_range(0..self.fleet.len());
            let inst = self.rng.random_range(0..self.fleet[svc].instances.len());
            let t = self.advance();
            let start = t - 3_600_000_000_000;
            let mut metrics = Vec::new();
            let routes: Vec<(&str, &str)> = self.fleet[svc].routes.iter().map(|r| (r.method, r.template)).collect();
            let mut budget = |k: usize| {
                let take = k.min(left);
                left -= take;
                take
            };
            // One point per route, then per-kind series, until the request holds `n` points.
            let k = budget(routes.len());
            if k > 0 {
                let bounds = vec![0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
                let points = routes
                    .iter()
                    .take(k)
                    .map(|(m, route)| {
                        let counts: Vec<u64> = (0..=bounds.len())
                            .map(|i| {
                                let peak = 5.0 - (i as f64 - 4.0).abs();
                                (peak.max(0.0) * self.rng.random_range(1.0..40.0)) as u64
                            })
                            .collect();
                        let count = counts.iter().sum();
                        pm::HistogramDataPoint {
                            attributes: vec![
                                kv_s("http.request.method", m),
                                kv_s("http.route", route),
                                kv_i("http.response.status_code", 200),
                            ],
                            start_time_unix_nano: start,
                            time_unix_nano: t,
                            count,
                            sum: Some(count as f64 * self.rng.random_range(0.01..0.3)),
                            bucket_counts: counts,
                            explicit_bounds: bounds.clone(),
                            min: Some(0.001),
                            max: Some(self.rng.random_range(0.5..9.0)),
                            ..Default::default()
                        }
                    })
                    .collect();
                metrics.push(metric(
                    "http.server.request.duration",
                    "s",
                    Data::Histogram(pm::Histogram { data_points: points, aggregation_temporality: 2 }),
                ));
            }
            let k = budget(routes.len());
            if k > 0 {
                let points = routes
                    .iter()
                    .take(k)
                    .map(|(m, route)| pm::NumberDataPoint {
                        attributes: vec![kv_s("http.request.method", m), kv_s("http.route", route)],
                        start_time_unix_nano: start,
                        time_unix_nano: t,
                        value: Some(pm::number_data_point::Value::AsInt(self.rng.random_range(1_000..9_000_000))),
                        ..Default::default()
                    })
                    .collect();
                metrics.push(metric(
                    "http.server.requests",
                    "{request}",
                    Data::Sum(pm::Sum { data_points: points, aggregation_temporality: 2, is_monotonic: true }),
                ));
            }
            for (name, unit, lo, hi) in [
                ("process.cpu.utilization", "1", 0.01, 0.95),
                ("process.memory.usage", "By", 5e7, 2e9),
                ("jvm.thread.count", "{thread}", 8.0, 400.0),
            ] {
                if budget(1) == 1 {
                    let v = self.rng.random_range(lo..hi);
                    let value = if unit == "1" {
                        pm::number_data_point::Value::AsDouble(v)
                    } else {
                        pm::number_data_point::Value::AsInt(v as i64)
                    };
                    metrics.push(metric(
                        name,
                        unit,
                        Data::Gauge(pm::Gauge {
                            data_points: vec![pm::NumberDataPoint {
                                time_unix_nano: t,
                                value: Some(value),
                                ..Default::default()
                            }],
                        }),
                    ));
                }
            }
            if budget(1) == 1 {
                let scale = 3;
                let buckets: Vec<u64> =
                    (0..24).map(|i| if (6..18).contains(&i) { self.rng.random_range(0..60) } else { 0 }).collect();
                let count = buckets.iter().sum::<u64>() + 2;
                metrics.push(metric(
                    "http.client.request.duration",
                    "s",
                    Data::ExponentialHistogram(pm::ExponentialHistogram {
                        data_points: vec![pm::ExponentialHistogramDataPoint {
                            attributes: vec![kv_s(
                                "server.address",
                                &format!("{}.prod.svc.cluster.local", self.fleet[(svc + 1) % self.fleet.len()].name),
                            )],
                            start_time_unix_nano: start,
                            time_unix_nano: t,
                            count,
                            sum: Some(count as f64 * 0.04),
                            scale,
                            zero_count: 2,
                            positive: Some(pm::exponential_histogram_data_point::Buckets {
                                offset: -40,
                                bucket_counts: buckets,
                            }),
                            ..Default::default()
                        }],
                        aggregation_temporality: 1,
                    }),
                ));
            }
            if budget(1) == 1 {
                let q = |x: f64, r: &mut ChaCha8Rng| pm::summary_data_point::ValueAtQuantile {
                    quantile: x,
                    value: x * r.random_range(10.0..200.0),
                };
                let qv = vec![q(0.5, &mut self.rng), q(0.9, &mut self.rng), q(0.99, &mut self.rng)];
                metrics.push(metric(
                    "rpc.server.duration",
                    "ms",
                    Data::Summary(pm::Summary {
                        data_points: vec![pm::SummaryDataPoint {
                            start_time_unix_nano: start,
                            time_unix_nano: t,
                            count: self.rng.random_range(100..100_000),
                            sum: self.rng.random_range(1e3..1e7),
                            quantile_values: qv,
                            ..Default::default()
                        }],
                    }),
                ));
            }
            out.push(pm::ResourceMetrics {
                resource: Some(self.resource(svc, inst)),
                scope_metrics: vec![pm::ScopeMetrics {
                    scope: Some(self.scope(svc)),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            });
        }
        ExportMetricsServiceRequest { resource_metrics: out }
    }
}

fn metric(name: &str, unit: &str, data: Data) -> pm::Metric {
    pm::Metric { name: name.into(), unit: unit.into(), description: String::new(), metadata: vec![], data: Some(data) }
}

fn severity_text(n: i32) -> &'static str {
    match n {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        _ => "FATAL",
    }
}

pub fn kv_s(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

pub fn kv_i(k: &str, v: i64) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(Value::IntValue(v)) }), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let enc = |seed| {
            let mut g = Generator::new(seed);
            (g.traces(500).encode_to_vec(), g.logs(300).encode_to_vec(), g.metrics(200).encode_to_vec())
        };
        assert_eq!(enc(7), enc(7));
        assert_ne!(enc(7), enc(8));
    }

    #[test]
    fn requests_hold_exactly_the_items_asked_for() {
        let mut g = Generator::new(1);
        let t = g.traces(1000);
        assert_eq!(t.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum::<usize>(), 1000);
        let l = g.logs(777);
        assert_eq!(l.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum::<usize>(), 777);
        let m = g.metrics(333);
        let points: usize = m
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| openwit_core::batch::metric_point_count(m.data.as_ref()))
            .sum();
        assert_eq!(points, 333);
    }

    #[test]
    fn traces_form_trees_with_valid_parents() {
        let mut g = Generator::new(3);
        let t = g.traces(2000);
        let spans: Vec<&Span> = t.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).collect();
        let ids: std::collections::HashSet<(&[u8], &[u8])> =
            spans.iter().map(|s| (&s.trace_id[..], &s.span_id[..])).collect();
        let roots = spans.iter().filter(|s| s.parent_span_id.is_empty()).count();
        assert!(roots > 10, "several traces expected, got {roots} roots");
        let with_parent = spans
            .iter()
            .filter(|s| !s.parent_span_id.is_empty() && ids.contains(&(&s.trace_id[..], &s.parent_span_id[..])))
            .count();
        // Every non-root span's parent is in the batch, except in the one trace cut at the end.
        assert!(with_parent + roots + 60 >= spans.len(), "{with_parent} + {roots} of {}", spans.len());
        assert!(spans.iter().all(|s| s.end_time_unix_nano > s.start_time_unix_nano));
    }
}
