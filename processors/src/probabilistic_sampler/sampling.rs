//! The arithmetic of OpenTelemetry's consistent probability sampling, as the Collector's
//! `pkg/sampling` defines it, so that OpenWit keeps exactly the items a Collector keeps for the same
//! settings:
//!
//! - randomness `R` is a 56-bit number: the last 7 bytes of the trace id (W3C Trace Context level 2),
//!   an explicit `rv` in the tracestate, or — in `hash_seed` mode — 14 bits of an FNV-1a hash;
//! - a threshold `T` in `[0, 2^56]` is a rejection threshold: an item is kept when `R >= T`;
//!   probability `p` ↔ `T = 2^56 − round(p · 2^56)`, `T = 0` keeps everything, `T = 2^56` nothing;
//! - both travel as hex: `rv` is 14 digits, `th` has its trailing zeros trimmed (`th:c` is 25 %).

/// `2^56`: one more than the largest randomness value.
pub const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
/// The smallest sampling probability a threshold can express.
pub const MIN_PROBABILITY: f64 = 1.0 / MAX_ADJUSTED_COUNT as f64;
const HEX_DIGITS: usize = 14;

/// A rejection threshold: items whose randomness is at least this are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Threshold(pub u64);

impl Threshold {
    pub const ALWAYS: Threshold = Threshold(0);
    pub const NEVER: Threshold = Threshold(MAX_ADJUSTED_COUNT);

    pub fn should_sample(self, r: Randomness) -> bool {
        r.0 >= self.0
    }

    pub fn probability(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// The `th` value: 14 hex digits with trailing zeros removed; `0` for always.
    pub fn tvalue(self) -> String {
        if self == Threshold::ALWAYS {
            return "0".into();
        }
        let digits = format!("{:014x}", self.0);
        digits.trim_end_matches('0').to_string()
    }

    /// Parses a `th` value (1 to 14 hex digits, trailing zeros implied).
    pub fn from_tvalue(s: &str) -> Result<Threshold, String> {
        if s.is_empty() || s.len() > HEX_DIGITS {
            return Err(format!("th value {s:?} must have 1 to {HEX_DIGITS} hex digits"));
        }
        let v = u64::from_str_radix(s, 16).map_err(|_| format!("th value {s:?} is not hexadecimal"))?;
        Ok(Threshold(v << (4 * (HEX_DIGITS - s.len()))))
    }

    /// The threshold of probability `p`, rounded to `precision` significant hex digits (0: all 14). As
    /// the Collector, precision grows by one digit for every leading `0` or `f` the threshold would have
    /// (probabilities near 0 or 1), so that small relative differences survive. `None` when `p` is
    /// outside `[MIN_PROBABILITY, 1]`.
    pub fn from_probability(p: f64, precision: u8) -> Option<Threshold> {
        if !(MIN_PROBABILITY..=1.0).contains(&p) {
            return None;
        }
        if p == 1.0 {
            return Some(Threshold::ALWAYS);
        }
        let precision = if precision == 0 { HEX_DIGITS as i32 } else { i32::from(precision) };
        let extra = |x: f64| precision + frexp_exponent(x) / -4;
        let precision = extra(p).max(extra(1.0 - p)).min(HEX_DIGITS as i32) as u32;
        let mut t = MAX_ADJUSTED_COUNT - (p * MAX_ADJUSTED_COUNT as f64).round() as u64;
        let shift = 4 * (HEX_DIGITS as u32 - precision);
        if shift > 0 {
            t += 1 << (shift - 1);
            t = (t >> shift) << shift;
        }
        Some(Threshold(t))
    }
}

/// The exponent `e` of `x = m · 2^e` with `m` in `[0.5, 1)` (C's and Go's `frexp`), for positive normal `x`.
fn frexp_exponent(x: f64) -> i32 {
    ((x.to_bits() >> 52) & 0x7ff) as i32 - 1022
}

/// 56 bits of randomness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Randomness(pub u64);

impl Randomness {
    /// The W3C level-2 randomness of a trace id: its last 7 bytes, big-endian.
    pub fn from_trace_id(id: &[u8; 16]) -> Randomness {
        let mut b = [0u8; 8];
        b[1..].copy_from_slice(&id[9..]);
        Randomness(u64::from_be_bytes(b))
    }

    /// The `rv` value: exactly 14 hex digits.
    pub fn rvalue(self) -> String {
        format!("{:014x}", self.0)
    }

    pub fn from_rvalue(s: &str) -> Result<Randomness, String> {
        if s.len() != HEX_DIGITS {
            return Err(format!("rv value {s:?} must have exactly {HEX_DIGITS} hex digits"));
        }
        u64::from_str_radix(s, 16).map(Randomness).map_err(|_| format!("rv value {s:?} is not hexadecimal"))
    }

    /// The randomness `hash_seed` mode derives from bytes (a trace id, an attribute's value): the
    /// Collector's 14-bit FNV-1a bucket, placed in the top 14 bits so that `R >= T` decides exactly as
    /// its original `hash < scaled_rate` test did.
    pub fn from_hash(bytes: &[u8], seed: u32) -> Randomness {
        let hashed32 = fnv1a32(&seed.to_le_bytes(), bytes);
        let hashed = u64::from(hashed32 & BUCKET_MASK);
        let rprime14 = u64::from(HASH_BUCKETS) - 1 - hashed;
        let unused18 = u64::from(hashed32 >> (32 - HASH_BUCKETS_LG2));
        let mixed28 = unused18 ^ (unused18 << 10);
        Randomness((rprime14 << 42) | (mixed28 << 14) | hashed)
    }
}

pub const HASH_BUCKETS_LG2: u32 = 14;
pub const HASH_BUCKETS: u32 = 1 << HASH_BUCKETS_LG2;
const BUCKET_MASK: u32 = HASH_BUCKETS - 1;

/// `hash_seed` mode's threshold for a percentage, computed as the Collector computes it (a 32-bit float
/// multiplication, truncated) so that the same percentage keeps the same buckets. `None`: rounds to zero.
pub fn hash_seed_threshold(percent: f32) -> Option<Threshold> {
    let scaled = (percent * (HASH_BUCKETS as f32 / 100.0)) as u32;
    if scaled == 0 {
        return None;
    }
    let reject = HASH_BUCKETS.saturating_sub(scaled.min(HASH_BUCKETS));
    Some(Threshold(u64::from(reject) << 42))
}

/// 32-bit FNV-1a over the concatenation of `a` and `b` (the seed's 4 little-endian bytes, then the data).
pub fn fnv1a32(a: &[u8], b: &[u8]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    a.iter().chain(b).fold(OFFSET, |h, byte| (h ^ u32::from(*byte)).wrapping_mul(PRIME))
}

/// A W3C `tracestate`, with its OpenTelemetry (`ot`) member parsed: the fields `rv` and `th`, and the
/// others kept in order. Serialises with `ot` first, as an updated member moves to the front.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceState {
    /// `rv`, with its text as it arrived (upper-case digits pass through unchanged, as in the Collector).
    pub rv: Option<(Randomness, String)>,
    pub th: Option<Threshold>,
    /// `ot` fields other than `rv` and `th`, as `key:value`.
    ot_extra: Vec<String>,
    /// The other vendors' members, as `key=value`, in order.
    others: Vec<String>,
}

const MAX_MEMBERS: usize = 32;
const MAX_OT_LEN: usize = 256;

impl TraceState {
    pub fn parse(raw: &str) -> Result<TraceState, String> {
        let mut ts = TraceState::default();
        let mut members = 0;
        for member in raw.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            members += 1;
            if members > MAX_MEMBERS {
                return Err(format!("tracestate has more than {MAX_MEMBERS} members"));
            }
            let Some((key, value)) = member.split_once('=') else {
                return Err(format!("tracestate member {member:?} has no '='"));
            };
            if key.is_empty()
                || !key.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/@".contains(&c))
            {
                return Err(format!("tracestate key {key:?} is not valid"));
            }
            if key == "ot" {
                ts.parse_ot(value)?;
            } else {
                ts.others.push(member.to_string());
            }
        }
        Ok(ts)
    }

    fn parse_ot(&mut self, value: &str) -> Result<(), String> {
        if value.len() > MAX_OT_LEN {
            return Err(format!("the tracestate's ot value is longer than {MAX_OT_LEN} bytes"));
        }
        for field in value.split(';') {
            let Some((k, v)) = field.split_once(':') else {
                return Err(format!("tracestate ot field {field:?} has no ':'"));
            };
            let key_ok = k.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
                && k.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            let value_ok = v.bytes().all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
            if !key_ok || !value_ok {
                return Err(format!("tracestate ot field {field:?} is not valid"));
            }
            match k {
                "rv" => self.rv = Some((Randomness::from_rvalue(v)?, v.to_string())),
                "th" => self.th = Some(Threshold::from_tvalue(v)?),
                _ => self.ot_extra.push(field.to_string()),
            }
        }
        Ok(())
    }

    pub fn serialize(&self) -> String {
        let mut ot: Vec<String> = Vec::new();
        if let Some((_, text)) = &self.rv {
            ot.push(format!("rv:{text}"));
        }
        if let Some(th) = self.th {
            ot.push(format!("th:{}", th.tvalue()));
        }
        ot.extend(self.ot_extra.iter().cloned());
        let mut members = Vec::with_capacity(self.others.len() + 1);
        if !ot.is_empty() {
            members.push(format!("ot={}", ot.join(";")));
        }
        members.extend(self.others.iter().cloned());
        members.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_encode_as_the_specification_writes_them() {
        // The specification's examples: 50 % is th:8, 25 % th:c, 100 % th:0, 1/3 at 4 digits th:aaab.
        assert_eq!(Threshold::from_probability(0.5, 4).unwrap().tvalue(), "8");
        assert_eq!(Threshold::from_probability(0.25, 4).unwrap().tvalue(), "c");
        assert_eq!(Threshold::from_probability(1.0, 4).unwrap().tvalue(), "0");
        assert_eq!(Threshold::from_probability(1.0 / 3.0, 4).unwrap().tvalue(), "aaab");
        // Precision counts digits after the rejection probability's leading zeros: 99.9 % needs them.
        assert_eq!(Threshold::from_probability(0.999, 2).unwrap().tvalue(), "0042");
        assert_eq!(Threshold::from_probability(0.1, 1).unwrap().tvalue(), "e");
        assert!(Threshold::from_probability(0.0, 4).is_none());
        assert!(Threshold::from_probability(1.5, 4).is_none());
        assert_eq!(Threshold::from_tvalue("c").unwrap(), Threshold(0xc << 52));
        assert_eq!(Threshold::from_tvalue("8").unwrap().probability(), 0.5);
        assert!(Threshold::from_tvalue("").is_err());
        assert!(Threshold::from_tvalue("123456789abcdef").is_err());
        assert!(Threshold::from_tvalue("xyz").is_err());
    }

    #[test]
    fn randomness_is_the_trace_ids_last_seven_bytes() {
        let id: [u8; 16] = [0xff; 9]
            .into_iter()
            .chain([0x9b, 0x82, 0x33, 0xf7, 0xe3, 0xa1, 0x51])
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let r = Randomness::from_trace_id(&id);
        assert_eq!(r.rvalue(), "9b8233f7e3a151");
        assert_eq!(Randomness::from_rvalue("9b8233f7e3a151").unwrap(), r);
        // The README's example: randomness 9b8233f7e3a151 passes 50 % (threshold 80000000000000).
        assert!(Threshold::from_probability(0.5, 4).unwrap().should_sample(r));
        assert!(!Threshold::from_tvalue("a").unwrap().should_sample(r));
        assert!(Randomness::from_rvalue("9b8233").is_err());
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "" → 811c9dc5, "a" → e40c292c, "foobar" → bf9cf968.
        assert_eq!(fnv1a32(b"", b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a", b""), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foo", b"bar"), 0xbf9c_f968);
    }

    #[test]
    fn hash_seed_decides_as_the_collectors_bucket_test() {
        // R >= T must be the same decision as the Collector's original `hash & 0x3fff < scaled`.
        for percent in [0.01f32, 1.0, 12.5, 33.3, 50.0, 99.99, 100.0] {
            let threshold = hash_seed_threshold(percent).unwrap();
            let scaled = (percent * (HASH_BUCKETS as f32 / 100.0)) as u32;
            for i in 0u32..2000 {
                let id = i.wrapping_mul(2_654_435_761).to_be_bytes().repeat(4);
                let kept = threshold.should_sample(Randomness::from_hash(&id, 7));
                assert_eq!(kept, fnv1a32(&7u32.to_le_bytes(), &id) & BUCKET_MASK < scaled, "{percent} {i}");
            }
        }
        assert_eq!(hash_seed_threshold(0.001), None);
        assert_eq!(hash_seed_threshold(100.0), Some(Threshold::ALWAYS));
    }

    #[test]
    fn tracestate_keeps_other_vendors_and_puts_ot_first() {
        let mut ts = TraceState::parse("congo=t61rcWkgMzE, ot=th:c;x:y ,rojo=00f067aa0ba902b7").unwrap();
        assert_eq!(ts.th, Some(Threshold::from_tvalue("c").unwrap()));
        assert_eq!(ts.rv, None);
        ts.rv = Some((Randomness(0x9b8233f7e3a151), "9b8233f7e3a151".into()));
        assert_eq!(ts.serialize(), "ot=rv:9b8233f7e3a151;th:c;x:y,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        assert_eq!(TraceState::parse("").unwrap().serialize(), "");
        for bad in ["ot=th:zz", "ot=rv:12", "novalue", "Upper=x", "ot=th", "ot=Th:8"] {
            assert!(TraceState::parse(bad).is_err(), "{bad}");
        }
    }
}
