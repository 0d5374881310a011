//! The metrics table's rows straight from `ExportMetricsServiceRequest` bytes (see `wire`): the same
//! rows `metrics::rows` makes from the decoded request, one per data point of every kind (gauge,
//! sum, histogram, exponential histogram, summary), exemplars included. Resources and scopes are read in
//! place (see `wire`; one with entity refs is decoded by prost).
//!
//! Besides what `wire` leaves to prost, a metric's data given twice (prost merges or replaces it) and
//! an exponential histogram's buckets given twice (merged) are left to it. Repeated numbers are read
//! packed or not, as prost reads them; a scalar given twice is read as its last value, as prost does.

use super::AttrSizes;
use super::metrics::{Columns, Exponential, Kind, ListSizes, MetricScalars, Number, Stats};
use super::resource_scope;
use super::wire::{self, Attr, Fields, Sink, Stop, Value, once};
use arrow::record_batch::RecordBatch;
use prost::encoding::decode_varint;

/// Checks that the direct path reads every part of `buf` (else `Stop::Unusual`), and counts its
/// points and their attributes into `sizes`, the metrics' descriptions once per point into
/// `description_bytes` and the points' lists' values into `lists` (what `rows` allocates by).
pub(crate) fn skim(
    buf: &[u8],
    sizes: &mut AttrSizes,
    description_bytes: &mut usize,
    lists: &mut ListSizes,
) -> Result<(), Stop> {
    wire::walk(buf, &mut Skim { sizes, description_bytes, lists, views: Views::default() }, None)
}

/// The rows of the requests `parts` (in order), whose skims added up to `sizes`,
/// `description_bytes` and `lists`.
pub(crate) fn rows<'a>(
    tenant: &str,
    parts: impl IntoIterator<Item = &'a [u8]>,
    sizes: &AttrSizes,
    description_bytes: usize,
    lists: &ListSizes,
    grouped: bool,
) -> Result<RecordBatch, Stop> {
    let mut build = Build { columns: Columns::new(sizes, description_bytes, lists), views: Views::default() };
    let mut groups = resource_scope::Builders::new();
    for part in parts {
        wire::walk(part, &mut build, Some(&mut groups))?;
    }
    Ok(build.columns.finish(tenant, groups, grouped)?)
}

/// One metric, borrowed from the request's bytes.
struct MetricView<'a> {
    name: &'a str,
    description: &'a str,
    unit: &'a str,
    metadata: Vec<Attr<'a>>,
    kind: Kind,
    temporality: Option<i32>,
    monotonic: Option<bool>,
    /// Its data points' bytes.
    points: Vec<&'a [u8]>,
}

impl Default for MetricView<'_> {
    fn default() -> Self {
        MetricView {
            name: "",
            description: "",
            unit: "",
            metadata: Vec::new(),
            kind: Kind::Gauge,
            temporality: None,
            monotonic: None,
            points: Vec::new(),
        }
    }
}

/// Reads a metric; `Ok(false)` when it has no data (no rows).
fn read_metric<'a>(buf: &'a [u8], m: &mut MetricView<'a>) -> Result<bool, Stop> {
    m.metadata.clear();
    m.points.clear();
    let (mut name, mut description, mut unit) = ("", "", "");
    let mut data = None;
    for f in Fields(buf) {
        match f? {
            (1, v) => name = v.str()?,
            (2, v) => description = v.str()?,
            (3, v) => unit = v.str()?,
            (12, v) => m.metadata.push(wire::attr(v.bytes()?)?),
            // The `data` oneof: given twice, prost merges (same kind) or replaces it.
            (tag @ (5 | 7 | 9 | 10 | 11), v) => match data.replace((tag, v.bytes()?)) {
                None => {}
                Some(_) => return Err(Stop::Unusual),
            },
            _ => return Err(Stop::Unusual),
        }
    }
    (m.name, m.description, m.unit) = (name, description, unit);
    let Some((tag, buf)) = data else { return Ok(false) };
    (m.kind, m.temporality, m.monotonic) = match tag {
        5 => (Kind::Gauge, None, None),
        7 => (Kind::Sum, Some(0), Some(false)),
        9 => (Kind::Histogram, Some(0), None),
        10 => (Kind::ExponentialHistogram, Some(0), None),
        _ => (Kind::Summary, None, None),
    };
    for f in Fields(buf) {
        match (f?, m.kind) {
            ((1, v), _) => m.points.push(v.bytes()?),
            ((2, v), Kind::Sum | Kind::Histogram | Kind::ExponentialHistogram) => m.temporality = Some(v.int32()?),
            ((3, v), Kind::Sum) => m.monotonic = Some(v.varint()? != 0),
            _ => return Err(Stop::Unusual),
        }
    }
    Ok(true)
}

/// One data point of any kind, borrowed from the request's bytes (numbers copied out); reused from
/// point to point.
#[derive(Default)]
struct PointView<'a> {
    time: u64,
    start: u64,
    flags: u32,
    attrs: Vec<Attr<'a>>,
    exemplars: Vec<&'a [u8]>,
    value: Option<Number>,
    stats: Stats,
    explicit_bounds: Vec<f64>,
    bucket_counts: Vec<u64>,
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    positive: Option<i32>,
    positive_counts: Vec<u64>,
    negative: Option<i32>,
    negative_counts: Vec<u64>,
    quantiles: Vec<(f64, f64)>,
}

impl PointView<'_> {
    fn exponential(&self) -> Exponential<'_> {
        Exponential {
            scale: self.scale,
            zero_count: self.zero_count,
            zero_threshold: self.zero_threshold,
            positive: self.positive.map(|o| (o, &self.positive_counts[..])),
            negative: self.negative.map(|o| (o, &self.negative_counts[..])),
        }
    }
}

fn double(v: Value<'_>) -> Result<f64, Stop> {
    Ok(f64::from_bits(v.fixed64()?))
}

/// A `sint32` (zigzag) field, as prost reads it: the varint's low 32 bits, unzigzagged.
fn sint32(v: Value<'_>) -> Result<i32, Stop> {
    let n = v.varint()? as u32;
    Ok(((n >> 1) as i32) ^ -((n & 1) as i32))
}

/// A repeated `fixed64` or `double` field's values (packed, or one), appended to `out`.
fn fixed64s<T>(v: Value<'_>, out: &mut Vec<T>, from: impl Fn(u64) -> T) -> Result<(), Stop> {
    match v {
        Value::Fixed64(x) => out.push(from(x)),
        Value::Len(b) => {
            let chunks = b.chunks_exact(8);
            if !chunks.remainder().is_empty() {
                return Err(Stop::Unusual);
            }
            out.extend(chunks.map(|c| from(u64::from_le_bytes(c.try_into().unwrap_or_default()))));
        }
        _ => return Err(Stop::Unusual),
    }
    Ok(())
}

/// A repeated `uint64` field's values (packed, or one), appended to `out`.
fn varints(v: Value<'_>, out: &mut Vec<u64>) -> Result<(), Stop> {
    match v {
        Value::Varint(x) => out.push(x),
        Value::Len(mut b) => {
            while !b.is_empty() {
                out.push(decode_varint(&mut b).map_err(|_| Stop::Unusual)?);
            }
        }
        _ => return Err(Stop::Unusual),
    }
    Ok(())
}

/// Reads an exponential histogram's `Buckets`: offset and counts.
fn buckets(buf: &[u8], counts: &mut Vec<u64>) -> Result<i32, Stop> {
    let mut offset = 0;
    for f in Fields(buf) {
        match f? {
            (1, v) => offset = sint32(v)?,
            (2, v) => varints(v, counts)?,
            _ => return Err(Stop::Unusual),
        }
    }
    Ok(offset)
}

/// Reads one data point of `kind`.
fn read_point<'a>(buf: &'a [u8], kind: Kind, p: &mut PointView<'a>) -> Result<(), Stop> {
    p.attrs.clear();
    p.exemplars.clear();
    p.explicit_bounds.clear();
    p.bucket_counts.clear();
    p.positive_counts.clear();
    p.negative_counts.clear();
    p.quantiles.clear();
    (p.time, p.start, p.flags, p.value, p.stats) = (0, 0, 0, None, Stats::default());
    (p.scale, p.zero_count, p.zero_threshold, p.positive, p.negative) = (0, 0, 0.0, None, None);
    let (mut positive, mut negative) = (None, None);
    for f in Fields(buf) {
        let (tag, v) = f?;
        // Times are fields 2 and 3 of every kind.
        match (kind, tag) {
            (_, 2) => p.start = v.fixed64()?,
            (_, 3) => p.time = v.fixed64()?,
            (Kind::Gauge | Kind::Sum, 7) => p.attrs.push(wire::attr(v.bytes()?)?),
            (Kind::Gauge | Kind::Sum, 4) => p.value = Some(Number::Double(double(v)?)),
            (Kind::Gauge | Kind::Sum, 6) => p.value = Some(Number::Int(v.fixed64()? as i64)),
            (Kind::Gauge | Kind::Sum, 5) => p.exemplars.push(v.bytes()?),
            (Kind::Gauge | Kind::Sum, 8) => p.flags = v.uint32()?,
            (Kind::Histogram, 9) => p.attrs.push(wire::attr(v.bytes()?)?),
            (Kind::Histogram, 4) => p.stats.count = v.fixed64()?,
            (Kind::Histogram, 5) => p.stats.sum = Some(double(v)?),
            (Kind::Histogram, 6) => fixed64s(v, &mut p.bucket_counts, |x| x)?,
            (Kind::Histogram, 7) => fixed64s(v, &mut p.explicit_bounds, f64::from_bits)?,
            (Kind::Histogram, 8) => p.exemplars.push(v.bytes()?),
            (Kind::Histogram, 10) => p.flags = v.uint32()?,
            (Kind::Histogram, 11) => p.stats.min = Some(double(v)?),
            (Kind::Histogram, 12) => p.stats.max = Some(double(v)?),
            (Kind::ExponentialHistogram, 1) => p.attrs.push(wire::attr(v.bytes()?)?),
            (Kind::ExponentialHistogram, 4) => p.stats.count = v.fixed64()?,
            (Kind::ExponentialHistogram, 5) => p.stats.sum = Some(double(v)?),
            (Kind::ExponentialHistogram, 6) => p.scale = sint32(v)?,
            (Kind::ExponentialHistogram, 7) => p.zero_count = v.fixed64()?,
            (Kind::ExponentialHistogram, 8) => once(&mut positive, v)?,
            (Kind::ExponentialHistogram, 9) => once(&mut negative, v)?,
            (Kind::ExponentialHistogram, 10) => p.flags = v.uint32()?,
            (Kind::ExponentialHistogram, 11) => p.exemplars.push(v.bytes()?),
            (Kind::ExponentialHistogram, 12) => p.stats.min = Some(double(v)?),
            (Kind::ExponentialHistogram, 13) => p.stats.max = Some(double(v)?),
            (Kind::ExponentialHistogram, 14) => p.zero_threshold = double(v)?,
            (Kind::Summary, 7) => p.attrs.push(wire::attr(v.bytes()?)?),
            (Kind::Summary, 4) => p.stats.count = v.fixed64()?,
            (Kind::Summary, 5) => p.stats.sum = Some(double(v)?),
            (Kind::Summary, 6) => p.quantiles.push(quantile(v.bytes()?)?),
            (Kind::Summary, 8) => p.flags = v.uint32()?,
            _ => return Err(Stop::Unusual),
        }
    }
    if let Some(b) = positive {
        p.positive = Some(buckets(b, &mut p.positive_counts)?);
    }
    if let Some(b) = negative {
        p.negative = Some(buckets(b, &mut p.negative_counts)?);
    }
    Ok(())
}

fn quantile(buf: &[u8]) -> Result<(f64, f64), Stop> {
    let (mut quantile, mut value) = (0.0, 0.0);
    for f in Fields(buf) {
        match f? {
            (1, v) => quantile = double(v)?,
            (2, v) => value = double(v)?,
            _ => return Err(Stop::Unusual),
        }
    }
    Ok((quantile, value))
}

/// One exemplar, borrowed from the request's bytes; reused.
#[derive(Default)]
struct ExemplarView<'a> {
    time: u64,
    value: Option<Number>,
    span_id: &'a [u8],
    trace_id: &'a [u8],
    attrs: Vec<Attr<'a>>,
}

fn read_exemplar<'a>(buf: &'a [u8], e: &mut ExemplarView<'a>) -> Result<(), Stop> {
    e.attrs.clear();
    (e.time, e.value, e.span_id, e.trace_id) = (0, None, &[], &[]);
    for f in Fields(buf) {
        match f? {
            (7, v) => e.attrs.push(wire::attr(v.bytes()?)?),
            (2, v) => e.time = v.fixed64()?,
            (3, v) => e.value = Some(Number::Double(double(v)?)),
            (6, v) => e.value = Some(Number::Int(v.fixed64()? as i64)),
            (4, v) => e.span_id = v.bytes()?,
            (5, v) => e.trace_id = v.bytes()?,
            _ => return Err(Stop::Unusual),
        }
    }
    Ok(())
}

/// The views a metric is read into, reused from metric to metric.
#[derive(Default)]
struct Views<'a> {
    metric: MetricView<'a>,
    point: PointView<'a>,
    exemplar: ExemplarView<'a>,
}

struct Skim<'s, 'a> {
    sizes: &'s mut AttrSizes,
    description_bytes: &'s mut usize,
    lists: &'s mut ListSizes,
    views: Views<'a>,
}

impl<'a> Sink<'a> for Skim<'_, 'a> {
    fn item(&mut self, bytes: &'a [u8]) -> Result<usize, Stop> {
        let Views { metric, point, exemplar } = &mut self.views;
        if !read_metric(bytes, metric)? {
            return Ok(0);
        }
        for &p in &metric.points {
            read_point(p, metric.kind, point)?;
            wire::count(self.sizes, &point.attrs);
            self.lists.histogram(point.explicit_bounds.len(), point.bucket_counts.len());
            self.lists.exponential(point.positive_counts.len(), point.negative_counts.len());
            self.lists.summary(point.quantiles.len());
            for &e in &point.exemplars {
                read_exemplar(e, exemplar)?;
            }
        }
        let len = metric.points.len();
        *self.description_bytes += len * metric.description.len();
        Ok(len)
    }
}

struct Build<'a> {
    columns: Columns,
    views: Views<'a>,
}

impl<'a> Sink<'a> for Build<'a> {
    fn item(&mut self, bytes: &'a [u8]) -> Result<usize, Stop> {
        let Views { metric: m, point: p, exemplar: e } = &mut self.views;
        if !read_metric(bytes, m)? || m.points.is_empty() {
            return Ok(0);
        }
        let len = m.points.len();
        let c = &mut self.columns.points;
        for &bytes in &m.points {
            read_point(bytes, m.kind, p)?;
            c.point(p.time, p.start, p.flags);
            wire::append_attrs(&mut c.attrs, &mut c.types, &p.attrs)?;
            for &bytes in &p.exemplars {
                read_exemplar(bytes, e)?;
                c.exemplar(e.time, e.value, e.span_id, e.trace_id, |map| wire::append_entries(map, &e.attrs))?;
            }
            c.end_exemplars();
            match m.kind {
                Kind::Gauge | Kind::Sum => c.number(p.value),
                Kind::Histogram => c.histogram(p.stats, &p.explicit_bounds, &p.bucket_counts),
                Kind::ExponentialHistogram => c.exponential(p.stats, &p.exponential()),
                Kind::Summary => c.summary(p.stats.count, p.stats.sum.unwrap_or(0.0), p.quantiles.iter().copied())?,
            }
        }
        let scalars = MetricScalars {
            name: m.name,
            description: m.description,
            unit: m.unit,
            kind: m.kind,
            temporality: m.temporality,
            monotonic: m.monotonic,
        };
        self.columns.metric(&scalars, len, |meta, types| wire::append_attrs(meta, types, &m.metadata))?;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::super::metrics::tests::request;
    use super::super::skim;
    use super::super::wire::test_support::{
        added_field_read_as_prost_reads, edited, edits, every_field, flat, read_only_as_prost_reads,
        same_rows_as_decoded, wrap,
    };
    use crate::Signal;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint, SummaryDataPoint,
        number_data_point,
    };
    use proptest::prelude::*;
    use prost::Message;

    const M: Signal = Signal::Metrics;

    /// The request with every array or key-value list value made a string: what the direct path reads.
    fn without_nesting(mut req: ExportMetricsServiceRequest) -> ExportMetricsServiceRequest {
        for rm in &mut req.resource_metrics {
            rm.resource.iter_mut().for_each(|r| flat(&mut r.attributes));
            for sm in &mut rm.scope_metrics {
                sm.scope.iter_mut().for_each(|s| flat(&mut s.attributes));
                for m in &mut sm.metrics {
                    flat(&mut m.metadata);
                    // A point's attributes and its exemplars' filtered attributes.
                    let point = |attrs: &mut Vec<_>, exemplars: &mut Vec<Exemplar>| {
                        flat(attrs);
                        exemplars.iter_mut().for_each(|e| flat(&mut e.filtered_attributes));
                    };
                    match m.data.as_mut() {
                        Some(Data::Gauge(g)) => {
                            g.data_points.iter_mut().for_each(|p| point(&mut p.attributes, &mut p.exemplars))
                        }
                        Some(Data::Sum(s)) => {
                            s.data_points.iter_mut().for_each(|p| point(&mut p.attributes, &mut p.exemplars))
                        }
                        Some(Data::Histogram(h)) => {
                            h.data_points.iter_mut().for_each(|p| point(&mut p.attributes, &mut p.exemplars))
                        }
                        Some(Data::ExponentialHistogram(h)) => {
                            h.data_points.iter_mut().for_each(|p| point(&mut p.attributes, &mut p.exemplars))
                        }
                        Some(Data::Summary(s)) => s.data_points.iter_mut().for_each(|p| flat(&mut p.attributes)),
                        None => {}
                    }
                }
            }
        }
        req
    }

    fn points(req: &ExportMetricsServiceRequest) -> usize {
        req.resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .map(|m| crate::batch::metric_point_count(m.data.as_ref()))
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        /// Rows straight from the bytes are the rows of the decoded request, every kind of point, in
        /// both forms, for one request or several appended; requests with nested values are left to
        /// prost.
        #[test]
        fn rows_from_the_bytes_are_the_rows_of_the_decoded_request(a in request(), b in request()) {
            if a.encode_to_vec() != without_nesting(a.clone()).encode_to_vec() {
                prop_assert_eq!(skim(M, &a.encode_to_vec()), None);
            }
            let (a, b) = (without_nesting(a), without_nesting(b));
            prop_assert_eq!(skim(M, &a.encode_to_vec()).map(|s| s.items()), Some(points(&a)));
            // The builders are sized by the skim as the decoded path sizes them.
            let (sizes, description_bytes, lists) = super::super::metrics::sizes_of(&a);
            let skimmed = skim(M, &a.encode_to_vec()).expect("skimmed above");
            prop_assert_eq!((skimmed.sizes, skimmed.text_bytes, skimmed.lists), (sizes, description_bytes, lists));
            same_rows_as_decoded(M, &a.encode_to_vec(), &b.encode_to_vec())?;
        }

        /// Whatever the bytes, a request the skim reads is one prost decodes, to the same rows.
        #[test]
        fn bytes_the_skim_reads_are_bytes_prost_decodes_to_the_same_rows(req in request(), edits in edits()) {
            let bytes = edited(without_nesting(req).encode_to_vec(), edits);
            read_only_as_prost_reads(M, bytes, true)?;
        }
    }

    /// A request of one metric of `kind` (0 gauge … 4 summary) whose every message the direct path
    /// reads has `extra` appended at `level` (0: the request … 10: a summary's quantile).
    fn with_field_added(extra: &[u8], level: u8, kind: u8) -> Vec<u8> {
        let add = |bytes: Vec<u8>, at: u8| if level == at { [bytes, extra.to_vec()].concat() } else { bytes };
        let value = add(wrap(1, b"v"), 7);
        let kv = add([wrap(1, b"k"), wrap(2, &value)].concat(), 6);
        let exemplar = Exemplar { time_unix_nano: 3, span_id: vec![1], ..Default::default() }.encode_to_vec();
        let exemplar = add([exemplar, wrap(7, &kv)].concat(), 8);
        let (point, tag) = match kind {
            0 | 1 => {
                let value = Some(number_data_point::Value::AsInt(-3));
                let p = NumberDataPoint { time_unix_nano: 5, value, ..Default::default() }.encode_to_vec();
                ([p, wrap(7, &kv), wrap(5, &exemplar)].concat(), if kind == 0 { 5 } else { 7 })
            }
            2 => {
                let p = HistogramDataPoint {
                    count: 2,
                    bucket_counts: vec![1, 1],
                    explicit_bounds: vec![0.5],
                    min: Some(0.1),
                    ..Default::default()
                };
                ([p.encode_to_vec(), wrap(9, &kv), wrap(8, &exemplar)].concat(), 9)
            }
            3 => {
                let p = ExponentialHistogramDataPoint { scale: -1, zero_count: 1, ..Default::default() };
                let b = add(Buckets { offset: -2, bucket_counts: vec![1, 300] }.encode_to_vec(), 9);
                ([p.encode_to_vec(), wrap(1, &kv), wrap(11, &exemplar), wrap(8, &b)].concat(), 10)
            }
            _ => {
                let p = SummaryDataPoint { count: 1, sum: 2.0, ..Default::default() };
                let q = add(ValueAtQuantile { quantile: 0.5, value: 1.0 }.encode_to_vec(), 10);
                ([p.encode_to_vec(), wrap(7, &kv), wrap(6, &q)].concat(), 11)
            }
        };
        let point = add(point, 5);
        // Sums and histograms: a temporality (field 2, varint 2); sums: monotonic (field 3).
        let extras: &[u8] = match tag {
            7 => &[0x10, 2, 0x18, 1],
            9 | 10 => &[0x10, 2],
            _ => &[],
        };
        let data = add([wrap(1, &point), extras.to_vec()].concat(), 4);
        let metric = Metric { name: "m".into(), unit: "s".into(), ..Default::default() }.encode_to_vec();
        let metric = add([metric, wrap(tag, &data), wrap(12, &kv)].concat(), 3);
        let scope = add(wrap(2, &metric), 2);
        let rm = add(wrap(2, &scope), 1);
        add(wrap(1, &rm), 0)
    }

    /// A field of any number and wire type added to any message the direct path reads (the request,
    /// a group, a metric, its data, a point of each kind, an attribute, its value, an exemplar,
    /// buckets, a quantile): read directly only if prost reads it too, to the same rows. Every field
    /// at every level of every kind.
    #[test]
    fn an_added_field_is_read_as_prost_reads_it_or_left_to_prost() {
        for extra in every_field() {
            for kind in 0..5u8 {
                for level in 0..11u8 {
                    added_field_read_as_prost_reads(M, with_field_added(&extra, level, kind), level, &extra);
                }
            }
        }
    }

    #[test]
    fn each_kind_with_nothing_added_is_read_directly() {
        for kind in 0..5 {
            let req = with_field_added(&[], 0, kind);
            assert_eq!(skim(M, &req).map(|s| s.items()), Some(1), "kind {kind}");
            read_only_as_prost_reads(M, req, true).unwrap();
        }
    }

    #[test]
    fn what_prost_would_merge_is_left_to_it() {
        let one = |metric: &[u8]| wrap(1, &wrap(2, &wrap(2, metric)));
        let point = NumberDataPoint { time_unix_nano: 5, ..Default::default() }.encode_to_vec();
        let gauge = wrap(5, &wrap(1, &point));
        assert_eq!(skim(M, &one(&gauge)).map(|s| s.items()), Some(1));
        // A metric's data given twice: prost merges the points of one kind (or keeps the last kind).
        let twice = one(&[gauge.clone(), gauge].concat());
        let merged = ExportMetricsServiceRequest::decode(twice.as_slice()).unwrap();
        assert_eq!(points(&merged), 2, "merged");
        assert_eq!(skim(M, &twice), None);
        // An exponential histogram's positive buckets given twice: merged by prost.
        let b = Buckets { offset: 1, bucket_counts: vec![4] }.encode_to_vec();
        let p = [wrap(8, &b), wrap(8, &b)].concat();
        let twice = one(&wrap(10, &wrap(1, &p)));
        assert!(ExportMetricsServiceRequest::decode(twice.as_slice()).is_ok());
        assert_eq!(skim(M, &twice), None);
        // Packed and unpacked bucket counts, and a value given twice (the last one holds), are read
        // directly, as prost reads them.
        let mut p = HistogramDataPoint { bucket_counts: vec![1, 2], ..Default::default() }.encode_to_vec();
        p.extend([0x31, 9, 0, 0, 0, 0, 0, 0, 0]); // field 6, fixed64 9, unpacked
        p.extend([0x29, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x29, 0, 0, 0, 0, 0, 0, 0, 0x40]); // sum 1.0, then 2.0
        let req = one(&wrap(9, &wrap(1, &p)));
        let h = ExportMetricsServiceRequest::decode(req.as_slice()).unwrap();
        let Some(Data::Histogram(h)) = &h.resource_metrics[0].scope_metrics[0].metrics[0].data else { panic!() };
        assert_eq!((&h.data_points[0].bucket_counts[..], h.data_points[0].sum), (&[1, 2, 9][..], Some(2.0)));
        assert_eq!(skim(M, &req).map(|s| s.items()), Some(1));
        read_only_as_prost_reads(M, req, false).unwrap();
    }
}
