//! Dictionary-encoded column chunks of bytes and maps of bytes, written here instead of by the
//! `parquet` crate.
//!
//! The crate's writer interns every value it is given, one hash and compare per row, even when it is
//! handed a dictionary array (`parquet::arrow::arrow_writer::byte_array`), and before that the writer
//! gathered each column's sorted rows into a new array for it (`interleave`, copying every attribute
//! key and value). Its encoder is crate-private, so it cannot be given a dictionary or read the
//! buffered batches where they are; instead such columns are encoded here, from where the rows are
//! held ([`super::runs::BufferedColumn::encodable`]): a column held by runs ([`super::runs`]) as its
//! runs' values, each run's values interned once and each row's dictionary indices and levels copied
//! from its run (a resource's 13 attributes on every row of it); any other as the buffered batches'
//! arrays, each row's values interned in place (a span's own attributes, no copy). The pages (a
//! dictionary page, then data pages v1 of RLE/bit-packed indices, zstd-compressed as the crate would)
//! are spliced into the row group with `append_column`, so the file is the crate's format throughout
//! and reads as before (docs/BENCHMARKS.md, "runs' column chunks encoded by OpenWit" and "a span's
//! attributes encoded in place").
//!
//! Only where nothing else is asked of the column: no statistics, no bloom filter, the dictionary
//! enabled, data pages v1, zstd or no compression ([`applies`]), and the dictionary under its page
//! limit. Anything else (and any shape the levels here do not cover) is left to the crate's writer:
//! [`encode`] says `None`.

use arrow::array::{Array, ArrayRef, AsArray};
use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use std::collections::HashMap;

/// One leaf's column chunk, to be appended to the row group as it is.
pub struct Chunk {
    pub bytes: Bytes,
    pub close: ColumnCloseResult,
}

/// Whether `props` asks nothing of the leaves `leaves` but what this encoder writes: no statistics,
/// no bloom filter, a dictionary, data pages v1, zstd or no compression.
pub fn applies(leaves: &[ColumnDescPtr], props: &WriterProperties) -> bool {
    props.writer_version() == WriterVersion::PARQUET_1_0
        && leaves.iter().all(|leaf| {
            let path = leaf.path();
            props.statistics_enabled(path) == EnabledStatistics::None
                && props.bloom_filter_properties(path).is_none()
                && props.dictionary_enabled(path)
                && matches!(props.compression(path), Compression::ZSTD(_) | Compression::UNCOMPRESSED)
        })
}

/// The column chunks (one per leaf: a map has two) of the rows `rows`, for the leaves `leaves` as
/// `props` says to write them; `None` where this encoder does not apply (see the module's doc). Each
/// row is an index into the values of `parts` one after the other (bytes, or maps of bytes: runs'
/// values, or rows).
pub fn encode(
    parts: &[ArrayRef],
    rows: &[i32],
    leaves: &[ColumnDescPtr],
    props: &WriterProperties,
) -> Result<Option<Vec<Chunk>>, ParquetError> {
    if rows.is_empty() || !applies(leaves, props) {
        return Ok(None);
    }
    let mut used = vec![false; parts.iter().map(|p| p.len()).sum()];
    for &r in rows {
        used[r as usize] = true;
    }
    let Some(templates) = templates(parts, &used, leaves)? else { return Ok(None) };
    if templates.iter().any(|t| t.dictionary.is_empty() || t.plain_bytes > props.dictionary_page_size_limit()) {
        return Ok(None);
    }
    let mut chunks = Vec::with_capacity(leaves.len());
    for (leaf, template) in leaves.iter().zip(templates) {
        chunks.push(write_chunk(leaf, &template, rows, props)?);
    }
    Ok(Some(chunks))
}

/// One leaf's levels and dictionary indices for each value of the parts (a run's, or a row's: "a run"
/// below), and its dictionary. A page's levels and indices are its rows' runs' slices of these, copied
/// whole (a resource's 13 attributes are 13 entries of every row of its run).
struct Template<'a> {
    /// The definition level of each run's entries (a null or an empty map has one, without a value).
    defs: Vec<u32>,
    /// The dictionary index of each run's values (entries with one).
    ids: Vec<u32>,
    /// Where each run's entries and values start in `defs` and `ids`: run `r`'s from `starts[r]` to
    /// `starts[r + 1]`.
    starts: Vec<(u32, u32)>,
    /// The longest run's entries, for the repetition levels (0, then 1 for each further entry).
    widest: usize,
    /// The distinct values, in the order of their indices.
    dictionary: Vec<&'a [u8]>,
    /// The dictionary page's size, plain-encoded (a 4-byte length before each value).
    plain_bytes: usize,
    /// Each value's index. ahash, as the crate's own interner: SipHash made interning the runs'
    /// values a fifth of this encoder's time.
    index: HashMap<&'a [u8], u32, ahash::RandomState>,
    /// For a map's values: the dictionary index of the key each dictionary value first came with.
    first_key: Vec<u32>,
}

impl<'a> Template<'a> {
    /// A template for `runs` runs of up to `entries` entries in all: the vectors sized once (growing
    /// them by doubling copied and faulted in a chunk's levels several times over: ~3 % of the
    /// daemon's CPU storing spans, their attributes' levels).
    fn new(runs: usize, entries: usize) -> Self {
        let mut starts = Vec::with_capacity(runs + 1);
        starts.push((0, 0));
        Template {
            defs: Vec::with_capacity(entries),
            ids: Vec::with_capacity(entries),
            starts,
            widest: 0,
            dictionary: Vec::new(),
            plain_bytes: 0,
            index: HashMap::default(),
            first_key: Vec::new(),
        }
    }

    /// Appends a value; says its dictionary index.
    fn value(&mut self, def: i16, v: &'a [u8]) -> u32 {
        let next = self.dictionary.len() as u32;
        let id = *self.index.entry(v).or_insert(next);
        if id == next {
            self.dictionary.push(v);
            self.plain_bytes += 4 + v.len();
        }
        self.defs.push(def as u32);
        self.ids.push(id);
        id
    }

    /// Appends a map's value that came with the key of dictionary index `key`.
    fn value_of_key(&mut self, def: i16, v: &'a [u8], key: u32) {
        if self.value(def, v) as usize == self.first_key.len() {
            self.first_key.push(key);
        }
    }

    /// Renumbers a map's values' dictionary: grouped by the key each first came with, and within a key
    /// ordered by their first 8 bytes (then as they came). Interned as they came, one key's values were
    /// spread over the whole dictionary; side by side, similar values (paths, addresses, queries of one
    /// shape) make the dictionary page compress better: a span's attribute values 11.1 → 9.7 bytes
    /// (docs/BENCHMARKS.md, "attribute values' dictionary grouped by key"). The first 8 bytes sort as
    /// well as whole values there, and one `u128` per value sorts without comparing slices.
    fn group_by_key(&mut self) {
        if self.first_key.len() != self.dictionary.len() || self.dictionary.len() < 3 {
            return;
        }
        let mut order: Vec<u128> = (self.dictionary.iter().zip(&self.first_key).enumerate())
            .map(|(i, (v, &key))| {
                let mut prefix = [0u8; 8];
                let n = v.len().min(8);
                prefix[..n].copy_from_slice(&v[..n]);
                (u128::from(key) << 96) | (u128::from(u64::from_be_bytes(prefix)) << 32) | i as u128
            })
            .collect();
        order.sort_unstable();
        let mut renumbered = vec![0u32; order.len()];
        let dictionary = order
            .iter()
            .enumerate()
            .map(|(new, &o)| {
                let old = o as u32 as usize;
                renumbered[old] = new as u32;
                self.dictionary[old]
            })
            .collect();
        self.dictionary = dictionary;
        for id in &mut self.ids {
            *id = renumbered[*id as usize];
        }
        // The interner's indices are the old ones; nothing is interned after this.
        self.index = HashMap::default();
    }

    /// An entry without a value: a null, an empty map, a null map value.
    fn level(&mut self, def: i16) {
        self.defs.push(def as u32);
    }

    fn end_run(&mut self) {
        let &(start, _) = self.starts.last().expect("starts at (0, 0)");
        self.widest = self.widest.max(self.defs.len() - start as usize);
        self.starts.push((self.defs.len() as u32, self.ids.len() as u32));
    }

    /// Run `r`'s definition levels and dictionary indices.
    fn run(&self, r: usize) -> (&[u32], &[u32]) {
        let ((d0, i0), (d1, i1)) = (self.starts[r], self.starts[r + 1]);
        (&self.defs[d0 as usize..d1 as usize], &self.ids[i0 as usize..i1 as usize])
    }
}

/// Bytes of one of arrow's byte array types, by index.
enum ByteValues<'a> {
    Utf8(&'a arrow::array::StringArray),
    LargeUtf8(&'a arrow::array::LargeStringArray),
    Binary(&'a arrow::array::BinaryArray),
    LargeBinary(&'a arrow::array::LargeBinaryArray),
}

impl<'a> ByteValues<'a> {
    fn of(a: &'a dyn Array) -> Option<Self> {
        if let Some(s) = a.as_string_opt::<i32>() {
            Some(ByteValues::Utf8(s))
        } else if let Some(s) = a.as_string_opt::<i64>() {
            Some(ByteValues::LargeUtf8(s))
        } else if let Some(b) = a.as_binary_opt::<i32>() {
            Some(ByteValues::Binary(b))
        } else {
            a.as_binary_opt::<i64>().map(ByteValues::LargeBinary)
        }
    }

    fn value(&self, i: usize) -> &'a [u8] {
        match self {
            ByteValues::Utf8(a) => a.value(i).as_bytes(),
            ByteValues::LargeUtf8(a) => a.value(i).as_bytes(),
            ByteValues::Binary(a) => a.value(i),
            ByteValues::LargeBinary(a) => a.value(i),
        }
    }
}

/// Each leaf's [`Template`] over the values of `parts` (those `used` interned), or `None` if a part
/// is not bytes or a map of bytes laid out as the levels here assume.
fn templates<'a>(
    parts: &'a [ArrayRef],
    used: &[bool],
    leaves: &[ColumnDescPtr],
) -> Result<Option<Vec<Template<'a>>>, ParquetError> {
    let count = used.len();
    let mut used = used.iter();
    if let [leaf] = leaves {
        let def = leaf.max_def_level();
        if leaf.max_rep_level() != 0 || def > 1 {
            return Ok(None);
        }
        let mut t = Template::new(count, count);
        for part in parts {
            let Some(bytes) = ByteValues::of(part.as_ref()) else { return Ok(None) };
            if def == 0 && part.null_count() > 0 {
                return Ok(None);
            }
            for (r, &used) in used.by_ref().take(part.len()).enumerate() {
                if used {
                    if part.is_valid(r) {
                        t.value(def, bytes.value(r));
                    } else {
                        t.level(0)
                    }
                }
                t.end_run();
            }
        }
        return Ok(Some(vec![t]));
    }
    let [key_leaf, value_leaf] = leaves else { return Ok(None) };
    // Levels: the map (optional if nullable), its repeated key_value group, the value (optional if
    // nullable); the key is required.
    let (kdef, vdef) = (key_leaf.max_def_level(), value_leaf.max_def_level());
    let nullable_map = kdef == 2;
    if key_leaf.max_rep_level() != 1
        || value_leaf.max_rep_level() != 1
        || !(kdef == 1 || kdef == 2)
        || !(vdef == kdef || vdef == kdef + 1)
    {
        return Ok(None);
    }
    // Entries in all: each map's, or one level for a null or empty map.
    let mut entries = count;
    for part in parts {
        if let Some(map) = part.as_map_opt() {
            let offsets = map.value_offsets();
            entries += (offsets[offsets.len() - 1] - offsets[0]) as usize;
        }
    }
    let (mut k, mut v) = (Template::new(count, entries), Template::new(count, entries));
    for part in parts {
        let Some(map) = part.as_map_opt() else { return Ok(None) };
        let (Some(keys), Some(vals)) = (ByteValues::of(map.keys().as_ref()), ByteValues::of(map.values().as_ref()))
        else {
            return Ok(None);
        };
        let shape_known = (nullable_map || map.null_count() == 0)
            && (vdef > kdef || map.values().null_count() == 0)
            && map.keys().null_count() == 0;
        if !shape_known {
            return Ok(None);
        }
        let offsets = map.value_offsets();
        for (r, &used) in used.by_ref().take(map.len()).enumerate() {
            if used {
                let (start, end) = (offsets[r] as usize, offsets[r + 1] as usize);
                if map.is_null(r) {
                    k.level(0);
                    v.level(0);
                } else if start == end {
                    k.level(kdef - 1);
                    v.level(kdef - 1);
                } else {
                    for e in start..end {
                        let key = k.value(kdef, keys.value(e));
                        if map.values().is_valid(e) {
                            v.value_of_key(vdef, vals.value(e), key)
                        } else {
                            v.level(vdef - 1)
                        }
                    }
                }
            }
            k.end_run();
            v.end_run();
        }
    }
    v.group_by_key();
    Ok(Some(vec![k, v]))
}

/// Bits needed for values up to `max`.
fn bits_for(max: u64) -> u8 {
    (64 - max.leading_zeros()) as u8
}

/// The bit width of a dictionary of `len` values' indices: the fewest bits that hold them, but a whole
/// byte where that is one to eight. Parquet lets a page declare any width up to 32, and zstd, which reads bytes,
/// finds a byte per index where it finds nothing in indices of 7 bits straddling bytes: rows that
/// repeat a resource's 13 attributes (rows of a few instances interleaved in time) came out 0.27 bytes
/// a row smaller in all three tables, a third of `resource_attributes` (docs/BENCHMARKS.md, "indices
/// a byte wide"). Rounding wider indices up to whole bytes gained next to nothing (a span's attributes,
/// 17 bits: 11.90 → 11.87 bytes) for more bytes to compress.
fn index_bits(len: usize) -> u8 {
    match bits_for(len.saturating_sub(1) as u64) {
        0 => 0,
        1..=8 => 8,
        wider => wider,
    }
}

/// Writes one leaf's chunk: its dictionary page, then a data page per page's worth of rows.
fn write_chunk(
    leaf: &ColumnDescPtr,
    t: &Template<'_>,
    rows: &[i32],
    props: &WriterProperties,
) -> Result<Chunk, ParquetError> {
    let path = leaf.path();
    let codec = props.compression(path);
    let mut zstd = match codec {
        Compression::ZSTD(level) => Some(
            zstd::bulk::Compressor::new(level.compression_level())
                .map_err(|e| ParquetError::General(format!("zstd: {e}")))?,
        ),
        _ => None,
    };
    let mut compress = |buf: Vec<u8>| -> Result<(Bytes, usize), ParquetError> {
        let len = buf.len();
        match zstd.as_mut() {
            Some(z) => {
                Ok((Bytes::from(z.compress(&buf).map_err(|e| ParquetError::General(format!("zstd: {e}")))?), len))
            }
            None => Ok((Bytes::from(buf), len)),
        }
    };
    let (max_def, max_rep) = (leaf.max_def_level(), leaf.max_rep_level());
    let id_bits = index_bits(t.dictionary.len());
    let (def_bits, rep_bits) = (bits_for(max_def as u64), bits_for(max_rep as u64));
    // Each page's unencoded bytes in the offset index, as the crate's writer records them for byte arrays
    // (a reader may size its buffers by them).
    let lens: Vec<i64> = t.dictionary.iter().map(|v| v.len() as i64).collect();

    let mut sink = TrackedWrite::new(Vec::new());
    let mut offsets = (!props.offset_index_disabled()).then(OffsetIndexBuilder::new);
    let mut num_values = 0i64;
    let mut data_pages = 0;
    let mut data_page_offset = None;
    let (compressed, uncompressed, written) = {
        let mut pages = SerializedPageWriter::new(&mut sink);
        let mut plain = Vec::with_capacity(t.plain_bytes);
        for v in &t.dictionary {
            plain.extend_from_slice(&(v.len() as u32).to_le_bytes());
            plain.extend_from_slice(v);
        }
        let (buf, len) = compress(plain)?;
        let dictionary = Page::DictionaryPage {
            buf,
            num_values: t.dictionary.len() as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let spec = pages.write_page(CompressedPage::new(dictionary, len))?;
        let (mut compressed, mut uncompressed, mut written) =
            (spec.compressed_size as i64, spec.uncompressed_size as i64, spec.bytes_written);

        let row_limit = props.data_page_row_count_limit().max(1);
        let byte_limit = props.column_data_page_size_limit(path).max(1);
        let (mut defs, mut reps, mut ids) = (Vec::new(), Vec::new(), Vec::new());
        // A run's repetition levels: 0 for its first entry, 1 for the others.
        let rep_levels: Vec<u32> = (0..t.widest).map(|j| u32::from(j > 0)).collect();
        // A page's levels and indices in bits, before the hybrid encoding's runs and zstd.
        let bits = |entries: usize, ids: usize| entries * (def_bits + rep_bits) as usize + ids * id_bits as usize;
        let mut at = 0;
        while at < rows.len() {
            // A page's rows: up to the row limit, and until its levels and indices would pass the size
            // limit (estimated before zstd, as the crate's writer does). Counted first, so that the
            // page's vectors are sized once.
            let (mut page_rows, mut entries, mut values) = (0, 0, 0);
            while at + page_rows < rows.len() && page_rows < row_limit && bits(entries, values) / 8 < byte_limit {
                let r = rows[at + page_rows] as usize;
                let ((d0, i0), (d1, i1)) = (t.starts[r], t.starts[r + 1]);
                entries += (d1 - d0) as usize;
                values += (i1 - i0) as usize;
                page_rows += 1;
            }
            defs.clear();
            reps.clear();
            ids.clear();
            defs.reserve(entries);
            ids.reserve(values);
            if max_rep > 0 {
                reps.reserve(entries);
            }
            for &r in &rows[at..at + page_rows] {
                let (run_defs, run_ids) = t.run(r as usize);
                defs.extend_from_slice(run_defs);
                if max_rep > 0 {
                    reps.extend_from_slice(&rep_levels[..run_defs.len()]);
                }
                ids.extend_from_slice(run_ids);
            }
            at += page_rows;

            let mut buf = Vec::with_capacity(bits(entries, values) / 8 + 64);
            if max_rep > 0 {
                levels(&reps, rep_bits, &mut buf);
            }
            if max_def > 0 {
                levels(&defs, def_bits, &mut buf);
            }
            buf.push(id_bits);
            hybrid(&ids, id_bits, &mut buf);
            let (buf, len) = compress(buf)?;
            let page = Page::DataPage {
                buf,
                num_values: defs.len() as u32,
                encoding: Encoding::RLE_DICTIONARY,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            };
            let spec = pages.write_page(CompressedPage::new(page, len))?;
            data_page_offset.get_or_insert(spec.offset as i64);
            if let Some(o) = offsets.as_mut() {
                o.append_row_count(page_rows as i64);
                o.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
                o.append_unencoded_byte_array_data_bytes(Some(ids.iter().map(|&i| lens[i as usize]).sum()));
            }
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            written += spec.bytes_written;
            num_values += defs.len() as i64;
            data_pages += 1;
        }
        pages.close()?;
        (compressed, uncompressed, written)
    };
    let metadata = ColumnChunkMetaData::builder(leaf.clone())
        .set_compression(codec)
        .set_encodings(vec![Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY])
        .set_page_encoding_stats(vec![
            PageEncodingStats { page_type: PageType::DICTIONARY_PAGE, encoding: Encoding::PLAIN, count: 1 },
            PageEncodingStats { page_type: PageType::DATA_PAGE, encoding: Encoding::RLE_DICTIONARY, count: data_pages },
        ])
        .set_total_compressed_size(compressed)
        .set_total_uncompressed_size(uncompressed)
        .set_num_values(num_values)
        .set_data_page_offset(data_page_offset.unwrap_or(0))
        .set_dictionary_page_offset(Some(0))
        .build()?;
    let close = ColumnCloseResult {
        bytes_written: written,
        rows_written: rows.len() as u64,
        metadata,
        bloom_filter: None,
        column_index: None,
        offset_index: offsets.map(OffsetIndexBuilder::build),
    };
    Ok(Chunk { bytes: Bytes::from(sink.into_inner()?), close })
}

/// Levels as a data page v1 holds them: their RLE/bit-packed bytes after a 4-byte length.
fn levels(values: &[u32], bits: u8, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    hybrid(values, bits, out);
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// A run this long or longer is written as one repeated value; shorter ones are bit-packed.
const MIN_REPEAT: usize = 8;

/// Parquet's RLE/bit-packed hybrid encoding of `values` at `bits` bits each: runs of at least
/// [`MIN_REPEAT`] equal values as (count, value), the rest bit-packed in groups of eight (the last group
/// padded with zeros: a reader stops at the page's value count).
fn hybrid(values: &[u32], bits: u8, out: &mut Vec<u8>) {
    // Whether a run of at least MIN_REPEAT values starts at `i`: its first MIN_REPEAT compared at once.
    let repeats_at = |i: usize| values.get(i..i + MIN_REPEAT).is_some_and(|w| w.iter().all(|&v| v == w[0]));
    let mut i = 0;
    while i < values.len() {
        if repeats_at(i) {
            let v = values[i];
            let run = MIN_REPEAT + values[i + MIN_REPEAT..].iter().take_while(|&&x| x == v).count();
            varint((run as u64) << 1, out);
            out.extend_from_slice(&v.to_le_bytes()[..(bits as usize).div_ceil(8)]);
            i += run;
            continue;
        }
        // Groups of eight until a long run starts (or the values end).
        let start = i;
        let mut groups = 0u64;
        loop {
            i += 8;
            groups += 1;
            if i >= values.len() || repeats_at(i) {
                break;
            }
        }
        varint((groups << 1) | 1, out);
        pack(&values[start..i.min(values.len())], groups as usize * 8, bits, out);
        i = i.min(values.len());
    }
}

/// `values` bit-packed at `bits` bits each, least significant bit first, padded to `count` values (a
/// multiple of eight).
fn pack(values: &[u32], count: usize, bits: u8, out: &mut Vec<u8>) {
    let width = bits as usize;
    if width == 8 {
        // A byte per value (dictionary indices, [`index_bits`]).
        out.extend(values.iter().map(|&v| v as u8));
        out.resize(out.len() + count - values.len(), 0);
        return;
    }
    if width <= 16 {
        // Eight values of up to 16 bits fill at most 16 bytes: one 128-bit word per group, `width` bytes
        // of it kept (dictionary indices under 65,536 values, and every level).
        out.reserve(count / 8 * width);
        for group in 0..count / 8 {
            let mut word = 0u128;
            for k in 0..8 {
                let v = values.get(group * 8 + k).copied().unwrap_or(0) as u128;
                word |= v << (k * width);
            }
            out.extend_from_slice(&word.to_le_bytes()[..width]);
        }
        return;
    }
    pack_bitwise(values, count, bits, out);
}

/// [`pack`] a value at a time: any width up to 32 bits.
fn pack_bitwise(values: &[u32], count: usize, bits: u8, out: &mut Vec<u8>) {
    let (mut acc, mut held) = (0u64, 0u32);
    for k in 0..count {
        let v = values.get(k).copied().unwrap_or(0) as u64;
        acc |= v << held;
        held += bits as u32;
        while held >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            held -= 8;
        }
    }
    if held > 0 {
        out.push(acc as u8);
    }
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{MapBuilder, StringBuilder, UInt32Array};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::ArrowSchemaConverter;
    use parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelectionPolicy,
    };
    use parquet::basic::ZstdLevel;
    use parquet::file::metadata::PageIndexPolicy;
    use parquet::file::writer::SerializedFileWriter;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A runs' value: `None` null; for a map, its entries (a value `None` null).
    type Run = Option<Vec<(u8, Option<u8>)>>;

    fn strings(runs: &[Run]) -> ArrayRef {
        let mut b = StringBuilder::new();
        for r in runs {
            // The first entry's key names the string; a run without entries is the empty string.
            match r {
                None => b.append_null(),
                Some(e) => b.append_value(e.first().map_or(String::new(), |(k, _)| format!("text-{k}"))),
            }
        }
        Arc::new(b.finish())
    }

    fn maps(runs: &[Run]) -> ArrayRef {
        // Parquet's own names for a map's parts, so that the file reads back as the same type.
        let names = arrow::array::MapFieldNames { entry: "key_value".into(), key: "key".into(), value: "value".into() };
        let mut b = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new());
        for r in runs {
            match r {
                None => b.append(false).unwrap(),
                Some(entries) => {
                    for (k, v) in entries {
                        b.keys().append_value(format!("key-{k}"));
                        match v {
                            Some(v) => b.values().append_value(format!("{v}").repeat(1 + *v as usize % 3)),
                            None => b.values().append_null(),
                        }
                    }
                    b.append(true).unwrap();
                }
            }
        }
        Arc::new(b.finish())
    }

    /// Writes the rows `rows` of `values` as one column through [`encode`], `values` given as parts
    /// (slices of it, cut at `cuts`), then reads them back: whole, and with a selection that skips
    /// pages. `None` where [`encode`] left the column to the crate.
    fn round_trip(
        values: &ArrayRef,
        cuts: &[usize],
        rows: &[i32],
        props: WriterProperties,
    ) -> Option<(ArrayRef, ArrayRef)> {
        let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(values.len())).collect();
        bounds.extend([0, values.len()]);
        bounds.sort_unstable();
        let parts: Vec<ArrayRef> = bounds.windows(2).map(|w| values.slice(w[0], w[1] - w[0])).collect();
        let schema = Arc::new(Schema::new(vec![Field::new("c", values.data_type().clone(), true)]));
        let descr = ArrowSchemaConverter::new().convert(&schema).unwrap();
        let leaves = descr.columns().to_vec();
        let props = Arc::new(props);
        let mut meta = props.as_ref().clone();
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&schema, &mut meta);
        let mut file = SerializedFileWriter::new(Vec::new(), descr.root_schema_ptr(), Arc::new(meta)).unwrap();
        let mut group = file.next_row_group().unwrap();
        let chunks = encode(&parts, rows, &leaves, &props).unwrap()?;
        for c in chunks {
            group.append_column(&c.bytes, c.close).unwrap();
        }
        group.close().unwrap();
        let bytes = Bytes::from(file.into_inner().unwrap());
        let read = |selection: Option<RowSelection>| {
            let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
            let mut b = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes.clone(), options).unwrap();
            if let Some(s) = selection {
                // As selectors, not a mask: pages outside the selection are skipped by the offset index
                // instead of decoded and filtered.
                b = b.with_row_selection(s).with_row_selection_policy(RowSelectionPolicy::Selectors);
            }
            let batches: Vec<_> = b.build().unwrap().map(Result::unwrap).collect();
            let columns: Vec<ArrayRef> = batches.iter().map(|b| b.column(0).clone()).collect();
            arrow::compute::concat(&columns.iter().map(|c| c.as_ref()).collect::<Vec<_>>()).unwrap()
        };
        let n = rows.len();
        // Every other stretch of 7 rows: pages are skipped by the offset index where a stretch covers
        // none of a page's rows.
        let ranges: Vec<_> = (0..n).step_by(14).map(|s| s..(s + 7).min(n)).collect();
        let picked: Vec<i32> = ranges.iter().flat_map(|r| r.clone().map(|i| rows[i])).collect();
        let selected = read(Some(RowSelection::from_consecutive_ranges(ranges.into_iter(), n)));
        let take = |rows: &[i32]| {
            arrow::compute::take(values, &UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32)), None).unwrap()
        };
        assert_eq!(read(None).as_ref(), take(rows).as_ref());
        Some((selected, take(&picked)))
    }

    fn props(row_limit: usize, page_bytes: usize, zstd: bool) -> WriterProperties {
        let compression =
            if zstd { Compression::ZSTD(ZstdLevel::try_new(3).unwrap()) } else { Compression::UNCOMPRESSED };
        WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::None)
            .set_compression(compression)
            .set_data_page_row_count_limit(row_limit)
            .set_data_page_size_limit(page_bytes)
            .build()
    }

    fn run() -> impl Strategy<Value = Run> {
        proptest::option::weighted(
            0.9,
            proptest::collection::vec((0u8..40, proptest::option::weighted(0.8, 0u8..200)), 0..6),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Maps and strings written from their runs (or rows: a run each), given in parts, read back as
        /// the rows they are, whole and by pages, whatever the nulls, empty maps, dictionary sizes (bit
        /// widths 0 to 8), page limits and parts' bounds.
        #[test]
        fn columns_written_from_their_runs_read_back_as_their_rows(
            runs in proptest::collection::vec(run(), 1..60),
            picks in proptest::collection::vec(any::<prop::sample::Index>(), 1..400),
            row_limit in 1usize..50,
            page_bytes in prop_oneof![Just(1usize), Just(64), Just(1 << 20)],
            zstd in any::<bool>(),
            map in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let values = if map { maps(&runs) } else { strings(&runs) };
            // Rows in runs, as sorted rows are: each pick repeated a few times.
            let rows: Vec<i32> = picks.iter().flat_map(|p| {
                let r = p.index(runs.len()) as i32;
                std::iter::repeat_n(r, 1 + p.index(4))
            }).collect();
            let cuts: Vec<usize> = cuts.iter().map(|c| c.index(runs.len() + 1)).collect();
            match round_trip(&values, &cuts, &rows, props(row_limit, page_bytes, zstd)) {
                Some((selected, expected)) => prop_assert_eq!(selected.as_ref(), expected.as_ref()),
                // Left to the crate only when a leaf's dictionary would be empty: no string, no map
                // entry, or no entry's value in the rows.
                None => {
                    let picked = || rows.iter().filter_map(|&r| runs[r as usize].as_ref());
                    let empty = if map {
                        picked().flatten().all(|(_, v)| v.is_none())
                    } else {
                        picked().next().is_none()
                    };
                    prop_assert!(empty, "left to the crate with values in every leaf");
                }
            }
        }
    }

    #[test]
    fn long_runs_and_single_values_encode_to_what_they_were() {
        // One distinct value (bit width 0), long runs of one row, rows alternating between two runs.
        let runs: Vec<Run> = vec![Some(vec![(1, Some(1))]), Some(vec![(2, None), (3, Some(3))]), None, Some(vec![])];
        for values in [maps(&runs), strings(&runs)] {
            for rows in [vec![0; 1000], (0..1000).map(|i| i % 2).collect(), (0..1000).map(|i| (i / 9) % 4).collect()] {
                let (selected, expected) =
                    round_trip(&values, &[], &rows, props(100, 1 << 20, true)).expect("encoded here");
                assert_eq!(selected.as_ref(), expected.as_ref());
            }
        }
    }

    #[test]
    fn a_map_whose_values_are_all_null_is_left_to_the_crate() {
        let values = maps(&[Some(vec![(1, None), (2, None)]), Some(vec![(3, Some(3))])]);
        let leaves = ArrowSchemaConverter::new()
            .convert(&Schema::new(vec![Field::new("c", values.data_type().clone(), true)]))
            .unwrap()
            .columns()
            .to_vec();
        let encoded = |rows: &[i32]| {
            encode(std::slice::from_ref(&values), rows, &leaves, &props(100, 1 << 20, true)).unwrap().is_some()
        };
        assert!(!encoded(&[0, 0]), "no value for the value leaf's dictionary");
        assert!(encoded(&[0, 1]));
    }

    #[test]
    fn columns_with_statistics_a_bloom_filter_or_a_large_dictionary_are_left_to_the_crate() {
        let runs: Vec<Run> = (0..50).map(|i| Some(vec![(i, Some(i))])).collect();
        let values = maps(&runs);
        let schema = Schema::new(vec![Field::new("c", values.data_type().clone(), true)]);
        let leaves = ArrowSchemaConverter::new().convert(&schema).unwrap().columns().to_vec();
        let rows: Vec<i32> = (0..50).collect();
        let encoded =
            |p: WriterProperties| encode(std::slice::from_ref(&values), &rows, &leaves, &p).unwrap().is_some();
        assert!(encoded(props(20_000, 1 << 20, true)));
        let base = || WriterProperties::builder().set_statistics_enabled(EnabledStatistics::None);
        assert!(!encoded(WriterProperties::builder().build()), "statistics");
        assert!(!encoded(base().set_bloom_filter_enabled(true).build()), "a bloom filter");
        assert!(!encoded(base().set_dictionary_enabled(false).build()), "no dictionary");
        assert!(!encoded(base().set_compression(Compression::SNAPPY).build()), "another codec");
        assert!(!encoded(base().set_dictionary_page_size_limit(100).build()), "a dictionary over its page limit");
        assert!(!encoded(base().set_writer_version(WriterVersion::PARQUET_2_0).build()), "data pages v2");
    }

    proptest! {
        /// Eight values at a time in a word packs as a value at a time does, at every width.
        #[test]
        fn packing_by_words_is_packing_by_bits(
            bits in 0u8..=32,
            raw in proptest::collection::vec(any::<u32>(), 0..40),
        ) {
            let values: Vec<u32> = raw.iter().map(|&v| if bits == 32 { v } else { v & ((1 << bits) - 1) }).collect();
            let count = values.len().div_ceil(8) * 8;
            let (mut words, mut bitwise) = (Vec::new(), Vec::new());
            pack(&values, count, bits, &mut words);
            pack_bitwise(&values, count, bits, &mut bitwise);
            prop_assert_eq!(words, bitwise);
        }
    }

    #[test]
    fn a_maps_values_are_numbered_by_the_key_they_first_came_with_then_by_their_first_bytes() {
        // Values as they come (`maps` writes value v as its digit repeated 1 + v % 3 times): "9" under
        // key-1, "555" under key-0, "3" under key-1, "44" under key-0, "9" again under key-0.
        let values =
            maps(&[Some(vec![(1, Some(9)), (0, Some(5))]), Some(vec![(1, Some(3)), (0, Some(4)), (0, Some(9))])]);
        let schema = Schema::new(vec![Field::new("c", values.data_type().clone(), true)]);
        let leaves = ArrowSchemaConverter::new().convert(&schema).unwrap().columns().to_vec();
        let t = templates(std::slice::from_ref(&values), &[true, true], &leaves).unwrap().unwrap();
        let (keys, vals) = (&t[0], &t[1]);
        assert_eq!(keys.dictionary, [&b"key-1"[..], b"key-0"], "keys as they came");
        // key-1's values first (the first key seen), each key's in the order of their bytes; "9" stays
        // with key-1, under which it came first.
        assert_eq!(vals.dictionary, [&b"3"[..], b"9", b"44", b"555"]);
        assert_eq!(vals.ids, [1, 3, 0, 2, 1]);
    }

    #[test]
    fn indices_of_up_to_eight_bits_take_a_byte() {
        assert_eq!(index_bits(0), 0);
        assert_eq!(index_bits(1), 0, "one value: runs of nothing");
        assert_eq!(index_bits(2), 8);
        assert_eq!(index_bits(256), 8);
        assert_eq!(index_bits(257), 9);
        assert_eq!(index_bits(70_000), 17);
    }

    #[test]
    fn the_hybrid_encoding_is_parquets() {
        // Known encodings: a run of 10 threes (width 2): header 10 << 1, the value in a byte; then 3
        // values bit-packed in one group (header 1 << 1 | 1), padded to 8 values of 2 bits.
        let mut out = Vec::new();
        hybrid(&[3; 10], 2, &mut out);
        assert_eq!(out, [20, 3]);
        out.clear();
        hybrid(&[1, 2, 3], 2, &mut out);
        assert_eq!(out, [3, 0b11_1001, 0]);
        out.clear();
        // Bit width 0: runs of nothing.
        hybrid(&[0; 300], 0, &mut out);
        assert_eq!(out, [0xd8, 0x04]);
    }
}
