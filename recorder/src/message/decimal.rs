//! Exact decimals of any scale, from every encoding a producer may use.
//!
//! Amounts are money: they are never rounded. A decimal is kept as its canonical text (what
//! the reference ledger's decimal library prints, and what PostgreSQL's `numeric` reads back
//! exactly): no exponent, no leading zeros, no trailing fractional zeros, `0` for every zero.
//! The text goes to PostgreSQL as is, so no precision limit other than the one below applies.
//!
//! Accepted forms: text (`"1500.25"`, `"1e3"`), integers, floats with at most 15 significant
//! digits (all an `f64` keeps exactly; longer ones are refused, asking for a string), and the
//! binary form of Go's `shopspring/decimal` (`MarshalBinary`: a big-endian `int32` exponent,
//! then a gob-encoded `big.Int`), which the reference ledger's msgpack messages carry.

use std::fmt;

use compact_str::CompactString;
use serde::de::{self, Visitor};

/// Most digits a decimal may have (integer plus fractional part). Far beyond any amount, and
/// small enough that a few bytes claiming a huge exponent cannot make the recorder allocate
/// gigabytes.
pub const MAX_DIGITS: usize = 1000;

/// Significant digits an `f64` always carries exactly.
const F64_EXACT_DIGITS: usize = 15;

/// An exact decimal number in canonical text form (inline up to 24 characters).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Decimal(CompactString);

impl Decimal {
    /// The canonical text, e.g. `-5000.5`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_negative(&self) -> bool {
        self.0.starts_with('-')
    }

    pub fn is_zero(&self) -> bool {
        &*self.0 == "0"
    }

    /// Parses decimal text: optional sign, digits with an optional fraction, an optional
    /// exponent (`1.5e3`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if is_canonical(trimmed) {
            return Ok(Self(trimmed.into()));
        }
        let refuse = || format!("{trimmed:?} is not a decimal number");
        let (negative, unsigned) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            _ => (false, trimmed),
        };
        let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
            Some(at) => {
                let exponent: i64 = unsigned[at + 1..].parse().map_err(|_| refuse())?;
                (&unsigned[..at], exponent)
            }
            None => (unsigned, 0),
        };
        let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if integer.len() + fraction.len() == 0 || !all_digits(integer) || !all_digits(fraction) {
            return Err(refuse());
        }
        let mut digits = Vec::with_capacity(integer.len() + fraction.len());
        digits.extend_from_slice(integer.as_bytes());
        digits.extend_from_slice(fraction.as_bytes());
        let exponent = exponent
            .checked_sub(fraction.len() as i64)
            .ok_or_else(refuse)?;
        Self::from_parts(negative, &digits, exponent)
    }

    pub fn from_i64(value: i64) -> Self {
        Self(compact_str::ToCompactString::to_compact_string(&value))
    }

    pub fn from_u64(value: u64) -> Self {
        Self(compact_str::ToCompactString::to_compact_string(&value))
    }

    /// A JSON or msgpack float, refused when it may have been rounded by its producer.
    pub fn from_f64(value: f64) -> Result<Self, String> {
        if !value.is_finite() {
            return Err(format!("{value} is not a decimal number"));
        }
        // `{:e}` is the shortest text that reads back as the same f64, e.g. `1.50025e3`.
        let shortest = format!("{value:e}");
        let mantissa = shortest.split('e').next().unwrap_or_default();
        let significant = mantissa
            .bytes()
            .filter(u8::is_ascii_digit)
            .skip_while(|d| *d == b'0')
            .count();
        if significant > F64_EXACT_DIGITS {
            return Err(format!(
                "the number {value} has more than {F64_EXACT_DIGITS} significant digits and may \
                 have been rounded by its producer: send it as a string"
            ));
        }
        Self::parse(&shortest)
    }

    /// Go's `shopspring/decimal` binary form: `[exponent: i32 BE][gob big.Int]`, where the gob
    /// part is a header byte (0x02 positive, 0x03 negative) and the big-endian magnitude. A
    /// zero-value `decimal.Decimal{}` has no gob part at all.
    pub fn from_shopspring_binary(bytes: &[u8]) -> Result<Self, String> {
        let Some((exponent, gob)) = bytes.split_first_chunk::<4>() else {
            return Err(format!(
                "a binary decimal needs at least 4 bytes (its exponent), got {}",
                bytes.len()
            ));
        };
        let exponent = i64::from(i32::from_be_bytes(*exponent));
        let (negative, magnitude) = match gob.split_first() {
            None => return Ok(Self::zero()),
            Some((0x02, magnitude)) => (false, magnitude),
            Some((0x03, magnitude)) => (true, magnitude),
            Some((header, _)) => {
                return Err(format!(
                    "binary decimal: unknown big.Int header byte 0x{header:02x} (expected 0x02 or 0x03)"
                ));
            }
        };
        // ~2.4 decimal digits per byte: refuse before converting what could not be kept.
        if magnitude.len() > MAX_DIGITS / 2 {
            return Err(too_long());
        }
        let digits = big_endian_to_decimal(magnitude);
        Self::from_parts(negative, &digits, exponent)
    }

    fn zero() -> Self {
        Self("0".into())
    }

    /// `digits x 10^exponent`, with `digits` ASCII decimal digits (leading zeros allowed).
    fn from_parts(negative: bool, digits: &[u8], exponent: i64) -> Result<Self, String> {
        let first = digits
            .iter()
            .position(|d| *d != b'0')
            .unwrap_or(digits.len());
        let digits = &digits[first..];
        if digits.is_empty() {
            return Ok(Self::zero());
        }
        let len = digits.len() as i64;
        // Length of the integer part and of the (untrimmed) fraction.
        let (integer_len, fraction_len) = if exponent >= 0 {
            (len.saturating_add(exponent), 0)
        } else {
            ((len + exponent).max(0), -exponent)
        };
        if integer_len.saturating_add(fraction_len) > MAX_DIGITS as i64 + len {
            return Err(too_long());
        }
        let mut text = CompactString::with_capacity((integer_len + fraction_len + 3) as usize);
        if negative {
            text.push('-');
        }
        if exponent >= 0 {
            push_digits(&mut text, digits);
            push_zeros(&mut text, exponent as usize);
        } else {
            let split = (len + exponent).max(0) as usize;
            if split == 0 {
                text.push('0');
            } else {
                push_digits(&mut text, &digits[..split]);
            }
            text.push('.');
            push_zeros(&mut text, (-exponent - len).max(0) as usize);
            push_digits(&mut text, &digits[split..]);
            let kept = text.trim_end_matches('0').trim_end_matches('.').len();
            text.truncate(kept);
        }
        let significant = text.bytes().filter(u8::is_ascii_digit).count();
        if significant > MAX_DIGITS {
            return Err(too_long());
        }
        Ok(Self(text))
    }
}

/// Already what [`Decimal::parse`] would make of it (most amounts are): an optional `-`, digits
/// without a leading zero (but `0` itself), and a fraction without trailing zeros; not `-0`.
fn is_canonical(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (integer, fraction) = match unsigned.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let integer_ok = digits(integer) && (integer == "0" || !integer.starts_with('0'));
    let fraction_ok = fraction.is_none_or(|f| digits(f) && !f.ends_with('0'));
    let zero = integer == "0" && fraction.is_none();
    integer_ok && fraction_ok && !(zero && text.starts_with('-')) && text.len() <= MAX_DIGITS
}

fn too_long() -> String {
    format!("a decimal of more than {MAX_DIGITS} digits is refused")
}

fn push_digits(text: &mut CompactString, digits: &[u8]) {
    // ASCII digits: one copy, not a push per character.
    text.push_str(std::str::from_utf8(digits).expect("ASCII digits"));
}

fn push_zeros(text: &mut CompactString, count: usize) {
    const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    let mut left = count;
    while left > 0 {
        let n = left.min(ZEROS.len());
        text.push_str(&ZEROS[..n]);
        left -= n;
    }
}

/// The decimal digits of an unsigned big-endian integer of any length.
fn big_endian_to_decimal(bytes: &[u8]) -> Vec<u8> {
    if bytes.len() <= 16 {
        let mut value = [0u8; 16];
        value[16 - bytes.len()..].copy_from_slice(bytes);
        let mut value = u128::from_be_bytes(value);
        let mut digits = Vec::with_capacity(39);
        loop {
            digits.push(b'0' + (value % 10) as u8);
            value /= 10;
            if value == 0 {
                break;
            }
        }
        digits.reverse();
        return digits;
    }
    // Schoolbook division by 10^9 over 32-bit limbs, most significant first.
    let mut limbs: Vec<u32> = Vec::with_capacity(bytes.len().div_ceil(4));
    let head = bytes.len() % 4;
    if head > 0 {
        limbs.push(
            bytes[..head]
                .iter()
                .fold(0, |acc, b| acc << 8 | u32::from(*b)),
        );
    }
    limbs.extend(
        bytes[head..]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])),
    );
    let mut groups = Vec::new();
    while limbs.iter().any(|l| *l != 0) {
        let mut remainder = 0u64;
        for limb in limbs.iter_mut() {
            let current = remainder << 32 | u64::from(*limb);
            *limb = (current / 1_000_000_000) as u32;
            remainder = current % 1_000_000_000;
        }
        groups.push(remainder as u32);
        while limbs.first() == Some(&0) {
            limbs.remove(0);
        }
    }
    let mut text = groups.pop().map(|g| g.to_string()).unwrap_or_default();
    for group in groups.iter().rev() {
        text.push_str(&format!("{group:09}"));
    }
    text.into_bytes()
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({})", self.0)
    }
}

impl std::str::FromStr for Decimal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Written as a string: the exact form every reader understands.
impl serde::Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Decimal {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DecimalVisitor)
    }
}

struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal as a string, a number, or shopspring/decimal binary")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        Decimal::parse(v).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from_i64(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from_u64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        Decimal::from_f64(v).map_err(E::custom)
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Decimal, E> {
        Decimal::from_shopspring_binary(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        Decimal::parse(s).unwrap().to_string()
    }

    #[test]
    fn text_is_exact_and_canonical() {
        assert_eq!(text("1500.25"), "1500.25");
        assert_eq!(text("250.00"), "250");
        assert_eq!(text("-5000.50"), "-5000.5");
        assert_eq!(text("0.000"), "0");
        assert_eq!(text("-0"), "0");
        assert_eq!(text("007.5"), "7.5");
        assert_eq!(text(".5"), "0.5");
        assert_eq!(text("1e3"), "1000");
        assert_eq!(text("1.5E-3"), "0.0015");
        assert_eq!(
            text("123456789012345678901234567890.123456789012345678901234567890"),
            "123456789012345678901234567890.12345678901234567890123456789"
        );
    }

    #[test]
    fn what_is_no_decimal_is_refused() {
        for bad in [
            "",
            "abc",
            "12,5",
            "1.2.3",
            "--1",
            "1e",
            "e5",
            "0x10",
            "1e99999999999999999999",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn huge_exponents_are_refused_before_allocating() {
        let err = Decimal::parse("1e2000000000").unwrap_err();
        assert!(err.contains("more than 1000 digits"), "{err}");
        assert!(Decimal::parse("1e-2000000000").is_err());
        assert_eq!(Decimal::parse("0e2000000000").unwrap().to_string(), "0");
    }

    #[test]
    fn floats_keep_their_digits_up_to_fifteen() {
        assert_eq!(Decimal::from_f64(1500.25).unwrap().to_string(), "1500.25");
        assert_eq!(Decimal::from_f64(0.1).unwrap().to_string(), "0.1");
        assert_eq!(
            Decimal::from_f64(1e21).unwrap().to_string(),
            "1".to_string() + &"0".repeat(21)
        );
        let err = Decimal::from_f64(1234567890.1234567).unwrap_err();
        assert!(err.contains("send it as a string"), "{err}");
    }

    /// The byte strings the reference ledger's decimal library writes (from its wire notes).
    #[test]
    fn shopspring_binary_forms() {
        let cases: [(&[u8], &str); 8] = [
            (&[0xff, 0xff, 0xff, 0xfe, 0x02, 0x61, 0xa8], "250"),
            (&[0xff, 0xff, 0xff, 0xfe, 0x03, 0x07, 0xa1, 0x52], "-5000.5"),
            (&[0x00, 0x00, 0x00, 0x03, 0x02, 0x05], "5000"),
            (&[0x00, 0x00, 0x00, 0x00, 0x02], "0"),
            (&[0x00, 0x00, 0x00, 0x01, 0x02], "0"),
            (&[0xff, 0xff, 0xff, 0xfe, 0x02], "0"),
            (&[0x00, 0x00, 0x00, 0x00], "0"),
            (&[0xff, 0xff, 0xff, 0xfe, 0x02, 0x01], "0.01"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                Decimal::from_shopspring_binary(bytes).unwrap().to_string(),
                expected,
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn big_binary_magnitudes_convert_exactly() {
        // 2^256 - 1, a 32-byte magnitude, with 9 fractional digits.
        let mut bytes = vec![0xff, 0xff, 0xff, 0xf7, 0x02];
        bytes.extend([0xff; 32]);
        let expected =
            "115792089237316195423570985008687907853269984665640564039457584007913.129639935";
        assert_eq!(
            Decimal::from_shopspring_binary(&bytes).unwrap().to_string(),
            expected
        );
        // A 17-byte magnitude crosses the u128 fast path: 2^128.
        let mut bytes = vec![0, 0, 0, 0, 0x02, 0x01];
        bytes.extend([0u8; 16]);
        assert_eq!(
            Decimal::from_shopspring_binary(&bytes).unwrap().to_string(),
            "340282366920938463463374607431768211456"
        );
    }

    #[test]
    fn malformed_binary_is_refused_with_the_reason() {
        assert!(
            Decimal::from_shopspring_binary(&[0, 0, 0])
                .unwrap_err()
                .contains("4 bytes")
        );
        assert!(
            Decimal::from_shopspring_binary(&[0, 0, 0, 0, 0x07, 1])
                .unwrap_err()
                .contains("header byte 0x07")
        );
        assert!(Decimal::from_shopspring_binary(&[0x7f, 0xff, 0xff, 0xff, 0x02, 1]).is_err());
    }

    #[test]
    fn json_strings_and_numbers() {
        #[derive(serde::Deserialize)]
        struct Holder {
            v: Option<Decimal>,
        }
        let v =
            |body: &str| serde_json::from_str::<Holder>(body).map(|h| h.v.map(|d| d.to_string()));
        assert_eq!(v(r#"{"v":"1500.25"}"#).unwrap().unwrap(), "1500.25");
        assert_eq!(
            v(r#"{"v":9007199254740993}"#).unwrap().unwrap(),
            "9007199254740993"
        );
        assert_eq!(v(r#"{"v":-3}"#).unwrap().unwrap(), "-3");
        assert_eq!(v(r#"{"v":null}"#).unwrap(), None);
        assert!(v(r#"{"v":true}"#).is_err());
    }
}
