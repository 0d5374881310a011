//! Reading an OTLP request's protobuf encoding in place, for the conversion straight from a request's
//! bytes to Arrow rows (see `spans_wire`): no message is decoded into owned structs, no string copied
//! but into the builders.
//!
//! The direct path reads only what it reads exactly as prost would, and says [`Stop::Unusual`] for
//! anything else: an unknown field, a field of the wrong wire type, a group, a singular message given
//! twice (which prost merges), a nested array or key-value list (whose nesting prost bounds), invalid
//! UTF-8, a truncated field. Such a request is decoded by prost instead, which accepts or refuses it
//! as before; so a request the direct path accepts is one prost decodes, to the same rows.

use super::AttrSizes;
use crate::attributes::{AttrType, write_value};
use arrow::array::StringBuilder;
use arrow::error::ArrowError;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Kind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
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

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
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
fn any_value(buf: &[u8]) -> Result<AttrValue<'_>, Stop> {
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

/// Counts one row's attributes as `AttrSizes::add` does for decoded ones.
pub(crate) fn count(sizes: &mut AttrSizes, attrs: &[Attr<'_>]) {
    sizes.rows += 1;
    sizes.entries += attrs.len();
    for a in attrs {
        sizes.key_bytes += a.key.len();
        if let AttrValue::Str(s) = a.value {
            sizes.value_bytes += s.len();
        }
    }
}

/// Appends one row's attributes as `super::append_attrs` appends decoded ones: the same entries and
/// type codes.
pub(crate) fn append_attrs(
    map: &mut super::AttrMapBuilder,
    types: &mut super::TypesBuilder,
    attrs: &[Attr<'_>],
) -> Result<(), Stop> {
    let mut codes = super::Codes::new(attrs.len());
    for a in attrs {
        map.keys().append_value(a.key);
        let values = map.values();
        let t = match a.value {
            AttrValue::Absent => AttrType::Missing,
            AttrValue::Str(s) => {
                values.append_value(s);
                codes.push(AttrType::Str);
                continue;
            }
            AttrValue::Scalar(b) => write_scalar(b, values)?,
        };
        values.append_value("");
        codes.push(t);
    }
    map.append(true)?;
    super::append_codes(types, codes.as_slice());
    Ok(())
}

fn write_scalar(buf: &[u8], values: &mut StringBuilder) -> Result<AttrType, Stop> {
    let v = AnyValue::decode(buf).map_err(|_| Stop::Unusual)?;
    Ok(write_value(Some(&v), values))
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
}
