//! Reading an OTLP request's protobuf encoding in place, for the conversion straight from a request's
//! bytes to Arrow rows (see `spans_wire`, `logs_wire`, `metrics_wire`): no message is decoded into
//! owned structs, no string copied but into the builders.
//!
//! The direct path reads only what it reads exactly as prost would, and says [`Stop::Unusual`] for
//! anything else: an unknown field, a field of the wrong wire type, a group, a singular message given
//! twice (which prost merges), a nested array or key-value list (whose nesting prost bounds), invalid
//! UTF-8, a truncated field. Such a request is decoded by prost instead, which accepts or refuses it
//! as before; so a request the direct path accepts is one prost decodes, to the same rows.

use super::AttrSizes;
use super::resource_scope::{self, ResourceRow, ScopeRow};
use crate::attributes::{AttrType, write_value};
use arrow::array::StringBuilder;
use arrow::error::ArrowError;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint};

/// Why the direct path stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The request holds something the direct path does not read (see the module's doc): prost must.
    Unusual,
    Arrow(ArrowError),
}

impl From<ArrowError> for Stop {
    fn from(e: ArrowError) -> Stop {
        Stop::Arrow(e)
    }
}

/// For rows decoded by prost, whose appends share the direct path's (`resource_scope::Builders`): only
/// values read in place can be `Unusual`, which such rows never hold.
impl From<Stop> for ArrowError {
    fn from(s: Stop) -> ArrowError {
        match s {
            Stop::Arrow(e) => e,
            Stop::Unusual => ArrowError::InvalidArgumentError("an attribute read in place could not be decoded".into()),
        }
    }
}

/// One field's value, as its wire type carries it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

/// The fields of one message, in order.
pub(crate) struct Fields<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), Stop>;

    // Inlined: every field of every item passes here, twice (the skim, then the build); as a call it
    // was 11 % of the daemon's samples storing spans, most of it passing the result through memory.
    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    #[inline(always)]
    fn field(&mut self) -> Result<(u32, Value<'a>), Stop> {
        let buf = &mut self.0;
        let (tag, wire) = decode_key(buf).map_err(|_| Stop::Unusual)?;
        let value = match wire {
            WireType::Varint => Value::Varint(decode_varint(buf).map_err(|_| Stop::Unusual)?),
            WireType::SixtyFourBit => {
                let (v, rest) = buf.split_first_chunk::<8>().ok_or(Stop::Unusual)?;
                *buf = rest;
                Value::Fixed64(u64::from_le_bytes(*v))
            }
            WireType::ThirtyTwoBit => {
                let (v, rest) = buf.split_first_chunk::<4>().ok_or(Stop::Unusual)?;
                *buf = rest;
                Value::Fixed32(u32::from_le_bytes(*v))
            }
            WireType::LengthDelimited => {
                let len = decode_varint(buf).map_err(|_| Stop::Unusual)?;
                let len = usize::try_from(len).map_err(|_| Stop::Unusual)?;
                if len > buf.len() {
                    return Err(Stop::Unusual);
                }
                let (v, rest) = buf.split_at(len);
                *buf = rest;
                Value::Len(v)
            }
            WireType::StartGroup | WireType::EndGroup => return Err(Stop::Unusual),
        };
        Ok((tag, value))
    }
}

impl<'a> Value<'a> {
    pub(crate) fn bytes(self) -> Result<&'a [u8], Stop> {
        match self {
            Value::Len(b) => Ok(b),
            _ => Err(Stop::Unusual),
        }
    }

    pub(crate) fn str(self) -> Result<&'a str, Stop> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Stop::Unusual)
    }

    pub(crate) fn varint(self) -> Result<u64, Stop> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(Stop::Unusual),
        }
    }

    /// An `int32` or enum field: prost keeps the low 32 bits.
    pub(crate) fn int32(self) -> Result<i32, Stop> {
        Ok(self.varint()? as i32)
    }

    pub(crate) fn uint32(self) -> Result<u32, Stop> {
        Ok(self.varint()? as u32)
    }

    pub(crate) fn fixed64(self) -> Result<u64, Stop> {
        match self {
            Value::Fixed64(v) => Ok(v),
            _ => Err(Stop::Unusual),
        }
    }

    pub(crate) fn fixed32(self) -> Result<u32, Stop> {
        match self {
            Value::Fixed32(v) => Ok(v),
            _ => Err(Stop::Unusual),
        }
    }
}

/// A singular message field's bytes: given twice, prost merges the two, which the direct path
/// leaves to it.
pub(crate) fn once<'a>(slot: &mut Option<&'a [u8]>, v: Value<'a>) -> Result<(), Stop> {
    match slot.replace(v.bytes()?) {
        None => Ok(()),
        Some(_) => Err(Stop::Unusual),
    }
}

/// What [`walk`] hands on: the bytes of each item, in order.
pub(crate) trait Sink<'a> {
    /// Reads one item (a span, a log record, a metric) and says how many rows it makes (a metric
    /// makes one per point).
    fn item(&mut self, bytes: &'a [u8]) -> Result<usize, Stop>;
}

/// Walks an `ExportTraceServiceRequest`, `ExportLogsServiceRequest` or `ExportMetricsServiceRequest`,
/// which nest alike: resource groups (field 1) of `{1: resource, 2: scope groups, 3: schema_url}`,
/// scope groups of `{1: scope, 2: items, 3: schema_url}`. Each scope group's items are handed to
/// `sink`, then its resource and scope (read in place, else decoded by prost: one of each per group)
/// appended to `groups`, when given, once per row the items made.
pub(crate) fn walk<'a>(
    buf: &'a [u8],
    sink: &mut impl Sink<'a>,
    mut groups: Option<&mut resource_scope::Builders>,
) -> Result<(), Stop> {
    for f in Fields(buf) {
        match f? {
            (1, v) => resource_group(v.bytes()?, sink, groups.as_deref_mut())?,
            _ => return Err(Stop::Unusual),
        }
    }
    Ok(())
}

fn resource_group<'a>(
    buf: &'a [u8],
    sink: &mut impl Sink<'a>,
    mut groups: Option<&mut resource_scope::Builders>,
) -> Result<(), Stop> {
    let (resource, schema_url) = group(buf)?;
    let mut decoded = None;
    // The skim (no builders) needs no values: the resource is only checked.
    let res = match groups {
        Some(_) => resource_row(resource, schema_url, &mut decoded)?,
        None => check_plain(resource, &RESOURCE, |r: &Resource| &r.attributes).map(|()| ResourceRow::new(None, ""))?,
    };
    for f in Fields(buf) {
        if let (2, Value::Len(b)) = f? {
            scope_group(b, &res, sink, groups.as_deref_mut())?;
        }
    }
    Ok(())
}

fn scope_group<'a>(
    buf: &'a [u8],
    res: &ResourceRow<'_>,
    sink: &mut impl Sink<'a>,
    groups: Option<&mut resource_scope::Builders>,
) -> Result<(), Stop> {
    let (scope, schema_url) = group(buf)?;
    let mut decoded = None;
    let scope = match groups {
        Some(_) => Some(scope_row(scope, schema_url, &mut decoded)?),
        None => check_plain(scope, &SCOPE, |s: &InstrumentationScope| &s.attributes).map(|()| None)?,
    };
    let mut rows = 0;
    for f in Fields(buf) {
        if let (2, Value::Len(b)) = f? {
            rows += sink.item(b)?;
        }
    }
    if let (Some(g), Some(scope)) = (groups, scope) {
        g.append_rows(res, &scope, rows)?;
    }
    Ok(())
}

/// A group's resource, read in place (no allocation but its attributes' list), else decoded by prost
/// into `decoded` (entity refs, and what `read_in_place` leaves to prost): decoding every group's
/// resource and scope was ~4 % of the daemon's CPU storing metric points (perf, docs/BENCHMARKS.md).
fn resource_row<'a>(
    bytes: Option<&'a [u8]>,
    schema_url: &'a str,
    decoded: &'a mut Option<Resource>,
) -> Result<ResourceRow<'a>, Stop> {
    Ok(match in_place_or_decoded(bytes, &RESOURCE, |r: &Resource| &r.attributes, decoded)? {
        Ok(f) => ResourceRow::in_place(f.attrs, f.count, schema_url),
        Err(r) => ResourceRow::new(r, schema_url),
    })
}

/// A group's scope, as [`resource_row`] reads a resource.
fn scope_row<'a>(
    bytes: Option<&'a [u8]>,
    schema_url: &'a str,
    decoded: &'a mut Option<InstrumentationScope>,
) -> Result<ScopeRow<'a>, Stop> {
    Ok(match in_place_or_decoded(bytes, &SCOPE, |s: &InstrumentationScope| &s.attributes, decoded)? {
        Ok(f) => ScopeRow::in_place((f.strings[0], f.strings[1]), f.attrs, f.count, schema_url),
        Err(s) => ScopeRow::new(s, schema_url),
    })
}

/// A resource's or scope's fields read in place (`Ok`), or, where `read_in_place` cannot, the
/// message decoded by prost into `decoded` (`Err`: `None` when the group has none).
fn in_place_or_decoded<'a, M: Message + Default>(
    bytes: Option<&'a [u8]>,
    shape: &Shape,
    attrs: fn(&M) -> &[KeyValue],
    decoded: &'a mut Option<M>,
) -> Result<Result<InPlace<'a>, Option<&'a M>>, Stop> {
    let mut fields = InPlace::default();
    match bytes {
        Some(b) if read_in_place(b, shape, Some(&mut fields)).is_ok() => Ok(Ok(fields)),
        _ => {
            *decoded = plain_message(bytes, attrs)?;
            let decoded: &'a Option<M> = decoded;
            Ok(Err(decoded.as_ref()))
        }
    }
}

/// A resource or scope group's own fields: its resource or scope's bytes (field 1, at most once) and
/// its `schema_url` (field 3); its scope groups or items (field 2) are only checked to be bytes here.
fn group(buf: &[u8]) -> Result<(Option<&[u8]>, &str), Stop> {
    let (mut message, mut schema_url) = (None, "");
    for f in Fields(buf) {
        match f? {
            (1, v) => once(&mut message, v)?,
            (2, v) => _ = v.bytes()?,
            (3, v) => schema_url = v.str()?,
            _ => return Err(Stop::Unusual),
        }
    }
    Ok((message, schema_url))
}

/// A resource or scope decoded by prost (one per group), if its attributes are plain (see [`plain`]).
fn plain_message<M: Message + Default>(bytes: Option<&[u8]>, attrs: fn(&M) -> &[KeyValue]) -> Result<Option<M>, Stop> {
    let m = bytes.map(M::decode).transpose().map_err(|_| Stop::Unusual)?;
    if m.as_ref().is_some_and(|m| !plain(attrs(m))) {
        return Err(Stop::Unusual);
    }
    Ok(m)
}

/// The fields of a resource or a scope that [`check_plain`] reads in place.
struct Shape {
    attributes: u32,
    strings: &'static [u32],
    /// `dropped_attributes_count`.
    count: u32,
}

/// `Resource`: attributes, dropped_attributes_count (entity refs are left to prost).
const RESOURCE: Shape = Shape { attributes: 1, strings: &[], count: 2 };
/// `InstrumentationScope`: name, version, attributes, dropped_attributes_count.
const SCOPE: Shape = Shape { attributes: 3, strings: &[1, 2], count: 4 };

/// What [`plain_message`] says of a resource or scope, without its values: read in place when it
/// holds only fields read here as prost reads them (no allocation; decoding each group's resource
/// was ~2 % of the daemon's CPU in the skim alone), else decoded by prost as `plain_message` does.
fn check_plain<M: Message + Default>(
    bytes: Option<&[u8]>,
    shape: &Shape,
    attrs: fn(&M) -> &[KeyValue],
) -> Result<(), Stop> {
    match bytes {
        Some(b) if read_in_place(b, shape, None).is_err() => plain_message(Some(b), attrs).map(|_| ()),
        _ => Ok(()),
    }
}

/// A resource's or scope's fields as [`read_in_place`] reads them: its attributes, its strings (a
/// scope's name and version, in `Shape::strings`' order) and its dropped attributes count, each
/// field given twice read as its last value and attributes appended, as prost reads them.
#[derive(Default)]
struct InPlace<'a> {
    attrs: Vec<Attr<'a>>,
    strings: [&'a str; 2],
    count: u32,
}

/// Reads a resource or scope's fields as prost would, into `keep` if given; `Unusual` for anything
/// else (an attribute `attr` does not read, a field not in `shape`, a wrong wire type).
fn read_in_place<'a>(buf: &'a [u8], shape: &Shape, mut keep: Option<&mut InPlace<'a>>) -> Result<(), Stop> {
    for f in Fields(buf) {
        match f? {
            (n, Value::Len(a)) if n == shape.attributes => {
                let a = attr(a)?;
                if let Some(k) = keep.as_deref_mut() {
                    k.attrs.push(a);
                }
            }
            (n, v) if shape.strings.contains(&n) => {
                let s = v.str()?;
                if let Some(k) = keep.as_deref_mut() {
                    k.strings[shape.strings.iter().position(|&x| x == n).unwrap_or(0)] = s;
                }
            }
            (n, v @ Value::Varint(_)) if n == shape.count => {
                let c = v.uint32()?;
                if let Some(k) = keep.as_deref_mut() {
                    k.count = c;
                }
            }
            _ => return Err(Stop::Unusual),
        }
    }
    Ok(())
}

/// An attribute's value as the direct path holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum AttrValue<'a> {
    /// No `value` field (`KeyValue.value` is `None`).
    Absent,
    Str(&'a str),
    /// Any other value but an array or a key-value list: its `AnyValue` bytes, decoded by prost when
    /// appended (no allocation but for bytes values).
    Scalar(&'a [u8]),
}

/// One `KeyValue`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attr<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: AttrValue<'a>,
}

/// Reads one `KeyValue` (its bytes).
pub(crate) fn attr(buf: &[u8]) -> Result<Attr<'_>, Stop> {
    let mut key = "";
    let mut value = None;
    for f in Fields(buf) {
        match f? {
            (1, v) => key = v.str()?,
            (2, v) => once(&mut value, v)?,
            // `key_strindex` and unknown fields: prost's path.
            _ => return Err(Stop::Unusual),
        }
    }
    let value = match value {
        None => AttrValue::Absent,
        Some(any) => any_value(any)?,
    };
    Ok(Attr { key, value })
}

/// Reads one `AnyValue`: a single field of a scalar kind.
pub(crate) fn any_value(buf: &[u8]) -> Result<AttrValue<'_>, Stop> {
    let mut fields = Fields(buf);
    let Some(first) = fields.next() else {
        // No value set: `AnyValue { value: None }`, which prost decodes from the empty bytes.
        return Ok(AttrValue::Scalar(buf));
    };
    if fields.next().is_some() {
        return Err(Stop::Unusual);
    }
    match first? {
        (1, v) => Ok(AttrValue::Str(v.str()?)),
        (2 | 3 | 8, Value::Varint(_)) | (4, Value::Fixed64(_)) | (7, Value::Len(_)) => Ok(AttrValue::Scalar(buf)),
        _ => Err(Stop::Unusual),
    }
}

/// Whether decoded attributes hold no array or key-value list: their nesting prost bounds counting from
/// the request's top, which a decode of a part of the request (a resource, an event) would not.
pub(crate) fn plain(attrs: &[KeyValue]) -> bool {
    attrs.iter().all(|kv| {
        !matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()), Some(Kind::ArrayValue(_) | Kind::KvlistValue(_)))
    })
}

/// The bytes a value's text takes (a string), or at most takes (another scalar), as
/// `super::string_len` counts decoded ones.
pub(crate) fn text_len(value: AttrValue<'_>) -> usize {
    match value {
        AttrValue::Str(s) => s.len(),
        AttrValue::Scalar(b) => super::SCALAR_TEXT_PER_BYTE * b.len(),
        AttrValue::Absent => 0,
    }
}

/// Counts one row's attributes as `AttrSizes::add` does for decoded ones.
pub(crate) fn count(sizes: &mut AttrSizes, attrs: &[Attr<'_>]) {
    sizes.rows += 1;
    sizes.entries += attrs.len();
    for a in attrs {
        sizes.key_bytes += a.key.len();
        sizes.value_bytes += text_len(a.value);
    }
}

/// Appends one row's attributes as `super::append_attrs` appends decoded ones: the same entries and
/// type codes.
pub(crate) fn append_attrs(
    map: &mut super::AttrMapBuilder,
    types: &mut super::TypesBuilder,
    attrs: &[Attr<'_>],
) -> Result<(), Stop> {
    let codes = append_entries(map, attrs)?;
    super::append_codes(types, &codes);
    Ok(())
}

/// Appends one row's attribute entries as `super::append_entries` appends decoded ones, and returns
/// their type codes.
pub(crate) fn append_entries(map: &mut super::AttrMapBuilder, attrs: &[Attr<'_>]) -> Result<Vec<u8>, Stop> {
    let mut codes = super::Codes::new(attrs.len());
    for a in attrs {
        map.keys().append_value(a.key);
        codes.push(append_value(map.values(), a.value)?);
    }
    map.append(true)?;
    Ok(codes.into_vec())
}

/// Appends a value's text (as `write_value` writes it) and returns its type.
pub(crate) fn append_value(out: &mut StringBuilder, value: AttrValue<'_>) -> Result<AttrType, Stop> {
    let t = match value {
        AttrValue::Absent => AttrType::Missing,
        AttrValue::Str(s) => {
            out.append_value(s);
            return Ok(AttrType::Str);
        }
        AttrValue::Scalar(b) => {
            let v = AnyValue::decode(b).map_err(|_| Stop::Unusual)?;
            write_value(Some(&v), out)
        }
    };
    out.append_value("");
    Ok(t)
}

/// What the direct paths' property tests share.
#[cfg(test)]
pub(crate) mod test_support {
    use super::super::{Skimmed, from_encoded, skim, to_grouped_record_batch, to_record_batch};
    use crate::{Payload, Signal};
    use arrow::record_batch::RecordBatch;
    use opentelemetry_proto::tonic::common::v1::KeyValue;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// Makes every array or key-value list value a string: what the direct paths read.
    pub fn flat(attrs: &mut Vec<KeyValue>) {
        for kv in attrs {
            if let Some(v) = kv.value.as_mut()
                && matches!(v.value, Some(Kind::ArrayValue(_) | Kind::KvlistValue(_)))
            {
                v.value = Some(Kind::StringValue("nested".into()));
            }
        }
    }

    /// The direct path's rows of `parts`, if `skim` reads every part.
    pub fn direct(signal: Signal, parts: &[Vec<u8>], grouped: bool) -> Option<RecordBatch> {
        let mut total = Skimmed::default();
        for p in parts {
            total.add(&skim(signal, p)?);
        }
        Some(from_encoded("t1", signal, parts.iter().map(Vec::as_slice), &total, grouped).unwrap().unwrap())
    }

    /// Prost's reading of `parts` appended, converted as the decoded path converts.
    pub fn decoded(signal: Signal, parts: &[Vec<u8>], grouped: bool) -> RecordBatch {
        let mut all = Payload::empty(signal);
        for p in parts {
            all.append(Payload::decode(signal, p).unwrap());
        }
        if grouped { to_grouped_record_batch("t1", &all) } else { to_record_batch("t1", &all) }.unwrap()
    }

    /// If the skim reads `bytes`, prost decodes them, and the direct path's rows are the decoded path's.
    pub fn read_only_as_prost_reads(signal: Signal, bytes: Vec<u8>, grouped: bool) -> Result<(), TestCaseError> {
        if skim(signal, &bytes).is_some() {
            prop_assert!(Payload::decode(signal, &bytes).is_ok());
            let parts = [bytes];
            prop_assert_eq!(direct(signal, &parts, grouped), Some(decoded(signal, &parts, grouped)));
        }
        Ok(())
    }

    /// The direct path's rows of `a`, and of `a` and `b` appended, are the decoded path's, in both forms.
    pub fn same_rows_as_decoded(signal: Signal, a: &[u8], b: &[u8]) -> Result<(), TestCaseError> {
        for grouped in [false, true] {
            let one = [a.to_vec()];
            prop_assert_eq!(direct(signal, &one, grouped), Some(decoded(signal, &one, grouped)));
            let both = [a.to_vec(), b.to_vec()];
            prop_assert_eq!(direct(signal, &both, grouped), Some(decoded(signal, &both, grouped)));
        }
        Ok(())
    }

    pub fn wrap(tag: u32, inner: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(inner);
        out
    }

    /// Every field number a message the direct paths read has (1–17, and one past), in every wire
    /// type, with a few values of each (zero-length and message-like bytes, small and multi-byte
    /// varints, a double's bits): what the added-field tests try at every level, all of them.
    pub fn every_field() -> Vec<Vec<u8>> {
        use prost::encoding::{WireType, encode_key, encode_varint};
        let mut out = Vec::new();
        for tag in 1..=18u32 {
            for n in [1u64, 300] {
                let mut f = Vec::new();
                encode_key(tag, WireType::Varint, &mut f);
                encode_varint(n, &mut f);
                out.push(f);
            }
            for n in [1u64, 1f64.to_bits()] {
                let mut f = Vec::new();
                encode_key(tag, WireType::SixtyFourBit, &mut f);
                f.extend(n.to_le_bytes());
                out.push(f);
            }
            out.push(wrap(tag, &[]));
            out.push(wrap(tag, &[0x08, 0x01]));
            let mut f = Vec::new();
            encode_key(tag, WireType::ThirtyTwoBit, &mut f);
            f.extend(7u32.to_le_bytes());
            out.push(f);
        }
        out
    }

    /// `read_only_as_prost_reads` of `bytes`, for a plain test: panics saying which field at which
    /// level went wrong.
    pub fn added_field_read_as_prost_reads(signal: Signal, bytes: Vec<u8>, level: u8, extra: &[u8]) {
        if let Err(e) = read_only_as_prost_reads(signal, bytes, false) {
            panic!("field {extra:02x?} added at level {level}: {e}");
        }
    }

    /// A few edits of bytes: (where, byte, how: set, cut or insert).
    pub fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4)
    }

    pub fn edited(mut bytes: Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
        for (at, byte, how) in edits {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match how {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_as_their_wire_type_says_and_anything_odd_is_unusual() {
        // field 1 varint 150, field 2 fixed64 1, field 3 "hi", field 4 fixed32 7
        let mut buf = vec![0x08, 0x96, 0x01, 0x11, 1, 0, 0, 0, 0, 0, 0, 0, 0x1a, 2, b'h', b'i', 0x25, 7, 0, 0, 0];
        let got: Vec<_> = Fields(&buf).collect::<Result<_, _>>().unwrap();
        assert!(matches!(got[0], (1, Value::Varint(150))));
        assert!(matches!(got[1], (2, Value::Fixed64(1))));
        assert!(matches!(got[2], (3, Value::Len(b"hi"))));
        assert!(matches!(got[3], (4, Value::Fixed32(7))));
        // A length past the end, a group, a truncated fixed64: unusual, never a panic.
        buf[13] = 9;
        assert!(Fields(&buf).any(|f| f.is_err()));
        assert!(Fields(&[0x0b]).next().unwrap().is_err());
        assert!(Fields(&[0x11, 1, 2]).next().unwrap().is_err());
        // Invalid UTF-8 is not a string.
        assert!(matches!(Value::Len(&[0xff]).str(), Err(Stop::Unusual)));
    }

    /// The skim's check of a resource or scope says what decoding it says: plain, or not (nested
    /// values, bytes prost refuses); read in place exactly when nothing needs prost.
    #[test]
    fn a_resource_or_scope_checked_in_place_is_judged_as_decoded() {
        use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let kv = |k: &str, v: Option<Kind>| KeyValue {
            key: k.into(),
            value: v.map(|v| AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let plain = vec![
            kv("service.name", Some(Kind::StringValue("api".into()))),
            kv("n", Some(Kind::IntValue(-3))),
            kv("b", Some(Kind::BoolValue(true))),
            kv("d", Some(Kind::DoubleValue(0.5))),
            kv("x", Some(Kind::BytesValue(vec![1, 2]))),
            kv("none", None),
        ];
        let array = kv("a", Some(Kind::ArrayValue(ArrayValue { values: vec![] })));
        let kvlist = kv("l", Some(Kind::KvlistValue(KeyValueList { values: vec![] })));
        let res =
            |attrs: Vec<KeyValue>| Resource { attributes: attrs, dropped_attributes_count: 2, ..Default::default() };
        let scope = |attrs: Vec<KeyValue>| InstrumentationScope {
            name: "lib".into(),
            version: "1.0".into(),
            attributes: attrs,
            dropped_attributes_count: 1,
        };
        let with = |mut b: Vec<u8>, extra: &[u8]| {
            b.extend_from_slice(extra);
            b
        };
        // (bytes, read in place?) for resources, then scopes.
        let plain_res = res(plain.clone()).encode_to_vec();
        let resources = [
            (plain_res.clone(), true),
            (Resource::default().encode_to_vec(), true),
            (res(vec![plain[0].clone(), array.clone()]).encode_to_vec(), false),
            (res(vec![kvlist.clone()]).encode_to_vec(), false),
            // An unknown field prost skips; an entity ref (field 3): left to prost, still plain.
            (with(plain_res.clone(), &[0x48, 0x01]), false),
            (with(plain_res.clone(), &[0x1a, 0x02, 0x0a, 0x00]), false),
            // A key that is not UTF-8; a count of the wrong wire type: prost refuses both.
            (with(plain_res.clone(), &[0x0a, 0x03, 0x0a, 0x01, 0xff]), false),
            (with(plain_res.clone(), &[0x15, 0, 0, 0, 0]), false),
        ];
        for (i, (bytes, in_place)) in resources.iter().enumerate() {
            let decoded = plain_message(Some(bytes), |r: &Resource| &r.attributes).is_ok();
            let checked = check_plain(Some(bytes), &RESOURCE, |r: &Resource| &r.attributes).is_ok();
            assert_eq!(checked, decoded, "resource {i}");
            assert_eq!(read_in_place(bytes, &RESOURCE, None).is_ok(), *in_place, "resource {i}");
        }
        let plain_scope = scope(plain.clone()).encode_to_vec();
        let scopes = [
            (plain_scope.clone(), true),
            (scope(vec![array]).encode_to_vec(), false),
            (scope(vec![kvlist]).encode_to_vec(), false),
            (with(plain_scope.clone(), &[0x12, 0x01, 0xc3]), false),
            (with(plain_scope.clone(), &[0x58, 0x01]), false),
        ];
        for (i, (bytes, in_place)) in scopes.iter().enumerate() {
            let decoded = plain_message(Some(bytes), |s: &InstrumentationScope| &s.attributes).is_ok();
            let checked = check_plain(Some(bytes), &SCOPE, |s: &InstrumentationScope| &s.attributes).is_ok();
            assert_eq!(checked, decoded, "scope {i}");
            assert_eq!(read_in_place(bytes, &SCOPE, None).is_ok(), *in_place, "scope {i}");
        }
    }
}

#[cfg(test)]
mod group_tests {
    use super::test_support::{decoded, direct, wrap};
    use super::{RESOURCE, SCOPE, read_in_place};
    use crate::Signal;
    use prost::encoding::encode_varint;

    fn varint(tag: u32, v: u64) -> Vec<u8> {
        let mut out = vec![(tag << 3) as u8];
        encode_varint(v, &mut out);
        out
    }

    /// A `KeyValue` as field 1 (a resource's attributes); `at` moves it to another field.
    fn kv(key: &str, value: &[u8]) -> Vec<u8> {
        wrap(1, &[wrap(1, key.as_bytes()), wrap(2, value)].concat())
    }

    /// Attributes given as field 1 (`kv`), as field `tag` instead.
    fn at(tag: u32, attrs: &[u8]) -> Vec<u8> {
        super::Fields(attrs).map(|f| wrap(tag, f.unwrap().1.bytes().unwrap())).collect::<Vec<_>>().concat()
    }

    /// Resources and scopes read in place (the build reads their values so, as the skim checks them)
    /// make the rows prost's decoding makes: every kind of scalar value, a missing value, fields given
    /// twice (prost keeps the last; attributes all, in order), `service.name` twice (the first counts)
    /// or not a string, counts past 32 bits, no resource or no scope, and one with an entity ref (left
    /// to prost), in requests of every signal, held either way.
    #[test]
    fn resources_and_scopes_read_in_place_make_the_decoded_rows() {
        let attrs = [
            kv("service.name", &wrap(1, b"api")),
            kv("service.name", &wrap(1, b"shadowed")),
            kv("n", &varint(3, u64::MAX)),
            kv("b", &varint(2, 1)),
            kv("d", &[vec![4 << 3 | 1], 0.25f64.to_bits().to_le_bytes().to_vec()].concat()),
            kv("x", &wrap(7, &[0, 0xff])),
            kv("empty", &[]),
            wrap(1, &wrap(1, b"absent")),
        ]
        .concat();
        let resources: Vec<Option<Vec<u8>>> = vec![
            Some([attrs.clone(), varint(2, 3), varint(2, (1 << 33) | 7)].concat()),
            Some(kv("service.name", &varint(3, 5))),
            Some(vec![]),
            None,
            // An entity ref (field 3): decoded by prost in the build too.
            Some([attrs.clone(), wrap(3, &wrap(2, b"k8s.pod"))].concat()),
        ];
        let scopes: Vec<Option<Vec<u8>>> = vec![
            Some(
                [wrap(1, b"old"), wrap(2, b"0.1"), at(3, &attrs), wrap(1, b"lib"), wrap(2, b"1.2"), varint(4, 9)]
                    .concat(),
            ),
            Some(vec![]),
            None,
        ];
        let items: [(Signal, Vec<u8>); 3] = [
            (Signal::Traces, [wrap(5, b"span"), wrap(1, &[1; 16]), wrap(2, &[2; 8])].concat()),
            (Signal::Logs, [wrap(5, &wrap(1, b"body")), varint(2, 9)].concat()),
            (
                Signal::Metrics,
                [wrap(1, b"m"), wrap(5, &wrap(1, &[vec![0x31], 7u64.to_le_bytes().to_vec()].concat()))].concat(),
            ),
        ];
        for (signal, item) in &items {
            let mut parts = Vec::new();
            for (r, resource) in resources.iter().enumerate() {
                for (s, scope) in scopes.iter().enumerate() {
                    let scope_group =
                        [scope.as_ref().map_or(vec![], |b| wrap(1, b)), wrap(2, item), wrap(2, item)].concat();
                    let group = [resource.as_ref().map_or(vec![], |b| wrap(1, b)), wrap(2, &scope_group)].concat();
                    let req = wrap(1, &group);
                    let one = [req.clone()];
                    for grouped in [false, true] {
                        let got = direct(*signal, &one, grouped);
                        assert_eq!(got, Some(decoded(*signal, &one, grouped)), "{signal:?} resource {r} scope {s}");
                    }
                    parts.push(req);
                }
            }
            assert_eq!(direct(*signal, &parts, true), Some(decoded(*signal, &parts, true)), "{signal:?} together");
        }
        // The plain ones are read in place (not by prost), the one with an entity ref is not.
        for (i, r) in resources.iter().flatten().enumerate() {
            assert_eq!(read_in_place(r, &RESOURCE, None).is_ok(), i != 3, "resource {i}");
        }
        assert!(scopes.iter().flatten().all(|s| read_in_place(s, &SCOPE, None).is_ok()));
    }
}

#[cfg(test)]
mod scalar_tests {
    use super::test_support::{decoded, direct, wrap};
    use crate::Signal;
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    /// Scalar values as any encoder may send them (a bool of 2, an int of ten bytes, an int32 with high
    /// bits, a NaN with a payload, no value at all) read as prost reads them.
    #[test]
    fn scalar_values_in_any_valid_encoding_read_as_prost_reads_them() {
        let varint = |tag: u8, v: u64| {
            let mut out = vec![tag << 3];
            prost::encoding::encode_varint(v, &mut out);
            out
        };
        let values: Vec<Vec<u8>> = vec![
            varint(2, 2),
            varint(2, 0),
            varint(3, u64::MAX),
            varint(3, 1 << 40),
            varint(8, 0xffff_ffff_0000_0007),
            [vec![4 << 3 | 1], 0x7ff8_0000_dead_beef_u64.to_le_bytes().to_vec()].concat(),
            [vec![4 << 3 | 1], (-0.0f64).to_bits().to_le_bytes().to_vec()].concat(),
            wrap(7, &[0, 1, 0xff]),
            vec![],
        ];
        let mut span = Span { name: "s".into(), ..Default::default() }.encode_to_vec();
        for v in &values {
            span.extend(wrap(9, &[wrap(1, b"k"), wrap(2, v)].concat()));
        }
        let req = wrap(1, &wrap(2, &wrap(2, &span)));
        let parts = [req];
        assert_eq!(direct(Signal::Traces, &parts, false), Some(decoded(Signal::Traces, &parts, false)));
    }
}
