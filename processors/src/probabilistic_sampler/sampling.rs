//! OpenTelemetry consistent-probability sampling arithmetic (OTEP 235), as the
//! Collector's `pkg/sampling` implements it: 56-bit thresholds and randomness, their hex
//! encodings (`th`, `rv`), probability to threshold with a precision, and the `ot=` entry
//! of the W3C `tracestate`. Also the legacy FNV-1a hash of the `hash_seed` mode.

/// 2^56: thresholds and randomness are 56-bit.
pub const MAX_ADJUSTED_COUNT: u64 = 1 << 56;
/// Hex digits of a full threshold or randomness value.
pub const NUM_HEX_DIGITS: usize = 14;
/// The smallest sampling probability that can be expressed (2^-56).
pub const MIN_SAMPLING_PROBABILITY: f64 = 1.0 / MAX_ADJUSTED_COUNT as f64;

/// Rejection threshold: an item is sampled when `threshold <= randomness`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Threshold(pub u64);

/// 56 bits of randomness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Randomness(pub u64);

pub const ALWAYS_SAMPLE: Threshold = Threshold(0);
pub const NEVER_SAMPLE: Threshold = Threshold(MAX_ADJUSTED_COUNT);
/// The randomness used where none exists; every threshold but `NEVER_SAMPLE` samples it.
pub const ALL_PROBABILITIES: Randomness = Randomness(MAX_ADJUSTED_COUNT - 1);

impl Threshold {
    pub fn should_sample(self, rnd: Randomness) -> bool {
        self.0 <= rnd.0
    }

    /// The `th` encoding: 14 hex digits without trailing zeros; "0" for always, "" for
    /// never.
    pub fn tvalue(self) -> String {
        match self {
            ALWAYS_SAMPLE => "0".into(),
            NEVER_SAMPLE => String::new(),
            Threshold(unsigned) => Randomness(unsigned)
                .rvalue()
                .trim_end_matches('0')
                .to_string(),
        }
    }

    pub fn probability(self) -> f64 {
        (MAX_ADJUSTED_COUNT - self.0.min(MAX_ADJUSTED_COUNT)) as f64 / MAX_ADJUSTED_COUNT as f64
    }

    /// Parses a `th` value; None when empty, longer than 14 digits or not hex.
    pub fn from_tvalue(text: &str) -> Option<Threshold> {
        if text.is_empty()
            || text.len() > NUM_HEX_DIGITS
            || !text.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let unsigned = u64::from_str_radix(text, 16).ok()?;
        Some(Threshold(unsigned << (4 * (NUM_HEX_DIGITS - text.len()))))
    }
}

impl Randomness {
    /// The `rv` encoding: exactly 14 lowercase hex digits.
    pub fn rvalue(self) -> String {
        format!("{:014x}", self.0 & (MAX_ADJUSTED_COUNT - 1))
    }

    /// Parses an `rv` value: exactly 14 hex digits.
    pub fn from_rvalue(text: &str) -> Option<Randomness> {
        if text.len() != NUM_HEX_DIGITS || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(Randomness)
    }

    /// The W3C randomness of a trace ID: its last 7 bytes, big-endian.
    pub fn from_trace_id(trace_id: &[u8]) -> Randomness {
        let mut value = 0u64;
        for b in trace_id.iter().rev().take(7).rev() {
            value = value << 8 | u64::from(*b);
        }
        Randomness(value)
    }
}

/// `math.Frexp`'s exponent: `f = frac * 2^exp` with `frac` in [0.5, 1).
fn frexp_exponent(f: f64) -> i32 {
    if f == 0.0 || !f.is_finite() {
        return 0;
    }
    let bits = f.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i32;
    if exponent == 0 {
        // Subnormal: normalize first.
        return frexp_exponent(f * (1u64 << 54) as f64) - 54;
    }
    exponent - 1022
}

/// The Collector's `ProbabilityToThresholdWithPrecision`; None when `fraction` is outside
/// [2^-56, 1]. Precision 0 means full precision; more digits are added near 0 and 1 to
/// keep the relative error small.
pub fn probability_to_threshold(fraction: f64, precision: usize) -> Option<Threshold> {
    let mut precision = if precision == 0 {
        NUM_HEX_DIGITS
    } else {
        precision
    } as i32;
    if !(MIN_SAMPLING_PROBABILITY..=1.0).contains(&fraction) {
        return None;
    }
    if fraction == 1.0 {
        return Some(ALWAYS_SAMPLE);
    }
    let exp_f = frexp_exponent(fraction);
    let exp_r = frexp_exponent(1.0 - fraction);
    // Go integer division truncates toward zero, as Rust's does.
    precision = (NUM_HEX_DIGITS as i32).min((precision + exp_f / -4).max(precision + exp_r / -4));
    let scaled = (fraction * MAX_ADJUSTED_COUNT as f64).round() as u64;
    let mut threshold = MAX_ADJUSTED_COUNT - scaled;
    let shift = 4 * (NUM_HEX_DIGITS as i32 - precision);
    if shift > 0 {
        let half = 1u64 << (shift - 1);
        threshold += half;
        threshold >>= shift;
        threshold <<= shift;
    }
    Some(Threshold(threshold))
}

/// FNV-1a (32-bit) of the seed (4 little-endian bytes) followed by `data`: the hash of
/// the Collector's `hash_seed` mode.
pub fn fnv1a_seeded(data: &[u8], seed: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in seed.to_le_bytes().iter().chain(data) {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

pub const NUM_HASH_BUCKETS: u64 = 0x4000;

/// The randomness the `hash_seed` mode derives from `data` (the Collector's
/// `randomnessFromBytes`): the 14-bit bucket decides, in the top bits, so that
/// `threshold <= randomness` exactly when `bucket < scaled rate`.
pub fn randomness_from_bytes(data: &[u8], seed: u32) -> Randomness {
    let hashed32 = fnv1a_seeded(data, seed);
    let hashed = u64::from(hashed32) & (NUM_HASH_BUCKETS - 1);
    let rprime14 = NUM_HASH_BUCKETS - 1 - hashed;
    let unused18 = u64::from(hashed32 >> (32 - 14));
    let mixed28 = unused18 ^ (unused18 << 10);
    Randomness((rprime14 << 42) | (mixed28 << 14) | hashed)
}

/// The sampling fields of the `ot` entry of a W3C tracestate, with the other entries kept
/// in order for re-serialization.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceState {
    pub rvalue: Option<(String, Randomness)>,
    pub tvalue: Option<(String, Threshold)>,
    /// Other `key:value` fields of the `ot` entry.
    pub otel_extra: Vec<(String, String)>,
    /// Other vendors' `key=value` entries.
    pub members: Vec<(String, String)>,
}

/// Why a tracestate could not be used.
pub type ParseError = String;

impl TraceState {
    /// Parses a W3C tracestate and its `ot` entry. Errors on what the Collector rejects:
    /// malformed members, more than 32 members, a malformed `ot` value or `rv`/`th`.
    pub fn parse(text: &str) -> Result<TraceState, ParseError> {
        let mut state = TraceState::default();
        if text.is_empty() {
            return Ok(state);
        }
        if text.len() > 1024 {
            return Err("tracestate is longer than 1024 bytes".into());
        }
        // The Collector counts every list member, empty ones too, and stops at the 32nd.
        for (count, member) in text.split(',').enumerate() {
            if count + 1 >= 32 {
                return Err("tracestate has too many members".into());
            }
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            let (key, value) = member
                .split_once('=')
                .ok_or_else(|| format!("tracestate member {member:?} has no '='"))?;
            if !valid_w3c_key(key) || !valid_w3c_value(value) {
                return Err(format!("tracestate member {member:?} is malformed"));
            }
            if key == "ot" {
                state.parse_otel(value)?;
            } else {
                state.members.push((key.to_string(), value.to_string()));
            }
        }
        Ok(state)
    }

    fn parse_otel(&mut self, value: &str) -> Result<(), ParseError> {
        if value.len() > 256 {
            return Err("ot tracestate value is longer than 256 bytes".into());
        }
        for field in value.split(';') {
            let (key, val) = field
                .split_once(':')
                .ok_or_else(|| format!("ot field {field:?} has no ':'"))?;
            let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            let val_ok = val
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !key_ok || !val_ok {
                return Err(format!("ot field {field:?} is malformed"));
            }
            match key {
                "rv" => {
                    self.rvalue = Some((
                        val.to_string(),
                        Randomness::from_rvalue(val)
                            .ok_or_else(|| format!("rv {val:?} is not 14 hex digits"))?,
                    ))
                }
                "th" => {
                    self.tvalue = Some((
                        val.to_string(),
                        Threshold::from_tvalue(val)
                            .ok_or_else(|| format!("th {val:?} is not 1-14 hex digits"))?,
                    ))
                }
                _ => self.otel_extra.push((key.to_string(), val.to_string())),
            }
        }
        Ok(())
    }

    pub fn threshold(&self) -> Option<Threshold> {
        self.tvalue.as_ref().map(|(_, t)| *t)
    }

    pub fn randomness(&self) -> Option<Randomness> {
        self.rvalue.as_ref().map(|(_, r)| *r)
    }

    pub fn set_randomness(&mut self, rnd: Randomness) {
        self.rvalue = Some((rnd.rvalue(), rnd));
    }

    pub fn clear_threshold(&mut self) {
        self.tvalue = None;
    }

    /// `UpdateTValueWithSampling`: refuses (false) to lower an existing threshold.
    pub fn update_threshold(&mut self, threshold: Threshold) -> bool {
        if self
            .threshold()
            .is_some_and(|existing| existing > threshold)
        {
            return false;
        }
        let text = threshold.tvalue();
        self.tvalue = if text.is_empty() {
            None
        } else {
            Some((text, threshold))
        };
        true
    }

    /// The tracestate text: the `ot` entry first (`rv`, then `th`, then other fields),
    /// then the other members in their order.
    pub fn serialize(&self) -> String {
        let mut otel: Vec<String> = Vec::new();
        if let Some((rv, _)) = &self.rvalue {
            otel.push(format!("rv:{rv}"));
        }
        if let Some((th, _)) = &self.tvalue {
            otel.push(format!("th:{th}"));
        }
        otel.extend(self.otel_extra.iter().map(|(k, v)| format!("{k}:{v}")));
        let mut members: Vec<String> = Vec::new();
        if !otel.is_empty() {
            members.push(format!("ot={}", otel.join(";")));
        }
        members.extend(self.members.iter().map(|(k, v)| format!("{k}={v}")));
        members.join(",")
    }
}

fn valid_w3c_key(key: &str) -> bool {
    let simple = |k: &str, max: usize, first_digit_ok: bool| {
        let mut bytes = k.bytes();
        let Some(first) = bytes.next() else {
            return false;
        };
        k.len() <= max
            && (first.is_ascii_lowercase() || (first_digit_ok && first.is_ascii_digit()))
            && bytes.all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'*' | b'/')
            })
    };
    match key.split_once('@') {
        None => simple(key, 256, false),
        Some((tenant, system)) => simple(tenant, 241, true) && simple(system, 14, false),
    }
}

fn valid_w3c_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && !value.ends_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_published_vectors() {
        // FNV-1a 32 of "" is the offset basis; of "a" is 0xe40c292c (reference vectors
        // from the FNV specification). With the seed prefix the seed's 4 LE bytes come first,
        // so seed 0x00000061 over "" equals FNV-1a("a\0\0\0").
        let fnv = |data: &[u8]| {
            data.iter().fold(0x811c_9dc5u32, |h, b| {
                (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
            })
        };
        assert_eq!(fnv(b""), 0x811c_9dc5);
        assert_eq!(fnv(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_seeded(b"", 0x61), fnv(b"a\0\0\0"));
        assert_eq!(fnv1a_seeded(b"xyz", 7), fnv(b"\x07\0\0\0xyz"));
    }

    #[test]
    fn thresholds_encode_like_the_collector() {
        assert_eq!(ALWAYS_SAMPLE.tvalue(), "0");
        assert_eq!(NEVER_SAMPLE.tvalue(), "");
        // 50%: rejects half of 2^56 -> 0x80000000000000 -> "8".
        assert_eq!(
            probability_to_threshold(0.5, 4)
                .map(Threshold::tvalue)
                .as_deref(),
            Some("8")
        );
        // 25% -> reject 75% -> "c"; 10% at precision 4 -> 0xe666... rounded to 4 digits.
        assert_eq!(
            probability_to_threshold(0.25, 4)
                .map(Threshold::tvalue)
                .as_deref(),
            Some("c")
        );
        assert_eq!(
            probability_to_threshold(0.1, 4)
                .map(Threshold::tvalue)
                .as_deref(),
            Some("e666")
        );
        // 1%: 0.01 has frexp exponent -6, so one more digit: 0xfd70a3d70a3d70 -> "fd70a".
        assert_eq!(
            probability_to_threshold(0.01, 4)
                .map(Threshold::tvalue)
                .as_deref(),
            Some("fd70a")
        );
        assert_eq!(probability_to_threshold(1.0, 4), Some(ALWAYS_SAMPLE));
        assert_eq!(probability_to_threshold(0.0, 4), None);
        assert_eq!(probability_to_threshold(1.5, 4), None);
        assert_eq!(Threshold::from_tvalue("8"), Some(Threshold(1 << 55)));
        assert_eq!(Threshold::from_tvalue("123456789abcdef"), None);
        assert_eq!(Randomness(0xab).rvalue(), "000000000000ab");
        assert_eq!(
            Randomness::from_rvalue("000000000000ab"),
            Some(Randomness(0xab))
        );
        assert_eq!(Randomness::from_rvalue("ab"), None);
        assert_eq!(
            Randomness::from_trace_id(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]),
            Randomness(0x0009_0a0b_0c0d_0e0f)
        );
    }

    #[test]
    fn hashed_randomness_orders_like_the_bucket() {
        // Sampled iff bucket < scaled rate, expressed as threshold <= randomness.
        for data in [&b"a"[..], b"trace-1", b"\x01\x02", b"zzz"] {
            let bucket = u64::from(fnv1a_seeded(data, 22)) & (NUM_HASH_BUCKETS - 1);
            let rnd = randomness_from_bytes(data, 22);
            for scaled in [1u64, 1000, 8192, 16383, 16384] {
                let threshold = Threshold((NUM_HASH_BUCKETS - scaled) << 42);
                assert_eq!(
                    threshold.should_sample(rnd),
                    bucket < scaled,
                    "data {data:?} scaled {scaled}"
                );
            }
        }
    }

    #[test]
    fn tracestate_round_trip_and_errors() {
        let mut state = TraceState::parse("vendor=x, ot=th:8;foo:bar ,other@t=y").expect("valid");
        assert_eq!(state.threshold(), Some(Threshold(1 << 55)));
        assert_eq!(state.serialize(), "ot=th:8;foo:bar,vendor=x,other@t=y");
        state.set_randomness(Randomness(1));
        assert!(
            !state.update_threshold(Threshold(1)),
            "cannot lower an existing threshold"
        );
        assert!(state.update_threshold(Threshold(0xc << 52)));
        assert_eq!(
            state.serialize(),
            "ot=rv:00000000000001;th:c;foo:bar,vendor=x,other@t=y"
        );
        assert!(TraceState::parse("ot=th:xyz").is_err());
        assert!(TraceState::parse("ot=rv:12").is_err());
        assert!(TraceState::parse("Bad=1").is_err());
        assert!(TraceState::parse("novalue").is_err());
        assert_eq!(
            TraceState::parse("").expect("empty is fine").serialize(),
            ""
        );
    }
}
