//! The `metrics` table: one row per data point, every metric type in one table.

use super::ColumnarError;
use super::resource_scope::{self, Dict, Grouping, ResourceRow, ScopeRow, Start, dict_str};
use super::{
    AttrMapBuilder, AttrSizes, EncodedAttrs, TypesBuilder, append_attrs, append_codes, append_entries, attr_builders,
    column, decode_encoded, finish, read_encoded, tenant_column, timestamp_type, ts, unts,
};
use arrow::array::{
    Array, ArrayBuilder, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, StructArray, StructBuilder, TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{
    DataType, Field, Fields, Float64Type, Int32Type, Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type,
};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, exemplar,
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point, summary_data_point::ValueAtQuantile,
};

fn exemplar_fields() -> Fields {
    let (mut m, mut t) = attr_builders();
    Fields::from(vec![
        Field::new("time", timestamp_type(), false),
        Field::new("value_double", DataType::Float64, true),
        Field::new("value_int", DataType::Int64, true),
        Field::new("span_id", DataType::Binary, false),
        Field::new("trace_id", DataType::Binary, false),
        Field::new("filtered_attributes", ArrayBuilder::finish(&mut m).data_type().clone(), true),
        Field::new("filtered_attribute_types", ArrayBuilder::finish(&mut t).data_type().clone(), true),
    ])
}

fn exemplar_builder() -> StructBuilder {
    let (m, t) = attr_builders();
    StructBuilder::new(
        exemplar_fields(),
        vec![
            Box::new(TimestampNanosecondBuilder::new().with_data_type(timestamp_type())),
            Box::new(Float64Builder::new()),
            Box::new(Int64Builder::new()),
            Box::new(BinaryBuilder::new()),
            Box::new(BinaryBuilder::new()),
            Box::new(m),
            Box::new(t),
        ],
    )
}

fn quantile_builder(capacity: usize) -> StructBuilder {
    StructBuilder::new(
        Fields::from(vec![
            Field::new("quantile", DataType::Float64, false),
            Field::new("value", DataType::Float64, false),
        ]),
        vec![Box::new(Float64Builder::with_capacity(capacity)), Box::new(Float64Builder::with_capacity(capacity))],
    )
}

macro_rules! field {
    ($s:expr, $i:expr, $t:ty) => {
        $s.field_builder::<$t>($i).ok_or_else(|| ArrowError::SchemaError(format!("struct field {}", $i)))?
    };
}

/// A gauge or sum point's value, or an exemplar's.
#[derive(Clone, Copy, Debug)]
pub(super) enum Number {
    Double(f64),
    Int(i64),
}

impl Number {
    fn split(v: Option<Number>) -> (Option<f64>, Option<i64>) {
        match v {
            Some(Number::Double(d)) => (Some(d), None),
            Some(Number::Int(i)) => (None, Some(i)),
            None => (None, None),
        }
    }
}

/// What a metric's data is; its name is the `metric_type` column's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Sum => "sum",
            Kind::Histogram => "histogram",
            Kind::ExponentialHistogram => "exponential_histogram",
            Kind::Summary => "summary",
        }
    }
}

/// A histogram's (explicit or exponential) count, sum, min and max.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Stats {
    pub(super) count: u64,
    pub(super) sum: Option<f64>,
    pub(super) min: Option<f64>,
    pub(super) max: Option<f64>,
}

/// The values of a batch's points' lists, counted before they are appended (the skim of the
/// request's bytes, or the decoded request), so that the list builders are allocated once: grown by
/// doubling from Arrow's 1,024, they were reallocated, copied and faulted in several times a batch
/// (docs/BENCHMARKS.md, "the sort's keys packed").
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListSizes {
    explicit_bounds: usize,
    bucket_counts: usize,
    positive: usize,
    negative: usize,
    quantiles: usize,
}

impl ListSizes {
    /// Counts an explicit-bucket histogram point's bounds and counts.
    pub(super) fn histogram(&mut self, bounds: usize, counts: usize) {
        self.explicit_bounds += bounds;
        self.bucket_counts += counts;
    }

    /// Counts an exponential histogram point's positive and negative bucket counts.
    pub(super) fn exponential(&mut self, positive: usize, negative: usize) {
        self.positive += positive;
        self.negative += negative;
    }

    /// Counts a summary point's quantiles.
    pub(super) fn summary(&mut self, quantiles: usize) {
        self.quantiles += quantiles;
    }

    pub(crate) fn add_all(&mut self, other: &ListSizes) {
        self.explicit_bounds += other.explicit_bounds;
        self.bucket_counts += other.bucket_counts;
        self.positive += other.positive;
        self.negative += other.negative;
        self.quantiles += other.quantiles;
    }
}

/// An exponential histogram point's own values (its stats apart).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Exponential<'a> {
    pub(super) scale: i32,
    pub(super) zero_count: u64,
    pub(super) zero_threshold: f64,
    /// Offset and bucket counts, when the point has them.
    pub(super) positive: Option<(i32, &'a [u64])>,
    pub(super) negative: Option<(i32, &'a [u64])>,
}

/// The point-level builders. Each point appends `point`, its attributes (to `attrs` and `types`),
/// its exemplars (`exemplar`, then `end_exemplars`) and its kind's values (`number`, `histogram`,
/// `exponential`, `summary`); the columns other kinds have are null, appended a metric at a time
/// (`Columns::metric`). Held by `Columns`; shared by the decoded path and `metrics_wire`.
pub(super) struct Points {
    time: TimestampNanosecondBuilder,
    start_time: TimestampNanosecondBuilder,
    flags: UInt32Builder,
    pub(super) attrs: AttrMapBuilder,
    pub(super) types: TypesBuilder,
    value_double: Float64Builder,
    value_int: Int64Builder,
    count: UInt64Builder,
    sum: Float64Builder,
    min: Float64Builder,
    max: Float64Builder,
    explicit_bounds: ListBuilder<Float64Builder>,
    bucket_counts: ListBuilder<UInt64Builder>,
    scale: Int32Builder,
    zero_count: UInt64Builder,
    zero_threshold: Float64Builder,
    positive_offset: Int32Builder,
    positive_bucket_counts: ListBuilder<UInt64Builder>,
    negative_offset: Int32Builder,
    negative_bucket_counts: ListBuilder<UInt64Builder>,
    quantiles: ListBuilder<StructBuilder>,
    exemplars: ListBuilder<StructBuilder>,
}

/// An exponential histogram's positive or negative buckets (offset and counts), or nulls.
fn append_buckets(offset: &mut Int32Builder, counts: &mut ListBuilder<UInt64Builder>, b: Option<(i32, &[u64])>) {
    match b {
        Some((o, c)) => {
            offset.append_value(o);
            counts.values().append_slice(c);
            counts.append(true);
        }
        None => {
            offset.append_null();
            counts.append(false);
        }
    }
}

impl Points {
    /// Builders for the points `sizes` counted, the per-point columns allocated at their size (see
    /// `AttrSizes`), the lists' values at theirs (`lists`).
    fn new(sizes: &AttrSizes, lists: &ListSizes) -> Points {
        let n = sizes.rows();
        let counts = |values: usize| ListBuilder::with_capacity(UInt64Builder::with_capacity(values), n);
        let (attrs, types) = sizes.builders();
        Points {
            time: TimestampNanosecondBuilder::with_capacity(n).with_data_type(timestamp_type()),
            start_time: TimestampNanosecondBuilder::with_capacity(n).with_data_type(timestamp_type()),
            flags: UInt32Builder::with_capacity(n),
            attrs,
            types,
            value_double: Float64Builder::with_capacity(n),
            value_int: Int64Builder::with_capacity(n),
            count: UInt64Builder::with_capacity(n),
            sum: Float64Builder::with_capacity(n),
            min: Float64Builder::with_capacity(n),
            max: Float64Builder::with_capacity(n),
            explicit_bounds: ListBuilder::with_capacity(Float64Builder::with_capacity(lists.explicit_bounds), n),
            bucket_counts: counts(lists.bucket_counts),
            scale: Int32Builder::with_capacity(n),
            zero_count: UInt64Builder::with_capacity(n),
            zero_threshold: Float64Builder::with_capacity(n),
            positive_offset: Int32Builder::with_capacity(n),
            positive_bucket_counts: counts(lists.positive),
            negative_offset: Int32Builder::with_capacity(n),
            negative_bucket_counts: counts(lists.negative),
            quantiles: ListBuilder::with_capacity(quantile_builder(lists.quantiles), n),
            exemplars: ListBuilder::with_capacity(exemplar_builder(), n),
        }
    }

    /// Appends the times and flags every kind of point has.
    pub(super) fn point(&mut self, time: u64, start: u64, flags: u32) {
        self.time.append_value(ts(time));
        self.start_time.append_value(ts(start));
        self.flags.append_value(flags);
    }

    /// Appends one exemplar of the point being appended; `attrs` appends its filtered attributes'
    /// entries and returns their type codes.
    pub(super) fn exemplar<E: From<ArrowError>>(
        &mut self,
        time: u64,
        value: Option<Number>,
        span_id: &[u8],
        trace_id: &[u8],
        attrs: impl FnOnce(&mut AttrMapBuilder) -> Result<Vec<u8>, E>,
    ) -> Result<(), E> {
        let s = self.exemplars.values();
        field!(s, 0, TimestampNanosecondBuilder).append_value(ts(time));
        let (d, i) = Number::split(value);
        field!(s, 1, Float64Builder).append_option(d);
        field!(s, 2, Int64Builder).append_option(i);
        field!(s, 3, BinaryBuilder).append_value(span_id);
        field!(s, 4, BinaryBuilder).append_value(trace_id);
        let codes = attrs(field!(s, 5, AttrMapBuilder))?;
        append_codes(field!(s, 6, TypesBuilder), &codes);
        s.append(true);
        Ok(())
    }

    /// Closes the point's list of exemplars (empty for a summary point, which has none).
    pub(super) fn end_exemplars(&mut self) {
        self.exemplars.append(true);
    }

    /// A gauge or sum point's value.
    pub(super) fn number(&mut self, value: Option<Number>) {
        let (d, i) = Number::split(value);
        self.value_double.append_option(d);
        self.value_int.append_option(i);
    }

    /// An explicit-bucket histogram point's values.
    pub(super) fn histogram(&mut self, stats: Stats, explicit_bounds: &[f64], bucket_counts: &[u64]) {
        self.stats(stats);
        self.explicit_bounds.values().append_slice(explicit_bounds);
        self.explicit_bounds.append(true);
        self.bucket_counts.values().append_slice(bucket_counts);
        self.bucket_counts.append(true);
    }

    /// An exponential histogram point's values.
    pub(super) fn exponential(&mut self, stats: Stats, e: &Exponential<'_>) {
        self.stats(stats);
        self.scale.append_value(e.scale);
        self.zero_count.append_value(e.zero_count);
        self.zero_threshold.append_value(e.zero_threshold);
        append_buckets(&mut self.positive_offset, &mut self.positive_bucket_counts, e.positive);
        append_buckets(&mut self.negative_offset, &mut self.negative_bucket_counts, e.negative);
    }

    /// A summary point's values: count, sum and (quantile, value) pairs.
    pub(super) fn summary(
        &mut self,
        count: u64,
        sum: f64,
        quantiles: impl IntoIterator<Item = (f64, f64)>,
    ) -> Result<(), ArrowError> {
        self.count.append_value(count);
        self.sum.append_value(sum);
        let s = self.quantiles.values();
        for (quantile, value) in quantiles {
            field!(s, 0, Float64Builder).append_value(quantile);
            field!(s, 1, Float64Builder).append_value(value);
            s.append(true);
        }
        self.quantiles.append(true);
        Ok(())
    }

    fn stats(&mut self, s: Stats) {
        self.count.append_value(s.count);
        self.sum.append_option(s.sum);
        self.min.append_option(s.min);
        self.max.append_option(s.max);
    }

    /// After a metric's `n` points of `kind`: the columns its kind does not have, null.
    fn end_metric(&mut self, kind: Kind, n: usize) {
        match kind {
            Kind::Gauge | Kind::Sum => {
                self.null_counts(n);
                self.null_min_max(n);
                self.null_explicit(n);
                self.null_exponential(n);
                self.quantiles.append_nulls(n);
            }
            Kind::Histogram => {
                self.null_values(n);
                self.null_exponential(n);
                self.quantiles.append_nulls(n);
            }
            Kind::ExponentialHistogram => {
                self.null_values(n);
                self.null_explicit(n);
                self.quantiles.append_nulls(n);
            }
            Kind::Summary => {
                self.null_values(n);
                self.null_min_max(n);
                self.null_explicit(n);
                self.null_exponential(n);
            }
        }
    }

    fn null_values(&mut self, n: usize) {
        self.value_double.append_nulls(n);
        self.value_int.append_nulls(n);
    }

    fn null_counts(&mut self, n: usize) {
        self.count.append_nulls(n);
        self.sum.append_nulls(n);
    }

    fn null_min_max(&mut self, n: usize) {
        self.min.append_nulls(n);
        self.max.append_nulls(n);
    }

    fn null_explicit(&mut self, n: usize) {
        self.explicit_bounds.append_nulls(n);
        self.bucket_counts.append_nulls(n);
    }

    fn null_exponential(&mut self, n: usize) {
        self.scale.append_nulls(n);
        self.zero_count.append_nulls(n);
        self.zero_threshold.append_nulls(n);
        self.positive_offset.append_nulls(n);
        self.positive_bucket_counts.append_nulls(n);
        self.negative_offset.append_nulls(n);
        self.negative_bucket_counts.append_nulls(n);
    }

    fn columns(self) -> Vec<(&'static str, Box<dyn ArrayBuilder>, bool)> {
        vec![
            ("time", Box::new(self.time), false),
            ("start_time", Box::new(self.start_time), false),
            ("flags", Box::new(self.flags), false),
            ("attributes", Box::new(self.attrs), false),
            ("attribute_types", Box::new(self.types), false),
            ("value_double", Box::new(self.value_double), true),
            ("value_int", Box::new(self.value_int), true),
            ("count", Box::new(self.count), true),
            ("sum", Box::new(self.sum), true),
            ("min", Box::new(self.min), true),
            ("max", Box::new(self.max), true),
            ("explicit_bounds", Box::new(self.explicit_bounds), true),
            ("bucket_counts", Box::new(self.bucket_counts), true),
            ("scale", Box::new(self.scale), true),
            ("zero_count", Box::new(self.zero_count), true),
            ("zero_threshold", Box::new(self.zero_threshold), true),
            ("positive_offset", Box::new(self.positive_offset), true),
            ("positive_bucket_counts", Box::new(self.positive_bucket_counts), true),
            ("negative_offset", Box::new(self.negative_offset), true),
            ("negative_bucket_counts", Box::new(self.negative_bucket_counts), true),
            ("quantiles", Box::new(self.quantiles), true),
            ("exemplars", Box::new(self.exemplars), false),
        ]
    }
}

/// A metric's values but its metadata and points, borrowed from where they are held.
pub(super) struct MetricScalars<'a> {
    pub(super) name: &'a str,
    pub(super) description: &'a str,
    pub(super) unit: &'a str,
    pub(super) kind: Kind,
    /// Sums and histograms have one.
    pub(super) temporality: Option<i32>,
    /// Sums have one.
    pub(super) monotonic: Option<bool>,
}

/// The builders of the metrics table's own columns (the resource and scope ones are
/// `resource_scope::Builders`): a metric's points append theirs to `points`, then `metric` appends
/// the metric's own columns once per point.
pub(super) struct Columns {
    n: usize,
    name: Dict,
    description: StringBuilder,
    unit: Dict,
    meta: AttrMapBuilder,
    meta_types: TypesBuilder,
    kind: Dict,
    temporality: Int32Builder,
    monotonic: BooleanBuilder,
    pub(super) points: Points,
}

impl Columns {
    /// Builders with room for the points and attributes `sizes` counted, the metrics' descriptions
    /// once per point (`description_bytes`) and the points' lists' values (`lists`).
    pub(super) fn new(sizes: &AttrSizes, description_bytes: usize, lists: &ListSizes) -> Columns {
        let n = sizes.rows();
        let (meta, meta_types) = attr_builders();
        Columns {
            n,
            name: Dict::new(),
            description: StringBuilder::with_capacity(n, description_bytes),
            unit: Dict::new(),
            meta,
            meta_types,
            kind: Dict::new(),
            temporality: Int32Builder::with_capacity(n),
            monotonic: BooleanBuilder::with_capacity(n),
            points: Points::new(sizes, lists),
        }
    }

    /// After a metric's `len` points were appended: the columns their kind does not have, null, and
    /// the metric's own columns, looked up (dictionaries) once per metric, not per point; `metadata`
    /// appends the metric's metadata as one row's attributes, called once per point.
    pub(super) fn metric<E: From<ArrowError>>(
        &mut self,
        m: &MetricScalars<'_>,
        len: usize,
        mut metadata: impl FnMut(&mut AttrMapBuilder, &mut TypesBuilder) -> Result<(), E>,
    ) -> Result<(), E> {
        self.points.end_metric(m.kind, len);
        self.name.append_values(m.name, len);
        self.description.append_value_n(m.description, len);
        self.unit.append_values(m.unit, len);
        for _ in 0..len {
            metadata(&mut self.meta, &mut self.meta_types)?;
        }
        self.kind.append_values(m.kind.name(), len);
        match m.temporality {
            Some(t) => self.temporality.append_value_n(t, len),
            None => self.temporality.append_nulls(len),
        }
        match m.monotonic {
            Some(b) => self.monotonic.append_n(len, b),
            None => self.monotonic.append_nulls(len),
        }
        Ok(())
    }

    pub(super) fn finish(
        self,
        tenant: &str,
        rs_cols: resource_scope::Builders,
        grouped: bool,
    ) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<(&str, Box<dyn ArrayBuilder>, bool)> = vec![
            ("tenant", Box::new(tenant_column(tenant, self.n)), false),
            ("metric_name", Box::new(self.name), false),
            ("metric_description", Box::new(self.description), false),
            ("metric_unit", Box::new(self.unit), false),
            ("metric_metadata", Box::new(self.meta), false),
            ("metric_metadata_types", Box::new(self.meta_types), false),
            ("metric_type", Box::new(self.kind), false),
            ("temporality", Box::new(self.temporality), true),
            ("is_monotonic", Box::new(self.monotonic), true),
        ];
        columns.extend(self.points.columns());
        finish(columns, rs_cols.columns(grouped)?)
    }
}

/// One row per data point of a metrics request, all for `tenant`, held as [`super::to_grouped_record_batch`] says.
pub fn to_grouped_record_batch(tenant: &str, req: &ExportMetricsServiceRequest) -> Result<RecordBatch, ArrowError> {
    rows(tenant, req, true)
}

/// Appends a decoded point's times, flags, attributes and exemplars.
fn common(
    p: &mut Points,
    (time, start, flags): (u64, u64, u32),
    attrs: &[KeyValue],
    exemplars: &[Exemplar],
) -> Result<(), ArrowError> {
    p.point(time, start, flags);
    append_attrs(&mut p.attrs, &mut p.types, Some(attrs))?;
    for e in exemplars {
        let value = e.value.map(|v| match v {
            exemplar::Value::AsDouble(d) => Number::Double(d),
            exemplar::Value::AsInt(i) => Number::Int(i),
        });
        p.exemplar(e.time_unix_nano, value, &e.span_id, &e.trace_id, |m| append_entries(m, &e.filtered_attributes))?;
    }
    p.end_exemplars();
    Ok(())
}

fn buckets(b: Option<&Buckets>) -> Option<(i32, &[u64])> {
    b.map(|b| (b.offset, &b.bucket_counts[..]))
}

/// Appends a decoded metric's points; its kind, temporality and monotonicity.
fn append_points(p: &mut Points, data: &Data) -> Result<(Kind, Option<i32>, Option<bool>), ArrowError> {
    Ok(match data {
        Data::Gauge(Gauge { data_points }) | Data::Sum(Sum { data_points, .. }) => {
            for x in data_points {
                common(p, (x.time_unix_nano, x.start_time_unix_nano, x.flags), &x.attributes, &x.exemplars)?;
                p.number(x.value.map(|v| match v {
                    number_data_point::Value::AsDouble(d) => Number::Double(d),
                    number_data_point::Value::AsInt(i) => Number::Int(i),
                }));
            }
            match data {
                Data::Sum(s) => (Kind::Sum, Some(s.aggregation_temporality), Some(s.is_monotonic)),
                _ => (Kind::Gauge, None, None),
            }
        }
        Data::Histogram(h) => {
            for x in &h.data_points {
                common(p, (x.time_unix_nano, x.start_time_unix_nano, x.flags), &x.attributes, &x.exemplars)?;
                let stats = Stats { count: x.count, sum: x.sum, min: x.min, max: x.max };
                p.histogram(stats, &x.explicit_bounds, &x.bucket_counts);
            }
            (Kind::Histogram, Some(h.aggregation_temporality), None)
        }
        Data::ExponentialHistogram(h) => {
            for x in &h.data_points {
                common(p, (x.time_unix_nano, x.start_time_unix_nano, x.flags), &x.attributes, &x.exemplars)?;
                let stats = Stats { count: x.count, sum: x.sum, min: x.min, max: x.max };
                let e = Exponential {
                    scale: x.scale,
                    zero_count: x.zero_count,
                    zero_threshold: x.zero_threshold,
                    positive: buckets(x.positive.as_ref()),
                    negative: buckets(x.negative.as_ref()),
                };
                p.exponential(stats, &e);
            }
            (Kind::ExponentialHistogram, Some(h.aggregation_temporality), None)
        }
        Data::Summary(s) => {
            for x in &s.data_points {
                common(p, (x.time_unix_nano, x.start_time_unix_nano, x.flags), &x.attributes, &[])?;
                p.summary(x.count, x.sum, x.quantile_values.iter().map(|q| (q.quantile, q.value)))?;
            }
            (Kind::Summary, None, None)
        }
    })
}

/// What `req`'s builders are allocated by (see `AttrSizes`): the points' attributes, each metric's
/// description once per point, and the points' lists' values.
pub(super) fn sizes_of(req: &ExportMetricsServiceRequest) -> (AttrSizes, usize, ListSizes) {
    let mut sizes = AttrSizes::default();
    let mut description_bytes = 0;
    let mut lists = ListSizes::default();
    for m in req.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics) {
        let before = sizes.rows();
        match &m.data {
            Some(Data::Gauge(g)) => g.data_points.iter().for_each(|p| sizes.add(&p.attributes)),
            Some(Data::Sum(x)) => x.data_points.iter().for_each(|p| sizes.add(&p.attributes)),
            Some(Data::Histogram(h)) => h.data_points.iter().for_each(|p| {
                sizes.add(&p.attributes);
                lists.histogram(p.explicit_bounds.len(), p.bucket_counts.len());
            }),
            Some(Data::ExponentialHistogram(h)) => h.data_points.iter().for_each(|p| {
                sizes.add(&p.attributes);
                let len = |b: &Option<Buckets>| b.as_ref().map_or(0, |b| b.bucket_counts.len());
                lists.exponential(len(&p.positive), len(&p.negative));
            }),
            Some(Data::Summary(x)) => x.data_points.iter().for_each(|p| {
                sizes.add(&p.attributes);
                lists.summary(p.quantile_values.len());
            }),
            None => {}
        }
        description_bytes += (sizes.rows() - before) * m.description.len();
    }
    (sizes, description_bytes, lists)
}

/// One row per item of `req`; `grouped`: held as [`super::to_grouped_record_batch`] says, else the
/// table's rows.
pub(super) fn rows(tenant: &str, req: &ExportMetricsServiceRequest, grouped: bool) -> Result<RecordBatch, ArrowError> {
    let (sizes, description_bytes, lists) = sizes_of(req);
    let mut c = Columns::new(&sizes, description_bytes, &lists);
    let mut rs_cols = resource_scope::Builders::new();
    for rm in &req.resource_metrics {
        let res = ResourceRow::new(rm.resource.as_ref(), &rm.schema_url);
        for sm in &rm.scope_metrics {
            let items = sm.metrics.iter().map(|m| crate::batch::metric_point_count(m.data.as_ref())).sum();
            rs_cols.append_rows(&res, &ScopeRow::new(sm.scope.as_ref(), &sm.schema_url), items)?;
            for m in &sm.metrics {
                // A metric without data or points has no rows (and puts no value in the dictionaries).
                let len = crate::batch::metric_point_count(m.data.as_ref());
                let Some(data) = m.data.as_ref().filter(|_| len > 0) else { continue };
                let (kind, temporality, monotonic) = append_points(&mut c.points, data)?;
                let scalars = MetricScalars {
                    name: &m.name,
                    description: &m.description,
                    unit: &m.unit,
                    kind,
                    temporality,
                    monotonic,
                };
                c.metric(&scalars, len, |meta, types| append_attrs(meta, types, Some(&m.metadata)))?;
            }
        }
    }
    c.finish(tenant, rs_cols, grouped)
}

/// What identifies a metric: adjacent rows with equal keys are points of one metric.
#[derive(PartialEq)]
struct MetricKey {
    name: String,
    description: String,
    unit: String,
    metadata: Option<EncodedAttrs>,
    kind: String,
    temporality: Option<i32>,
    monotonic: Option<bool>,
}

fn list_f64(a: &ArrayRef, row: usize) -> Option<Vec<f64>> {
    let l = a.as_list::<i32>();
    (!l.is_null(row)).then(|| l.value(row).as_primitive::<Float64Type>().values().to_vec())
}

fn list_u64(a: &ArrayRef, row: usize) -> Option<Vec<u64>> {
    let l = a.as_list::<i32>();
    (!l.is_null(row)).then(|| l.value(row).as_primitive::<UInt64Type>().values().to_vec())
}

fn exemplars_of(s: &StructArray) -> Result<Vec<Exemplar>, ColumnarError> {
    let time = s.column(0).as_primitive::<TimestampNanosecondType>();
    let d = s.column(1).as_primitive::<Float64Type>();
    let i = s.column(2).as_primitive::<Int64Type>();
    let span = s.column(3).as_binary::<i32>();
    let trace = s.column(4).as_binary::<i32>();
    (0..s.len())
        .map(|k| {
            let enc = read_encoded(s.column(5).as_map(), s.column(6).as_list::<i32>(), k).unwrap_or_default();
            Ok(Exemplar {
                filtered_attributes: decode_encoded(&enc)?,
                time_unix_nano: unts(time.value(k)),
                span_id: span.value(k).to_vec(),
                trace_id: trace.value(k).to_vec(),
                value: if !d.is_null(k) {
                    Some(exemplar::Value::AsDouble(d.value(k)))
                } else if !i.is_null(k) {
                    Some(exemplar::Value::AsInt(i.value(k)))
                } else {
                    None
                },
            })
        })
        .collect()
}

/// Rebuilds the metrics request from rows: adjacent rows with the same resource, scope and metric
/// share them.
pub fn from_record_batch(batch: &RecordBatch) -> Result<ExportMetricsServiceRequest, ColumnarError> {
    let c = |n: &str| column(batch, n);
    let (name, description, unit, kind) =
        (c("metric_name")?, c("metric_description")?.as_string::<i32>(), c("metric_unit")?, c("metric_type")?);
    let (meta, meta_types) = (c("metric_metadata")?.as_map(), c("metric_metadata_types")?.as_list::<i32>());
    let temporality = c("temporality")?.as_primitive::<Int32Type>();
    let monotonic = c("is_monotonic")?.as_boolean();
    let time = c("time")?.as_primitive::<TimestampNanosecondType>();
    let start = c("start_time")?.as_primitive::<TimestampNanosecondType>();
    let flags = c("flags")?.as_primitive::<UInt32Type>();
    let (attrs, types) = (c("attributes")?.as_map(), c("attribute_types")?.as_list::<i32>());
    let vd = c("value_double")?.as_primitive::<Float64Type>();
    let vi = c("value_int")?.as_primitive::<Int64Type>();
    let count = c("count")?.as_primitive::<UInt64Type>();
    let (sum, min, max) = (
        c("sum")?.as_primitive::<Float64Type>(),
        c("min")?.as_primitive::<Float64Type>(),
        c("max")?.as_primitive::<Float64Type>(),
    );
    let (bounds, buckets) = (c("explicit_bounds")?, c("bucket_counts")?);
    let scale = c("scale")?.as_primitive::<Int32Type>();
    let zero_count = c("zero_count")?.as_primitive::<UInt64Type>();
    let zero_threshold = c("zero_threshold")?.as_primitive::<Float64Type>();
    let (pos_off, pos_b) = (c("positive_offset")?.as_primitive::<Int32Type>(), c("positive_bucket_counts")?);
    let (neg_off, neg_b) = (c("negative_offset")?.as_primitive::<Int32Type>(), c("negative_bucket_counts")?);
    let quantiles = c("quantiles")?.as_list::<i32>();
    let exemplars = c("exemplars")?.as_list::<i32>();
    let rs_read = resource_scope::Reader::new(batch)?;
    let opt_f = |a: &arrow::array::PrimitiveArray<Float64Type>, r: usize| (!a.is_null(r)).then(|| a.value(r));

    let mut out = ExportMetricsServiceRequest::default();
    let mut grouping = Grouping::new();
    let mut last_metric: Option<MetricKey> = None;
    for row in 0..batch.num_rows() {
        let (rk, sk) = rs_read.keys(row)?;
        let start_group = match grouping.next(rk, sk) {
            Start::Nothing => false,
            Start::Resource(rk, sk) => {
                out.resource_metrics.push(ResourceMetrics {
                    resource: rk.resource()?,
                    scope_metrics: vec![ScopeMetrics {
                        scope: sk.scope()?,
                        metrics: Vec::new(),
                        schema_url: sk.schema_url(),
                    }],
                    schema_url: rk.schema_url(),
                });
                true
            }
            Start::Scope(sk) => {
                let rm = out.resource_metrics.last_mut().ok_or("internal: no resource group")?;
                rm.scope_metrics.push(ScopeMetrics {
                    scope: sk.scope()?,
                    metrics: Vec::new(),
                    schema_url: sk.schema_url(),
                });
                true
            }
        };
        let mk = MetricKey {
            name: dict_str(name, row)?.unwrap_or_default(),
            description: description.value(row).to_string(),
            unit: dict_str(unit, row)?.unwrap_or_default(),
            metadata: read_encoded(meta, meta_types, row),
            kind: dict_str(kind, row)?.unwrap_or_default(),
            temporality: (!temporality.is_null(row)).then(|| temporality.value(row)),
            monotonic: (!monotonic.is_null(row)).then(|| monotonic.value(row)),
        };
        let sm = out
            .resource_metrics
            .last_mut()
            .and_then(|r| r.scope_metrics.last_mut())
            .ok_or("internal: no scope group")?;
        if start_group || last_metric.as_ref() != Some(&mk) {
            let data = match mk.kind.as_str() {
                "gauge" => Data::Gauge(Gauge::default()),
                "sum" => Data::Sum(Sum {
                    aggregation_temporality: mk.temporality.unwrap_or(0),
                    is_monotonic: mk.monotonic.unwrap_or(false),
                    ..Default::default()
                }),
                "histogram" => Data::Histogram(Histogram {
                    aggregation_temporality: mk.temporality.unwrap_or(0),
                    ..Default::default()
                }),
                "exponential_histogram" => Data::ExponentialHistogram(ExponentialHistogram {
                    aggregation_temporality: mk.temporality.unwrap_or(0),
                    ..Default::default()
                }),
                "summary" => Data::Summary(Summary::default()),
                other => return Err(format!("unknown metric_type {other:?}").into()),
            };
            sm.metrics.push(Metric {
                name: mk.name.clone(),
                description: mk.description.clone(),
                unit: mk.unit.clone(),
                metadata: decode_encoded(mk.metadata.as_ref().ok_or("metric_metadata is null")?)?,
                data: Some(data),
            });
        }
        let attributes = decode_encoded(&read_encoded(attrs, types, row).unwrap_or_default())?;
        let ex = exemplars.value(row);
        let metric = sm.metrics.last_mut().ok_or("internal: no metric")?;
        let (t, s0, f) = (unts(time.value(row)), unts(start.value(row)), flags.value(row));
        match metric.data.as_mut() {
            Some(Data::Gauge(Gauge { data_points })) | Some(Data::Sum(Sum { data_points, .. })) => {
                data_points.push(NumberDataPoint {
                    attributes,
                    start_time_unix_nano: s0,
                    time_unix_nano: t,
                    exemplars: exemplars_of(ex.as_struct())?,
                    flags: f,
                    value: if !vd.is_null(row) {
                        Some(number_data_point::Value::AsDouble(vd.value(row)))
                    } else if !vi.is_null(row) {
                        Some(number_data_point::Value::AsInt(vi.value(row)))
                    } else {
                        None
                    },
                })
            }
            Some(Data::Histogram(h)) => h.data_points.push(HistogramDataPoint {
                attributes,
                start_time_unix_nano: s0,
                time_unix_nano: t,
                count: count.value(row),
                sum: opt_f(sum, row),
                bucket_counts: list_u64(buckets, row).unwrap_or_default(),
                explicit_bounds: list_f64(bounds, row).unwrap_or_default(),
                exemplars: exemplars_of(ex.as_struct())?,
                flags: f,
                min: opt_f(min, row),
                max: opt_f(max, row),
            }),
            Some(Data::ExponentialHistogram(h)) => {
                let buckets_of = |off: &arrow::array::PrimitiveArray<Int32Type>, b: &ArrayRef| {
                    (!off.is_null(row)).then(|| Buckets {
                        offset: off.value(row),
                        bucket_counts: list_u64(b, row).unwrap_or_default(),
                    })
                };
                h.data_points.push(ExponentialHistogramDataPoint {
                    attributes,
                    start_time_unix_nano: s0,
                    time_unix_nano: t,
                    count: count.value(row),
                    sum: opt_f(sum, row),
                    scale: scale.value(row),
                    zero_count: zero_count.value(row),
                    positive: buckets_of(pos_off, pos_b),
                    negative: buckets_of(neg_off, neg_b),
                    flags: f,
                    exemplars: exemplars_of(ex.as_struct())?,
                    min: opt_f(min, row),
                    max: opt_f(max, row),
                    zero_threshold: zero_threshold.value(row),
                })
            }
            Some(Data::Summary(s)) => {
                let q = quantiles.value(row);
                let q = q.as_struct();
                let (qq, qv) = (q.column(0).as_primitive::<Float64Type>(), q.column(1).as_primitive::<Float64Type>());
                s.data_points.push(SummaryDataPoint {
                    attributes,
                    start_time_unix_nano: s0,
                    time_unix_nano: t,
                    count: count.value(row),
                    sum: sum.value(row),
                    quantile_values: (0..q.len())
                        .map(|k| ValueAtQuantile { quantile: qq.value(k), value: qv.value(k) })
                        .collect(),
                    flags: f,
                })
            }
            None => return Err("internal: metric without data".into()),
        }
        last_metric = Some(mk);
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::attributes::strategies::attributes;
    use crate::columnar::test_support::{normalize, resource, scope};
    use proptest::prelude::*;
    use prost::Message;

    /// Any bit pattern: point values are stored as Arrow doubles, which keep every bit.
    fn bits() -> impl Strategy<Value = f64> {
        any::<u64>().prop_map(f64::from_bits)
    }

    fn exemplar() -> impl Strategy<Value = Exemplar> {
        (
            attributes(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..9),
            prop::collection::vec(any::<u8>(), 0..17),
            0..3u8,
            bits(),
            any::<i64>(),
        )
            .prop_map(|(filtered_attributes, time_unix_nano, span_id, trace_id, which, d, i)| Exemplar {
                filtered_attributes,
                time_unix_nano,
                span_id,
                trace_id,
                value: match which {
                    0 => None,
                    1 => Some(exemplar::Value::AsDouble(d)),
                    _ => Some(exemplar::Value::AsInt(i)),
                },
            })
    }

    type Common = (Vec<KeyValue>, u64, u64, u32, Vec<Exemplar>);

    fn common() -> impl Strategy<Value = Common> {
        (attributes(), any::<u64>(), any::<u64>(), any::<u32>(), prop::collection::vec(exemplar(), 0..2))
    }

    fn number_point() -> impl Strategy<Value = NumberDataPoint> {
        (common(), 0..3u8, bits(), any::<i64>()).prop_map(
            |((attributes, start, time, flags, exemplars), which, d, i)| NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                exemplars,
                flags,
                value: match which {
                    0 => None,
                    1 => Some(number_data_point::Value::AsDouble(d)),
                    _ => Some(number_data_point::Value::AsInt(i)),
                },
            },
        )
    }

    fn histogram_point() -> impl Strategy<Value = HistogramDataPoint> {
        (
            common(),
            any::<u64>(),
            prop::option::of(bits()),
            prop::collection::vec(any::<u64>(), 0..4),
            prop::collection::vec(bits(), 0..3),
            prop::option::of(bits()),
            prop::option::of(bits()),
        )
            .prop_map(
                |(
                    (attributes, start, time, flags, exemplars),
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    min,
                    max,
                )| HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: start,
                    time_unix_nano: time,
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    exemplars,
                    flags,
                    min,
                    max,
                },
            )
    }

    fn buckets() -> impl Strategy<Value = Option<Buckets>> {
        prop::option::of(
            (any::<i32>(), prop::collection::vec(any::<u64>(), 0..4))
                .prop_map(|(offset, bucket_counts)| Buckets { offset, bucket_counts }),
        )
    }

    fn exponential_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
        (
            common(),
            (any::<u64>(), prop::option::of(bits()), any::<i32>(), any::<u64>()),
            (buckets(), buckets(), prop::option::of(bits()), prop::option::of(bits()), bits()),
        )
            .prop_map(
                |(
                    (attributes, start, time, flags, exemplars),
                    (count, sum, scale, zero_count),
                    (positive, negative, min, max, zero_threshold),
                )| {
                    ExponentialHistogramDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: time,
                        count,
                        sum,
                        scale,
                        zero_count,
                        positive,
                        negative,
                        flags,
                        exemplars,
                        min,
                        max,
                        zero_threshold,
                    }
                },
            )
    }

    fn summary_point() -> impl Strategy<Value = SummaryDataPoint> {
        (common(), any::<u64>(), bits(), prop::collection::vec((bits(), bits()), 0..3)).prop_map(
            |((attributes, start, time, flags, _), count, sum, qs)| SummaryDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                count,
                sum,
                quantile_values: qs.into_iter().map(|(quantile, value)| ValueAtQuantile { quantile, value }).collect(),
                flags,
            },
        )
    }

    fn pts<S: Strategy>(s: S) -> impl Strategy<Value = Vec<S::Value>> {
        prop::collection::vec(s, 0..3)
    }

    fn data() -> impl Strategy<Value = Option<Data>> {
        prop_oneof![
            Just(None),
            pts(number_point()).prop_map(|data_points| Some(Data::Gauge(Gauge { data_points }))),
            (pts(number_point()), any::<i32>(), any::<bool>()).prop_map(
                |(data_points, aggregation_temporality, is_monotonic)| {
                    Some(Data::Sum(Sum { data_points, aggregation_temporality, is_monotonic }))
                }
            ),
            (pts(histogram_point()), any::<i32>()).prop_map(|(data_points, aggregation_temporality)| Some(
                Data::Histogram(Histogram { data_points, aggregation_temporality })
            )),
            (pts(exponential_point()), any::<i32>()).prop_map(|(data_points, aggregation_temporality)| {
                Some(Data::ExponentialHistogram(ExponentialHistogram { data_points, aggregation_temporality }))
            }),
            pts(summary_point()).prop_map(|data_points| Some(Data::Summary(Summary { data_points }))),
        ]
    }

    fn metric() -> impl Strategy<Value = Metric> {
        ("[a-z.]{0,6}", ".{0,4}", "[a-zA-Z]{0,3}", attributes(), data())
            .prop_map(|(name, description, unit, metadata, data)| Metric { name, description, unit, metadata, data })
    }

    pub(in crate::columnar) fn request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
        let scope_metrics = (scope(), prop::collection::vec(metric(), 0..4), "[a-z:/]{0,6}")
            .prop_map(|(scope, metrics, schema_url)| ScopeMetrics { scope, metrics, schema_url });
        let resource_metrics = (resource(), prop::collection::vec(scope_metrics, 0..3), "[a-z:/]{0,6}")
            .prop_map(|(resource, scope_metrics, schema_url)| ResourceMetrics { resource, scope_metrics, schema_url });
        prop::collection::vec(resource_metrics, 0..3)
            .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
    }

    fn points(m: &Metric) -> usize {
        crate::batch::metric_point_count(m.data.as_ref())
    }

    /// A metric without its points, for comparing identities exactly.
    fn identity(m: &Metric) -> Vec<u8> {
        let mut shell = m.clone();
        shell.data = match &m.data {
            Some(Data::Gauge(_)) => Some(Data::Gauge(Gauge::default())),
            Some(Data::Sum(s)) => Some(Data::Sum(Sum { data_points: vec![], ..s.clone() })),
            Some(Data::Histogram(h)) => Some(Data::Histogram(Histogram { data_points: vec![], ..h.clone() })),
            Some(Data::ExponentialHistogram(h)) => {
                Some(Data::ExponentialHistogram(ExponentialHistogram { data_points: vec![], ..h.clone() }))
            }
            Some(Data::Summary(_)) => Some(Data::Summary(Summary::default())),
            None => None,
        };
        let mut bytes = shell.encode_to_vec();
        // Empty containers encode to nothing: tell the kinds apart explicitly.
        bytes.push(match &m.data {
            Some(Data::Gauge(_)) => 1,
            Some(Data::Sum(_)) => 2,
            Some(Data::Histogram(_)) => 3,
            Some(Data::ExponentialHistogram(_)) => 4,
            Some(Data::Summary(_)) => 5,
            None => 0,
        });
        bytes
    }

    fn merge_into(a: &mut Metric, b: Metric) {
        match (a.data.as_mut(), b.data) {
            (Some(Data::Gauge(x)), Some(Data::Gauge(y))) => x.data_points.extend(y.data_points),
            (Some(Data::Sum(x)), Some(Data::Sum(y))) => x.data_points.extend(y.data_points),
            (Some(Data::Histogram(x)), Some(Data::Histogram(y))) => x.data_points.extend(y.data_points),
            (Some(Data::ExponentialHistogram(x)), Some(Data::ExponentialHistogram(y))) => {
                x.data_points.extend(y.data_points)
            }
            (Some(Data::Summary(x)), Some(Data::Summary(y))) => x.data_points.extend(y.data_points),
            _ => unreachable!("identities matched"),
        }
    }

    /// What rows can carry: metrics with points only, no empty groups, adjacent identical resources,
    /// scopes and metrics merged.
    fn normalized(req: &ExportMetricsServiceRequest) -> ExportMetricsServiceRequest {
        let mut groups = req.resource_metrics.clone();
        for rm in &mut groups {
            for sm in &mut rm.scope_metrics {
                sm.metrics.retain(|m| points(m) > 0);
            }
        }
        let mut groups = normalize(
            groups,
            |r| (r.resource.as_ref().map(|x| x.encode_to_vec()), r.schema_url.clone()),
            |r| &mut r.scope_metrics,
            |s| (s.scope.as_ref().map(|x| x.encode_to_vec()), s.schema_url.clone()),
            |s| &mut s.metrics,
        );
        for rm in &mut groups {
            for sm in &mut rm.scope_metrics {
                let mut merged: Vec<Metric> = Vec::new();
                for m in std::mem::take(&mut sm.metrics) {
                    match merged.last_mut() {
                        Some(last) if identity(last) == identity(&m) => merge_into(last, m),
                        _ => merged.push(m),
                    }
                }
                sm.metrics = merged;
            }
        }
        ExportMetricsServiceRequest { resource_metrics: groups }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn otlp_to_arrow_to_otlp_is_lossless(req in request()) {
            let batch = rows("t1", &req, false).unwrap();
            // Held once per scope group, the rows are the same once expanded.
            prop_assert_eq!(&super::super::expand_groups(&to_grouped_record_batch("t1", &req).unwrap()).unwrap(), &batch);
            let n: usize = req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics).map(points).sum();
            prop_assert_eq!(batch.num_rows(), n);
            let back = from_record_batch(&batch).unwrap();
            prop_assert_eq!(back.encode_to_vec(), normalized(&req).encode_to_vec());
        }
    }
}
