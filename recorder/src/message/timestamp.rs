//! Timestamps as producers write them: RFC 3339 text, or the msgpack timestamp extension.
//!
//! A message keeps its nanoseconds (the ledger's events carry them); PostgreSQL keeps
//! microseconds, and every timestamp is truncated (never rounded) to them where it becomes a
//! column value ([`truncate_to_micros`]), as the reference ledger's driver does.

use chrono::{DateTime, SubsecRound, Utc};

/// The msgpack extension type of timestamps.
pub const MSGPACK_EXT_TYPE: i8 = -1;

/// Parses RFC 3339 text (`2026-11-24T10:00:00.123456789-03:00`).
pub fn parse_rfc3339(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 timestamp ({e})"))
}

/// Decodes the msgpack timestamp extension (type -1) in its 32, 64 and 96-bit forms.
pub fn from_msgpack_ext(ext_type: i8, data: &[u8]) -> Result<DateTime<Utc>, String> {
    if ext_type != MSGPACK_EXT_TYPE {
        return Err(format!(
            "msgpack extension type {ext_type} is not a timestamp (type -1)"
        ));
    }
    let (seconds, nanos) = match data.len() {
        4 => (
            i64::from(u32::from_be_bytes(data.try_into().expect("4"))),
            0,
        ),
        8 => {
            let packed = u64::from_be_bytes(data.try_into().expect("8"));
            ((packed & 0x3_ffff_ffff) as i64, (packed >> 34) as u32)
        }
        12 => (
            i64::from_be_bytes(data[4..].try_into().expect("8")),
            u32::from_be_bytes(data[..4].try_into().expect("4")),
        ),
        n => {
            return Err(format!("a msgpack timestamp has 4, 8 or 12 bytes, not {n}"));
        }
    };
    if nanos >= 1_000_000_000 {
        return Err(format!("msgpack timestamp with {nanos} nanoseconds"));
    }
    DateTime::from_timestamp(seconds, nanos)
        .ok_or_else(|| format!("msgpack timestamp of {seconds} s is out of range"))
}

/// Drops what PostgreSQL cannot keep. Sub-second parts are never negative in chrono, so this
/// is a floor also before 1970.
pub fn truncate_to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the table holds it.
    fn iso(t: DateTime<Utc>) -> String {
        truncate_to_micros(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// The examples of the reference ledger's wire notes.
    #[test]
    fn the_three_extension_forms() {
        let ts32 = from_msgpack_ext(-1, &[0x6a, 0x44, 0xde, 0x18]).unwrap();
        assert_eq!(iso(ts32), "2026-07-01T09:30:00.000000Z");
        let ts64 = from_msgpack_ext(-1, &[0x1d, 0x6f, 0x34, 0x54, 0x6a, 0x5e, 0x0d, 0xc0]).unwrap();
        assert_eq!(
            iso(ts64),
            "2026-07-20T12:00:00.123456Z",
            "truncated, not rounded"
        );
        assert_eq!(
            ts64.timestamp_subsec_nanos(),
            123_456_789,
            "the message keeps them"
        );
        let go_zero = from_msgpack_ext(
            -1,
            &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xf1, 0x88, 0x6e, 0x09, 0x00],
        )
        .unwrap();
        assert_eq!(iso(go_zero), "0001-01-01T00:00:00.000000Z");
    }

    #[test]
    fn other_extensions_and_lengths_are_refused() {
        assert!(from_msgpack_ext(5, &[0; 4]).unwrap_err().contains("type 5"));
        assert!(from_msgpack_ext(-1, &[0; 5]).unwrap_err().contains("not 5"));
        let bad_nanos = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(from_msgpack_ext(-1, &bad_nanos).is_err());
    }

    #[test]
    fn text_keeps_the_instant_and_the_table_drops_nanoseconds() {
        let t = parse_rfc3339("2026-07-20T09:00:00.123456789-03:00").unwrap();
        assert_eq!(iso(t), "2026-07-20T12:00:00.123456Z");
        assert_eq!(t.timestamp_subsec_nanos(), 123_456_789);
        let before_1970 = parse_rfc3339("1969-12-31T23:59:59.9999999Z").unwrap();
        assert_eq!(iso(before_1970), "1969-12-31T23:59:59.999999Z");
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
