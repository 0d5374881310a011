//! Whether two rows of a column hold the same value, by comparing their bytes.
//!
//! [`super::runs`] splits a buffered column into runs of equal consecutive rows. arrow's `partition`
//! does that through a comparator built for ordering, which for maps and lists (`resource_attributes`,
//! `resource_attribute_types`) falls back to a dynamically dispatched comparison per entry: 4.9 % of
//! the daemon's CPU while storing spans (profile of 2026-12-04, `docs/BENCHMARKS.md` § Memory). Equality
//! needs less: two rows are equal when their null-ness, their entries' lengths and their bytes are —
//! each a slice compared at once.
//!
//! The comparison is exact in one direction only: rows it calls equal are equal, but rows holding the
//! same value may be called different where arrow leaves bytes undefined (the value under a null slot).
//! Runs split there cost a repeated value, never a wrong one.

use arrow::array::{Array, AsArray};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer};
use arrow::datatypes::DataType;

/// A column laid out for comparing ranges of its rows; built once per column, cheap (buffers are shared).
pub struct EqualRows {
    nulls: Option<NullBuffer>,
    layout: Layout,
}

enum Layout {
    /// Values of `width` bytes each, from the column's first row.
    Fixed {
        values: Buffer,
        width: usize,
    },
    /// Variable-length values: row `i` is `values[offsets[i]..offsets[i + 1]]`.
    Bytes {
        offsets: OffsetBuffer<i32>,
        values: Buffer,
    },
    /// Lists and maps: row `i` is the rows `offsets[i]..offsets[i + 1]` of `child`.
    List {
        offsets: OffsetBuffer<i32>,
        child: Box<EqualRows>,
    },
    Struct {
        children: Vec<EqualRows>,
    },
}

impl EqualRows {
    /// `column` laid out for comparison, or `None` for a type this does not compare (the caller falls
    /// back to arrow's comparators): fixed-width primitives, `Utf8`/`Binary`, `List`, `Map`, `Struct`.
    pub fn new(column: &dyn Array) -> Option<Self> {
        let layout = match column.data_type() {
            DataType::Utf8 => {
                let a = column.as_string::<i32>();
                Layout::Bytes { offsets: a.offsets().clone(), values: a.values().clone() }
            }
            DataType::Binary => {
                let a = column.as_binary::<i32>();
                Layout::Bytes { offsets: a.offsets().clone(), values: a.values().clone() }
            }
            DataType::List(_) => {
                let a = column.as_list::<i32>();
                Layout::List { offsets: a.offsets().clone(), child: Box::new(Self::new(a.values().as_ref())?) }
            }
            DataType::Map(..) => {
                let a = column.as_map();
                Layout::List { offsets: a.offsets().clone(), child: Box::new(Self::new(a.entries())?) }
            }
            DataType::Struct(_) => Layout::Struct {
                children: column.as_struct().columns().iter().map(|c| Self::new(c.as_ref())).collect::<Option<_>>()?,
            },
            t if t.is_primitive() => {
                let width = t.primitive_width()?;
                let data = column.to_data();
                let values = data.buffers()[0].slice_with_length(data.offset() * width, data.len() * width);
                Layout::Fixed { values, width }
            }
            _ => return None,
        };
        Some(Self { nulls: column.nulls().cloned(), layout })
    }

    /// Whether row `a` holds the same value as row `b` (see the module's note on nulls).
    pub fn equal(&self, a: usize, b: usize) -> bool {
        self.ranges_equal(a, b, 1)
    }

    /// Whether the `len` rows from `a` are the same as the `len` rows from `b`.
    fn ranges_equal(&self, a: usize, b: usize, len: usize) -> bool {
        if let Some(nulls) = &self.nulls
            && (0..len).any(|k| nulls.is_valid(a + k) != nulls.is_valid(b + k))
        {
            return false;
        }
        match &self.layout {
            Layout::Fixed { values, width } => {
                values[a * width..(a + len) * width] == values[b * width..(b + len) * width]
            }
            Layout::Bytes { offsets, values } => {
                let (x, y) = (&offsets[a..=a + len], &offsets[b..=b + len]);
                same_lengths(x, y) && values[x[0] as usize..x[len] as usize] == values[y[0] as usize..y[len] as usize]
            }
            Layout::List { offsets, child } => {
                let (x, y) = (&offsets[a..=a + len], &offsets[b..=b + len]);
                same_lengths(x, y) && child.ranges_equal(x[0] as usize, y[0] as usize, (x[len] - x[0]) as usize)
            }
            Layout::Struct { children } => children.iter().all(|c| c.ranges_equal(a, b, len)),
        }
    }
}

/// Whether two windows of offsets delimit entries of the same lengths, one by one.
fn same_lengths(x: &[i32], y: &[i32]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(p, q)| p - x[0] == q - y[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, Int64Builder, ListBuilder, MapBuilder, StringBuilder, StructArray, UInt8Builder, make_comparator,
    };
    use arrow::compute::SortOptions;
    use arrow::datatypes::Field;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A row of an attributes map: entries of (key, value or null), or the whole row null.
    type MapRow = Option<Vec<(String, Option<String>)>>;

    fn map_column(rows: &[MapRow]) -> ArrayRef {
        let mut b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for row in rows {
            match row {
                None => b.append(false).unwrap(),
                Some(entries) => {
                    for (k, v) in entries {
                        b.keys().append_value(k);
                        b.values().append_option(v.as_deref());
                    }
                    b.append(true).unwrap();
                }
            }
        }
        Arc::new(b.finish())
    }

    fn list_column(rows: &[Option<Vec<u8>>]) -> ArrayRef {
        let mut b = ListBuilder::new(UInt8Builder::new());
        for row in rows {
            b.append_option(row.as_ref().map(|r| r.iter().map(|&v| Some(v))));
        }
        Arc::new(b.finish())
    }

    /// Rows `i` and `i + 1` compared both ways: `EqualRows` must never call different rows equal, and
    /// on what the builders write (no bytes under nulls) it must find every equal pair arrow finds.
    fn agrees_with_arrow(column: &dyn Array) {
        let rows = EqualRows::new(column).expect("a type it compares");
        let arrow = make_comparator(column, column, SortOptions::default()).unwrap();
        for i in 0..column.len().saturating_sub(1) {
            assert_eq!(rows.equal(i, i + 1), arrow(i, i + 1).is_eq(), "rows {i} and {}", i + 1);
        }
    }

    /// Short strings from a few letters, so that neighbours are often equal and different splits of
    /// the same bytes ("ab", "c" against "a", "bc") come up.
    fn text() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[abc]{0,3}").unwrap()
    }

    fn map_row() -> impl Strategy<Value = MapRow> {
        proptest::option::weighted(0.9, proptest::collection::vec((text(), proptest::option::of(text())), 0..3))
    }

    /// Rows drawn from a small pool and repeated, as resource attributes come.
    fn runs_of<T: Clone + std::fmt::Debug>(row: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
        proptest::collection::vec((row, 1..4usize), 0..24)
            .prop_map(|runs| runs.into_iter().flat_map(|(r, n)| std::iter::repeat_n(r, n)).collect())
    }

    proptest! {
        #[test]
        fn maps_compare_as_arrow_compares_them(rows in runs_of(map_row()), skip in 0..3usize) {
            let column = map_column(&rows);
            agrees_with_arrow(column.as_ref());
            // A slice starts its offsets mid-buffer.
            let skip = skip.min(column.len());
            agrees_with_arrow(column.slice(skip, column.len() - skip).as_ref());
        }

        #[test]
        fn lists_compare_as_arrow_compares_them(
            rows in runs_of(proptest::option::weighted(0.9, proptest::collection::vec(0..3u8, 0..4))),
            skip in 0..3usize,
        ) {
            let column = list_column(&rows);
            agrees_with_arrow(column.as_ref());
            let skip = skip.min(column.len());
            agrees_with_arrow(column.slice(skip, column.len() - skip).as_ref());
        }

        #[test]
        fn structs_of_strings_and_numbers_compare_as_arrow_compares_them(
            rows in runs_of((proptest::option::of(text()), proptest::option::of(0..3i64))),
            skip in 0..3usize,
        ) {
            let mut names = StringBuilder::new();
            let mut counts = Int64Builder::new();
            for (name, count) in &rows {
                names.append_option(name.as_deref());
                counts.append_option(*count);
            }
            let column: ArrayRef = Arc::new(StructArray::from(vec![
                (Arc::new(Field::new("name", DataType::Utf8, true)), Arc::new(names.finish()) as ArrayRef),
                (Arc::new(Field::new("count", DataType::Int64, true)), Arc::new(counts.finish()) as ArrayRef),
            ]));
            agrees_with_arrow(column.as_ref());
            let skip = skip.min(column.len());
            agrees_with_arrow(column.slice(skip, column.len() - skip).as_ref());
        }
    }

    #[test]
    fn the_same_bytes_split_otherwise_are_a_different_map() {
        let some = |kv: &[(&str, &str)]| Some(kv.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect());
        let column = map_column(&[
            some(&[("ab", "x"), ("c", "y")]),
            some(&[("a", "x"), ("bc", "y")]),
            some(&[("a", "xb"), ("c", "y")]),
            some(&[("a", "xb"), ("c", "y")]),
            None,
            None,
            some(&[]),
        ]);
        let rows = EqualRows::new(column.as_ref()).unwrap();
        let found: Vec<bool> = (0..6).map(|i| rows.equal(i, i + 1)).collect();
        assert_eq!(found, [false, false, true, false, true, false]);
    }

    #[test]
    fn a_type_it_does_not_lay_out_is_left_to_arrow() {
        let column: ArrayRef = Arc::new(arrow::array::BooleanArray::from(vec![true, true]));
        assert!(EqualRows::new(column.as_ref()).is_none());
    }
}
