//! The order of a row group's rows: the table's sort key, and each row's key as numbers that order as
//! its values do, so that sorting compares integers and never the rows' strings or maps.

use arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, RecordBatch, StringArray};
use arrow::datatypes::{Int32Type, TimestampNanosecondType};
use arrow::error::ArrowError;
use arrow::row::{Row, RowConverter, SortField};

/// The sort key of a table's row groups, measured with `openwit-bench --storage-only --sort-by`
/// (docs/BENCHMARKS.md, "Sort keys"):
/// - metric points by `metric_name` after the service, so that a series' points sit together (19.1
///   bytes instead of 22.3);
/// - spans by (`service_name`, `trace_id`, `time`) took more bytes (44.0 instead of 42.9), logs by
///   severity the same;
/// - `resource_attributes` after the service (a service's instances, which interleave in time, one
///   after the other) saved its resource columns ~0.8 bytes a row but cost the times nearly as much
///   (each instance's rows are further apart): 1–2 % fewer bytes, for more of the writer's CPU and
///   pages that each span a longer time.
///
/// All keep `time` last, which keeps each page's time range tight.
pub fn sort_by(table: &str) -> Vec<String> {
    let key: &[&str] = match table {
        "metrics" => &["service_name", "metric_name", "time"],
        _ => &["service_name", "time"],
    };
    key.iter().map(|c| c.to_string()).collect()
}

/// (batch, row) pairs of `batches` in the order of the `sort_by` columns their batches all have (nulls
/// first; rows of equal keys keep their order).
pub fn sorted_order(batches: &[RecordBatch], sort_by: &[String]) -> Result<Vec<(usize, usize)>, ArrowError> {
    // Sized first: collected from a flat map, the vector grew by doubling (copies and page faults).
    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
    pairs.extend(batches.iter().enumerate().flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r))));
    let present: Vec<&String> =
        sort_by.iter().filter(|k| batches.iter().all(|b| b.column_by_name(k).is_some())).collect();
    if present.is_empty() || pairs.len() < 2 {
        return Ok(pairs);
    }
    let keys = row_keys(batches, &present)?;
    let k = present.len();
    if let Some(packed) = packed(&keys, k) {
        return Ok(packed.into_iter().map(|v| pairs[(v & u128::from(u32::MAX)) as usize]).collect());
    }
    let mut order: Vec<u32> = (0..pairs.len() as u32).collect();
    // A stable sort: rows of equal keys keep their order.
    order.sort_by(|&a, &b| keys[a as usize * k..][..k].cmp(&keys[b as usize * k..][..k]));
    Ok(order.into_iter().map(|i| pairs[i as usize]).collect())
}

/// Each row's key numbers (`k` a row in `keys`) and its index packed into one integer that orders as
/// (key, index) does, sorted; `None` if they take more than 128 bits. The key numbers are ranks (a few
/// bits) and times (64), so a row group's rows fit. Sorting these integers in place instead of indices
/// that compare slices of `keys` took the row group's order from 2.5 % of the daemon's samples storing
/// metric points to 0.6, the pairs sized first too (docs/BENCHMARKS.md, "the sort's keys packed").
fn packed(keys: &[u64], k: usize) -> Option<Vec<u128>> {
    let rows = keys.len() / k;
    let mut widths = vec![0u32; k];
    for row in keys.chunks_exact(k) {
        for (w, &v) in widths.iter_mut().zip(row) {
            *w = (*w).max(64 - v.leading_zeros());
        }
    }
    // The index takes the low 32 bits.
    if rows > u32::MAX as usize || widths.iter().sum::<u32>() + 32 > 128 {
        return None;
    }
    let mut packed: Vec<u128> = keys
        .chunks_exact(k)
        .enumerate()
        .map(|(i, row)| {
            let key = row.iter().zip(&widths).fold(0u128, |acc, (&v, &w)| (acc << w) | u128::from(v));
            (key << 32) | i as u128
        })
        .collect();
    // Unstable is stable here: no two rows pack the same (their indices differ).
    packed.sort_unstable();
    Some(packed)
}

/// Each row's sort key as `columns.len()` numbers (row after row) that order as the values do: a
/// timestamp by its value; any other value by its rank among the distinct values of every batch (0:
/// null). A dictionary's values are ranked once each, not per row: the buffered rows hold a resource's
/// attributes as a dictionary over their runs (`runs`), and `service_name` is one.
fn row_keys(batches: &[RecordBatch], columns: &[&String]) -> Result<Vec<u64>, ArrowError> {
    let k = columns.len();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut keys = vec![0u64; rows * k];
    for (c, name) in columns.iter().enumerate() {
        let cols: Vec<&ArrayRef> = batches.iter().filter_map(|b| b.column_by_name(name)).collect();
        let mut row = 0;
        if let Some(times) = cols
            .iter()
            .map(|a| a.as_primitive_opt::<TimestampNanosecondType>().filter(|t| t.null_count() == 0))
            .collect::<Option<Vec<_>>>()
        {
            for t in times {
                for (i, v) in t.values().iter().enumerate() {
                    // Flipping the sign bit orders signed values as unsigned ones.
                    keys[(row + i) * k + c] = (*v as u64) ^ (1 << 63);
                }
                row += t.len();
            }
        } else {
            // A batch's column may be a dictionary (its values ranked, its keys looked up) or not (its
            // values are the rows), batch by batch: rows are held by runs only where they repeat.
            let dicts: Vec<Option<&DictionaryArray<Int32Type>>> =
                cols.iter().map(|a| a.as_dictionary_opt::<Int32Type>()).collect();
            let values: Vec<&ArrayRef> = cols.iter().zip(&dicts).map(|(a, d)| d.map_or(*a, |d| d.values())).collect();
            for ((a, d), rank) in cols.iter().zip(&dicts).zip(ranks(&values)?) {
                match d {
                    Some(d) => {
                        for (i, key) in d.keys().iter().enumerate() {
                            keys[(row + i) * k + c] = key.and_then(|x| rank.get(x as usize).copied()).unwrap_or(0);
                        }
                    }
                    None => {
                        for (i, r) in rank.iter().enumerate() {
                            keys[(row + i) * k + c] = *r;
                        }
                    }
                }
                row += a.len();
            }
        }
    }
    Ok(keys)
}

/// The rank of each element of each of `arrays` among the distinct values of all of them, in order
/// (0: null, then 1, 2, … ; equal values share a rank). Strings are compared as they are; other values
/// (maps, lists, numbers) through Arrow's row format, whose bytes order as the values do.
fn ranks(arrays: &[&ArrayRef]) -> Result<Vec<Vec<u64>>, ArrowError> {
    if let Some(strings) = arrays.iter().map(|a| a.as_string_opt::<i32>()).collect::<Option<Vec<&StringArray>>>() {
        let mut all: Vec<&str> = strings.iter().flat_map(|v| v.iter().flatten()).collect();
        all.sort_unstable();
        all.dedup();
        return Ok(strings
            .iter()
            .map(|v| v.iter().map(|s| s.map_or(0, |s| all.binary_search(&s).map_or(0, |r| r as u64 + 1))).collect())
            .collect());
    }
    let Some(first) = arrays.first() else { return Ok(Vec::new()) };
    let converter = RowConverter::new(vec![SortField::new(first.data_type().clone())])?;
    let encoded: Vec<arrow::row::Rows> =
        arrays.iter().map(|a| converter.convert_columns(&[ArrayRef::clone(a)])).collect::<Result<_, _>>()?;
    let mut all: Vec<Row<'_>> = encoded.iter().flat_map(|r| r.iter()).collect();
    all.sort_unstable();
    all.dedup();
    Ok(arrays
        .iter()
        .zip(&encoded)
        .map(|(a, rows)| {
            (0..a.len())
                .map(|i| if a.is_null(i) { 0 } else { all.binary_search(&rows.row(i)).map_or(0, |r| r as u64 + 1) })
                .collect()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, MapBuilder, StringBuilder, StringDictionaryBuilder, TimestampNanosecondArray};
    use std::sync::Arc;

    /// A row: service (`svc-N` or null), resource (null, or `N` attributes `k0=v…`), time.
    type KeyRow = (Option<u8>, Option<u8>, i64);

    fn resource(n: u8) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("k{i}"), format!("v{}", n - i))).collect()
    }

    /// Batches of (`service_name` as a dictionary with an unused value, `resource_attributes` as a map or,
    /// when `by_runs`, as a dictionary over maps as the buffered rows hold it, `time`).
    fn keyed(batches: &[(bool, Vec<KeyRow>)]) -> Vec<RecordBatch> {
        batches
            .iter()
            .map(|(by_runs, rows)| {
                let unused = StringArray::from(vec!["unused"]);
                let mut names = StringDictionaryBuilder::<Int32Type>::new_with_dictionary(rows.len(), &unused).unwrap();
                for (n, _, _) in rows {
                    match n {
                        Some(n) => names.append_value(format!("svc-{n}")),
                        None => names.append_null(),
                    }
                }
                let maps = |resources: &mut dyn Iterator<Item = Option<u8>>| {
                    let mut b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
                    for r in resources {
                        if let Some(r) = r {
                            for (k, v) in resource(r) {
                                b.keys().append_value(k);
                                b.values().append_value(v);
                            }
                        }
                        b.append(r.is_some()).unwrap();
                    }
                    b.finish()
                };
                let res: ArrayRef = if *by_runs {
                    // Every resource once, in an order of its own, plus a null one: keys point at them.
                    let values = maps(&mut [Some(3), None, Some(0), Some(2), Some(1)].into_iter());
                    let keys: Int32Array =
                        rows.iter().map(|(_, r, _)| Some(r.map_or(1, |r| [2, 4, 3, 0][usize::from(r)]))).collect();
                    Arc::new(DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap())
                } else {
                    Arc::new(maps(&mut rows.iter().map(|r| r.1)))
                };
                let times = TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.2));
                RecordBatch::try_from_iter([
                    ("service_name", Arc::new(names.finish()) as ArrayRef),
                    ("resource_attributes", res),
                    ("time", Arc::new(times) as ArrayRef),
                ])
                .unwrap()
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn rows_are_ordered_by_their_keys_values_nulls_first_ties_kept(
            batches in proptest::collection::vec(
                (proptest::bool::ANY,
                 proptest::collection::vec((proptest::option::of(0u8..6), proptest::option::of(0u8..4), -3i64..3), 1..40)),
                1..5),
        ) {
            let rb = keyed(&batches);
            let key = ["service_name", "resource_attributes", "time"].map(String::from);
            let got = sorted_order(&rb, &key).unwrap();
            // The reference: (name, resource's attributes, time), None first, then the rows' order.
            let mut want: Vec<(usize, usize)> =
                batches.iter().enumerate().flat_map(|(b, (_, rows))| (0..rows.len()).map(move |r| (b, r))).collect();
            let row = |b: usize, r: usize| {
                let (n, res, t) = batches[b].1[r];
                (n.map(|n| format!("svc-{n}")), res.map(resource), t)
            };
            want.sort_by_key(|&(b, r)| row(b, r));
            proptest::prop_assert_eq!(&got, &want);
        }
    }

    #[test]
    fn keys_too_wide_to_pack_are_sorted_as_slices_and_the_same() {
        // Two times of 64 bits each and the index do not fit in 128 bits: the slices' sort orders them.
        let t = |v: Vec<i64>| Arc::new(TimestampNanosecondArray::from(v)) as ArrayRef;
        let rb = RecordBatch::try_from_iter([("a", t(vec![2, -1, 2, 0])), ("b", t(vec![5, 7, -5, 7]))]).unwrap();
        let wide = ["a", "b"].map(String::from);
        let keys = row_keys(std::slice::from_ref(&rb), &[&wide[0], &wide[1]]).unwrap();
        assert!(packed(&keys, 2).is_none());
        assert_eq!(sorted_order(std::slice::from_ref(&rb), &wide).unwrap(), vec![(0, 1), (0, 3), (0, 2), (0, 0)]);
        // One of them packs, ties kept in their rows' order.
        let keys = row_keys(std::slice::from_ref(&rb), &[&wide[0]]).unwrap();
        assert!(packed(&keys, 1).is_some());
        assert_eq!(sorted_order(&[rb], &wide[..1]).unwrap(), vec![(0, 1), (0, 3), (0, 0), (0, 2)]);
    }

    #[test]
    fn strings_as_they_are_are_ranked_too() {
        let rb = RecordBatch::try_from_iter([(
            "service_name",
            Arc::new(StringArray::from(vec![Some("b"), None, Some("a")])) as ArrayRef,
        )])
        .unwrap();
        let got = sorted_order(&[rb.clone(), rb], &["service_name".to_string()]).unwrap();
        assert_eq!(got, vec![(0, 1), (1, 1), (0, 2), (1, 2), (0, 0), (1, 0)]);
    }

    #[test]
    fn key_columns_a_batch_lacks_order_nothing() {
        let rb = keyed(&[(false, vec![(Some(1), None, 2), (Some(0), None, 5), (Some(0), None, 1)])]);
        let key = ["service_name", "no_such_column", "time"].map(String::from);
        assert_eq!(sorted_order(&rb, &key).unwrap(), vec![(0, 2), (0, 1), (0, 0)]);
    }
}
