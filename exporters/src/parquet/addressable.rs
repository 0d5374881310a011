//! Byte arrays whose values are all empty, given a values buffer that has an address.
//!
//! An Arrow byte array whose every value is empty (a span's `trace_state`, a log record's
//! `event_name`, schema URLs, as most agents send them) has a values buffer of no bytes, and Arrow
//! gives such a buffer no allocation: its address is a constant (0x80) on an unmapped page. Each of
//! the array's values is then an empty slice at that address, and comparing two of them calls glibc's
//! `memcmp` with length 0, which on AVX-512 machines still issues a masked load there; the masked-out
//! fault is suppressed by a microcode assist, ~200 ns each time. The Parquet writer interns every value
//! of a dictionary-encoded column and compares each for the page's min and max, so such a column cost
//! 214 ns per row to write instead of 15 (`openwit-empty-bytes-bench`, docs/BENCHMARKS.md).
//! [`addressable`] gives the array (or the byte arrays nested in it) an allocated, still empty, values
//! buffer.

use arrow::array::{
    Array, ArrayRef, AsArray, GenericByteArray, GenericListArray, MapArray, OffsetSizeTrait, StructArray,
};
use arrow::buffer::Buffer;
use arrow::datatypes::{ByteArrayType, DataType, GenericBinaryType, GenericStringType};
use arrow::error::ArrowError;
use std::sync::Arc;

/// `array` with each byte array in it (itself, a dictionary's values, a map's, list's or struct's
/// children) whose values buffer is empty while it has rows given an allocated empty buffer; `array`
/// itself when it has none (the common case costs a walk of its type).
pub fn addressable(array: ArrayRef) -> Result<ArrayRef, ArrowError> {
    if !dangles(array.as_ref()) {
        return Ok(array);
    }
    rebuilt(array.as_ref())
}

/// Whether `a` holds a byte array with rows but an unallocated values buffer (what [`addressable`] mends).
pub(super) fn dangles(a: &dyn Array) -> bool {
    if a.is_empty() {
        return false;
    }
    match a.data_type() {
        DataType::Utf8 => unallocated(a.as_string::<i32>().values()),
        DataType::LargeUtf8 => unallocated(a.as_string::<i64>().values()),
        DataType::Binary => unallocated(a.as_binary::<i32>().values()),
        DataType::LargeBinary => unallocated(a.as_binary::<i64>().values()),
        DataType::Dictionary(..) => a.as_any_dictionary_opt().is_some_and(|d| dangles(d.values().as_ref())),
        DataType::Struct(_) => a.as_struct().columns().iter().any(|c| dangles(c.as_ref())),
        DataType::Map(..) => dangles(a.as_map().entries()),
        DataType::List(_) => dangles(a.as_list::<i32>().values().as_ref()),
        DataType::LargeList(_) => dangles(a.as_list::<i64>().values().as_ref()),
        _ => false,
    }
}

/// No bytes and no allocation (a buffer Arrow made for no bytes, at its constant address).
fn unallocated(values: &Buffer) -> bool {
    values.is_empty() && values.capacity() == 0
}

/// `a`, which [`dangles`], with its unallocated byte arrays given a buffer (children that do not dangle
/// kept as they are, through [`addressable`]).
fn rebuilt(a: &dyn Array) -> Result<ArrayRef, ArrowError> {
    Ok(match a.data_type() {
        DataType::Utf8 => bytes::<GenericStringType<i32>>(a.as_string::<i32>())?,
        DataType::LargeUtf8 => bytes::<GenericStringType<i64>>(a.as_string::<i64>())?,
        DataType::Binary => bytes::<GenericBinaryType<i32>>(a.as_binary::<i32>())?,
        DataType::LargeBinary => bytes::<GenericBinaryType<i64>>(a.as_binary::<i64>())?,
        DataType::Dictionary(..) => match a.as_any_dictionary_opt() {
            Some(d) => d.with_values(addressable(d.values().clone())?),
            None => a.slice(0, a.len()),
        },
        DataType::Struct(_) => Arc::new(structure(a.as_struct())?),
        DataType::Map(entries, ordered) => {
            let map = a.as_map();
            let children = structure(map.entries())?;
            Arc::new(MapArray::try_new(
                entries.clone(),
                map.offsets().clone(),
                children,
                map.nulls().cloned(),
                *ordered,
            )?)
        }
        DataType::List(_) => list(a.as_list::<i32>())?,
        DataType::LargeList(_) => list(a.as_list::<i64>())?,
        _ => a.slice(0, a.len()),
    })
}

/// Room for a few bytes: any allocation gives the buffer a mapped address.
const EMPTY_VALUES_CAPACITY: usize = 64;

/// `a` (unallocated, as [`dangles`] found it) over an allocated empty buffer.
fn bytes<T: ByteArrayType>(a: &GenericByteArray<T>) -> Result<ArrayRef, ArrowError> {
    let values = Buffer::from_vec(Vec::<u8>::with_capacity(EMPTY_VALUES_CAPACITY));
    Ok(Arc::new(GenericByteArray::<T>::try_new(a.offsets().clone(), values, a.nulls().cloned())?))
}

fn structure(s: &StructArray) -> Result<StructArray, ArrowError> {
    let columns = s.columns().iter().map(|c| addressable(c.clone())).collect::<Result<Vec<_>, _>>()?;
    StructArray::try_new(s.fields().clone(), columns, s.nulls().cloned())
}

fn list<O: OffsetSizeTrait>(l: &GenericListArray<O>) -> Result<ArrayRef, ArrowError> {
    let (DataType::List(field) | DataType::LargeList(field)) = l.data_type() else {
        unreachable!("a list array's type is a list")
    };
    let values = addressable(l.values().clone())?;
    Ok(Arc::new(GenericListArray::<O>::try_new(field.clone(), l.offsets().clone(), values, l.nulls().cloned())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int32Array, StringArray, UInt32Array};
    use arrow::compute::take;
    use arrow::datatypes::Int32Type;

    /// The values buffer's address: Arrow's unallocated buffers all have one small constant address.
    fn address(a: &dyn Array) -> usize {
        a.as_string::<i32>().values().as_ptr() as usize
    }

    #[test]
    fn empty_byte_arrays_get_an_allocated_buffer_and_keep_their_values() {
        // As Arrow's kernels make them (here `take`): no bytes, no allocation.
        let taken = |a: StringArray, n: u32| take(&a, &UInt32Array::from_iter_values(0..n), None).unwrap();
        let empty = taken(StringArray::from(vec![Some(""), None, Some("")]), 3);
        let other = taken(StringArray::from(vec![""]), 1);
        assert_eq!(address(empty.as_ref()), address(other.as_ref()), "unallocated: one shared address");
        assert!(dangles(empty.as_ref()));

        let fixed = addressable(empty.clone()).unwrap();
        assert_eq!(&fixed, &empty);
        assert_ne!(address(fixed.as_ref()), address(empty.as_ref()));
        assert!(!dangles(fixed.as_ref()));

        // Nested: a dictionary's values and a map's keys and values.
        let dict: ArrayRef =
            Arc::new(DictionaryArray::<Int32Type>::try_new(Int32Array::from(vec![0, 0, 0]), empty).unwrap());
        let fixed = addressable(dict.clone()).unwrap();
        assert_eq!(&fixed, &dict);
        assert!(dangles(dict.as_ref()) && !dangles(fixed.as_ref()));

        let mut builder =
            arrow::array::MapBuilder::new(None, arrow::array::StringBuilder::new(), arrow::array::StringBuilder::new());
        for _ in 0..3 {
            builder.keys().append_value("");
            builder.values().append_value("");
            builder.append(true).unwrap();
        }
        builder.append(false).unwrap();
        let map: ArrayRef = Arc::new(builder.finish());
        let map = take(&map, &UInt32Array::from(vec![3, 1, 2]), None).unwrap();
        let fixed = addressable(map.clone()).unwrap();
        assert_eq!(&fixed, &map);
        assert!(dangles(map.as_ref()) && !dangles(fixed.as_ref()));

        // An array with bytes is itself.
        let full: ArrayRef = Arc::new(StringArray::from(vec!["a", ""]));
        assert!(Arc::ptr_eq(&addressable(full.clone()).unwrap(), &full));
    }
}
