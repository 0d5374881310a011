//! The `time` of every row of a file, kept in its index bundle so that counts, histograms and "the last
//! N hits" are answered without reading the Parquet rows.
//!
//! Rows are sorted by service and then time, so the difference between neighbours is small and
//! mostly positive, spread like the gaps between arrivals. Each block of `BLOCK` rows keeps its first
//! time and the smallest non-negative difference `base`; every difference less `base` is Rice-coded
//! with the block's best parameter `k` (the quotient `>> k` in unary, then `k` low bits), and one that
//! does not fit (a negative difference where the next service starts, or a far outlier) is written
//! whole after an escape. Rice codes come within a few hundredths of a bit of the entropy of such
//! gaps: a million log rows take about 3.2 MB, less than Parquet's own delta encoding of the column
//! (3.4 MB) and Tantivy's fast-field codecs (4.2 MB compressed), which expect a column sorted or
//! linear as a whole. Decoding a block is a running sum; a search decodes only the blocks its hits
//! fall in.

use crate::IndexError;
use tantivy::directory::OwnedBytes;

/// The name of the file in the bundle.
pub const TIME_FILE: &str = "openwit_time";
const MAGIC: &[u8; 4] = b"OWT2";
/// Rows per block: the headers (21 bytes) are a small share, and a lone hit decodes a few µs.
const BLOCK: usize = 512;
/// A quotient this large (in unary: this many ones) marks a difference written whole, in 64 bits.
const ESCAPE: u64 = 24;
const HEADER: usize = 21;

/// Encodes `times` (one per row, in row order).
pub fn encode(times: &[i64]) -> Vec<u8> {
    let mut w = TimeWriter::new(std::io::Cursor::new(Vec::with_capacity(12 + times.len() * 4)))
        .expect("writing to memory does not fail");
    w.push(times).expect("writing to memory does not fail");
    w.finish().expect("writing to memory does not fail").into_inner()
}

/// Encodes times as they come, a block at a time, into `out`: the same bytes as [`encode`] of all of
/// them, holding at most a block. Collecting a file's times first, as index builds did, held 8 bytes per
/// row and then the encoded column: for a file of 3M rows a vector grown by doubling to 32 MiB (48 MiB
/// while its last doubling copied) and 12 MiB more, on top of Tantivy's arena.
pub struct TimeWriter<W: std::io::Write + std::io::Seek> {
    out: W,
    /// The times of the block being filled (always fewer than `BLOCK` between calls).
    pending: Vec<i64>,
    rows: u64,
    /// Where the column starts in `out`.
    start: u64,
}

impl<W: std::io::Write + std::io::Seek> TimeWriter<W> {
    /// Starts a column at `out`'s current position; the row count is filled in by `finish`.
    pub fn new(mut out: W) -> std::io::Result<Self> {
        let start = out.stream_position()?;
        out.write_all(MAGIC)?;
        out.write_all(&0u64.to_le_bytes())?;
        Ok(TimeWriter { out, pending: Vec::with_capacity(BLOCK), rows: 0, start })
    }

    /// Appends the times of the next rows.
    pub fn push(&mut self, times: &[i64]) -> std::io::Result<()> {
        self.rows += times.len() as u64;
        let mut times = times;
        if !self.pending.is_empty() {
            let take = (BLOCK - self.pending.len()).min(times.len());
            self.pending.extend_from_slice(&times[..take]);
            times = &times[take..];
            if self.pending.len() < BLOCK {
                return Ok(());
            }
            write_block(&self.pending, &mut self.out)?;
            self.pending.clear();
        }
        let whole = times.len() - times.len() % BLOCK;
        for block in times[..whole].chunks(BLOCK) {
            write_block(block, &mut self.out)?;
        }
        self.pending.extend_from_slice(&times[whole..]);
        Ok(())
    }

    /// Writes the last block and the row count; gives `out` back, positioned after the column.
    pub fn finish(mut self) -> std::io::Result<W> {
        use std::io::SeekFrom;
        if !self.pending.is_empty() {
            write_block(&self.pending, &mut self.out)?;
        }
        let end = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(self.start + MAGIC.len() as u64))?;
        self.out.write_all(&self.rows.to_le_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        Ok(self.out)
    }
}

/// One block: its first time, its `base`, its Rice parameter, the code's length, the code.
fn write_block(block: &[i64], out: &mut impl std::io::Write) -> std::io::Result<()> {
    let deltas: Vec<i64> = block.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let base = deltas.iter().copied().filter(|d| *d >= 0).min().or(deltas.iter().copied().min()).unwrap_or(0);
    // A difference below `base` wraps to a huge value, which is escaped.
    let values: Vec<u64> = deltas.iter().map(|d| d.wrapping_sub(base) as u64).collect();
    let k = best_k(&values);
    let mut bits = BitWriter::default();
    for v in values {
        let q = v >> k;
        if q < ESCAPE {
            bits.write((1u64 << q) - 1, q as u32 + 1);
            bits.write(v & low_mask(k), k);
        } else {
            bits.write((1u64 << ESCAPE) - 1, ESCAPE as u32);
            bits.write(v, 64);
        }
    }
    let data = bits.finish();
    out.write_all(&block[0].to_le_bytes())?;
    out.write_all(&base.to_le_bytes())?;
    out.write_all(&[k as u8])?;
    out.write_all(&(data.len() as u32).to_le_bytes())?;
    out.write_all(&data)
}

fn low_mask(k: u32) -> u64 {
    if k >= 64 { u64::MAX } else { (1u64 << k) - 1 }
}

/// The Rice parameter that codes `values` in the fewest bits (tried around the one their mean
/// suggests).
fn best_k(values: &[u64]) -> u32 {
    let cost = |k: u32| -> u64 {
        values.iter().map(|v| if v >> k < ESCAPE { (v >> k) + 1 + k as u64 } else { ESCAPE + 64 }).sum()
    };
    let small: Vec<u64> = values.iter().copied().filter(|v| *v < 1 << 62).collect();
    let mean = if small.is_empty() {
        0
    } else {
        (small.iter().map(|v| *v as u128).sum::<u128>() / small.len() as u128) as u64
    };
    let guess = 63 - mean.max(1).leading_zeros();
    (guess.saturating_sub(3)..=(guess + 3).min(63)).min_by_key(|k| cost(*k)).unwrap_or(0)
}

/// Bits appended least significant first.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u128,
    len: u32,
}

impl BitWriter {
    fn write(&mut self, value: u64, bits: u32) {
        let value = if bits == 64 { value } else { value & low_mask(bits) };
        self.acc |= (value as u128) << self.len;
        self.len += bits;
        while self.len >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.len -= 8;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.len > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// Reads what `BitWriter` wrote; past the end it reads zeros (and says so).
struct BitReader<'a> {
    data: &'a [u8],
    at: usize,
}

impl BitReader<'_> {
    /// The next 64 bits, without moving.
    fn peek(&self) -> u64 {
        let (byte, shift) = (self.at / 8, self.at % 8);
        let mut window = [0u8; 16];
        let end = (byte + 16).min(self.data.len());
        if byte < end {
            window[..end - byte].copy_from_slice(&self.data[byte..end]);
        }
        (u128::from_le_bytes(window) >> shift) as u64
    }

    fn read(&mut self, bits: u32) -> u64 {
        let v = self.peek() & low_mask(bits);
        self.at += bits as usize;
        v
    }

    /// Ones before the next zero (at most `ESCAPE`), and the zero.
    fn unary(&mut self) -> u64 {
        let ones = (self.peek().trailing_ones() as u64).min(ESCAPE);
        self.at += ones as usize + usize::from(ones < ESCAPE);
        ones
    }

    fn overran(&self) -> bool {
        self.at > self.data.len() * 8
    }
}

/// One block's header, and where its code starts.
#[derive(Clone, Copy, Debug)]
struct Block {
    first: i64,
    base: i64,
    k: u32,
    offset: usize,
    len: usize,
}

/// The times of a file's rows, decoded block by block on demand.
#[derive(Clone, Debug)]
pub struct TimeColumn {
    data: OwnedBytes,
    rows: u64,
    blocks: Vec<Block>,
}

impl TimeColumn {
    /// Reads an encoded column, checking that it is whole.
    pub fn open(data: OwnedBytes) -> Result<TimeColumn, IndexError> {
        let bytes = data.as_slice();
        if bytes.len() < 12 || &bytes[..4] != MAGIC {
            return Err(damaged("not a time column (no magic number)".into()));
        }
        let rows = u64::from_le_bytes(bytes[4..12].try_into().expect("8 bytes"));
        let mut blocks = Vec::with_capacity(rows.div_ceil(BLOCK as u64).min(1 << 24) as usize);
        let (mut at, mut left) = (12usize, rows);
        while left > 0 {
            let cut = || damaged(format!("block {} is cut short", blocks.len()));
            let header = bytes.get(at..at + HEADER).ok_or_else(cut)?;
            let k = header[16] as u32;
            if k > 63 {
                return Err(damaged(format!("block {} has a Rice parameter of {k}", blocks.len())));
            }
            let len = u32::from_le_bytes(header[17..21].try_into().expect("4 bytes")) as usize;
            if at + HEADER + len > bytes.len() {
                return Err(cut());
            }
            blocks.push(Block {
                first: i64::from_le_bytes(header[..8].try_into().expect("8 bytes")),
                base: i64::from_le_bytes(header[8..16].try_into().expect("8 bytes")),
                k,
                offset: at + HEADER,
                len,
            });
            at += HEADER + len;
            left -= left.min(BLOCK as u64);
        }
        if at != bytes.len() {
            return Err(damaged(format!("{} bytes follow the last block", bytes.len() - at)));
        }
        Ok(TimeColumn { data, rows, blocks })
    }

    /// How many rows the column holds.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The times of `rows` (ascending, as a search lists them), decoding each block they fall in once.
    pub fn times(&self, rows: &[u64]) -> Result<Vec<i64>, IndexError> {
        let mut out = Vec::with_capacity(rows.len());
        let mut decoded: Option<(usize, Vec<i64>)> = None;
        for &row in rows {
            if row >= self.rows {
                return Err(damaged(format!("row {row} is past the column's {} rows", self.rows)));
            }
            let b = (row / BLOCK as u64) as usize;
            if decoded.as_ref().is_none_or(|(at, _)| *at != b) {
                decoded = Some((b, self.block(b)?));
            }
            let (_, values) = decoded.as_ref().expect("just decoded");
            out.push(values[(row % BLOCK as u64) as usize]);
        }
        Ok(out)
    }

    fn block(&self, b: usize) -> Result<Vec<i64>, IndexError> {
        let block = self.blocks[b];
        let n = ((self.rows - (b * BLOCK) as u64).min(BLOCK as u64)) as usize;
        let mut bits = BitReader { data: &self.data.as_slice()[block.offset..block.offset + block.len], at: 0 };
        let mut out = Vec::with_capacity(n);
        let mut t = block.first;
        out.push(t);
        for _ in 1..n {
            let q = bits.unary();
            let v = if q < ESCAPE { (q << block.k) | bits.read(block.k) } else { bits.read(64) };
            t = t.wrapping_add(block.base).wrapping_add(v as i64);
            out.push(t);
        }
        if bits.overran() {
            return Err(damaged(format!("block {b} ends before its last row")));
        }
        Ok(out)
    }
}

fn damaged(m: String) -> IndexError {
    IndexError::Bundle(format!("{TIME_FILE}: {m}"))
}
