//! Reading a segment back, surviving torn tails and corrupt records.

use crate::format::{FRAME_PREFIX, HEADER_LEN, MAGIC, MAX_BODY, Record, VERSION};
use prost::Message;

/// What reading one segment found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Records in file order, with the offset of their frame.
    pub records: Vec<(u64, Record)>,
    /// Byte ranges `[start, end)` that failed their CRC (or did not decode) and were skipped.
    pub corrupt: Vec<(u64, u64)>,
    /// Where the valid data ends: a torn frame at the end starts here.
    pub valid_len: u64,
    /// Bytes after `valid_len` that form an incomplete frame.
    pub torn_bytes: u64,
}

/// Why a segment cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("not an OpenWit WAL segment (bad magic)")]
    BadMagic,
    #[error("WAL format version {0} is not supported (this build reads version {VERSION})")]
    Version(u32),
    #[error("segment is shorter than its header")]
    Short,
}

/// Checks a segment header.
pub fn check_header(data: &[u8]) -> Result<(), HeaderError> {
    if data.len() < HEADER_LEN {
        return Err(HeaderError::Short);
    }
    if data[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let v = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
    if v != VERSION {
        return Err(HeaderError::Version(v));
    }
    Ok(())
}

/// A frame that checks out at `pos`: returns its body range end.
fn valid_frame(data: &[u8], pos: usize) -> Option<(usize, Record)> {
    let prefix = data.get(pos..pos + FRAME_PREFIX)?;
    let len = u32::from_le_bytes(prefix[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(prefix[4..8].try_into().ok()?);
    // Every real record has a body; without this, eight zero bytes (length 0, CRC32C of nothing is 0)
    // would read as a frame and resynchronisation could land inside damaged data.
    if len == 0 || len > MAX_BODY {
        return None;
    }
    let body = data.get(pos + FRAME_PREFIX..pos + FRAME_PREFIX + len)?;
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let rec = Record::decode(body).ok().filter(|r| r.kind.is_some())?;
    Some((pos + FRAME_PREFIX + len, rec))
}

/// Reads every frame of a segment (header included in `data`).
pub fn scan_segment(data: &[u8]) -> Result<ScanResult, HeaderError> {
    check_header(data)?;
    let mut out = ScanResult::default();
    let mut pos = HEADER_LEN;
    while pos < data.len() {
        if let Some((end, rec)) = valid_frame(data, pos) {
            out.records.push((pos as u64, rec));
            pos = end;
            continue;
        }
        // Not a valid frame here. If its declared length runs past the end, and nothing valid follows,
        // it is a torn write at the tail.
        let declared = data.get(pos..pos + 4).map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize);
        let runs_past_end = declared.is_none_or(|len| pos + FRAME_PREFIX + len > data.len());
        match (pos + 1..data.len()).find(|&p| valid_frame(data, p).is_some()) {
            Some(next) => {
                out.corrupt.push((pos as u64, next as u64));
                pos = next;
            }
            None if runs_past_end => {
                out.valid_len = pos as u64;
                out.torn_bytes = (data.len() - pos) as u64;
                return Ok(out);
            }
            None => {
                out.corrupt.push((pos as u64, data.len() as u64));
                pos = data.len();
            }
        }
    }
    out.valid_len = pos as u64;
    Ok(out)
}
