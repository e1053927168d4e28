//! JSON as Go's `encoding/json` writes it, for the ledger's events: its consumers read what the
//! ledger's `json.Marshal` produced, byte for byte where they care (decimals as quoted text
//! without trailing zeros, times in RFC 3339 with the nanoseconds trimmed, map keys sorted,
//! `<`, `>` and `&` escaped).

use std::fmt::Write;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde_json::Value;

/// A JSON text being written.
#[derive(Default)]
pub struct GoJson {
    pub out: String,
}

impl GoJson {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            out: String::with_capacity(n),
        }
    }

    pub fn raw(&mut self, text: &str) {
        self.out.push_str(text);
    }

    /// A string, escaped as Go escapes it: `"`, `\`, the short forms `\n \r \t \b \f`, other
    /// control characters as `\u00xx`, and `<`, `>`, `&`, U+2028 and U+2029 as `\uXXXX`.
    pub fn string(&mut self, text: &str) {
        self.out.push('"');
        // Runs of characters that need no escape are copied whole.
        let mut run = 0;
        for (i, c) in text.char_indices() {
            // "" stands for `\uXXXX`.
            let escape = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => Some(""),
                c if u32::from(c) < 0x20 => Some(""),
                _ => None,
            };
            let Some(escape) = escape else { continue };
            self.out.push_str(&text[run..i]);
            run = i + c.len_utf8();
            if escape.is_empty() {
                let _ = write!(self.out, "\\u{:04x}", u32::from(c));
            } else {
                self.out.push_str(escape);
            }
        }
        self.out.push_str(&text[run..]);
        self.out.push('"');
    }

    /// A UUID in its hyphenated form (no escape needed, no allocation).
    pub fn uuid(&mut self, id: &uuid::Uuid) {
        let mut buffer = uuid::Uuid::encode_buffer();
        self.out.push('"');
        self.out.push_str(id.hyphenated().encode_lower(&mut buffer));
        self.out.push('"');
    }

    pub fn opt_string(&mut self, text: Option<&str>) {
        match text {
            Some(text) => self.string(text),
            None => self.raw("null"),
        }
    }

    pub fn bool(&mut self, value: bool) {
        self.raw(if value { "true" } else { "false" });
    }

    /// A `time.Time`: RFC 3339 with as many fractional digits as the nanoseconds need.
    pub fn time(&mut self, t: DateTime<Utc>) {
        let _ = write!(
            self.out,
            "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let nanos = t.nanosecond() % 1_000_000_000;
        if nanos != 0 {
            let digits = format!("{nanos:09}");
            self.out.push('.');
            self.out.push_str(digits.trim_end_matches('0'));
        }
        self.out.push_str("Z\"");
    }

    pub fn opt_time(&mut self, t: Option<DateTime<Utc>>) {
        match t {
            Some(t) => self.time(t),
            None => self.raw("null"),
        }
    }

    /// Any JSON value, as Go writes the `map[string]any` it decoded: keys sorted, every number
    /// a float64 (Go decodes them so), printed as Go prints one: `42` stays `42`, but an integer
    /// beyond 2^53 comes out rounded (`9007199254740993` as `9007199254740992`).
    pub fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.raw("null"),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => match n.as_f64() {
                Some(f) => self.float(f),
                None => self.raw("null"),
            },
            Value::String(s) => self.string(s),
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.value(item);
                }
                self.out.push(']');
            }
            Value::Object(map) => self.map(map),
        }
    }

    /// A map, its keys in byte order (as Go sorts them).
    pub fn map(&mut self, map: &serde_json::Map<String, Value>) {
        let mut entries: Vec<_> = map.iter().collect();
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        self.out.push('{');
        for (i, (key, item)) in entries.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.string(key);
            self.out.push(':');
            self.value(item);
        }
        self.out.push('}');
    }

    /// A float64 as `strconv.AppendFloat(f, 'f' or 'e', -1, 64)` does in `encoding/json`: the
    /// shortest digits that read back the same, in exponent form below 1e-6 and from 1e21.
    pub fn float(&mut self, f: f64) {
        let abs = f.abs();
        if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
            let text = format!("{f:e}");
            let (mantissa, exponent) = text.split_once('e').expect("exponent form");
            let exponent: i32 = exponent.parse().expect("an exponent");
            let sign = if exponent < 0 { '-' } else { '+' };
            let _ = write!(self.out, "{mantissa}e{sign}{:02}", exponent.abs());
            // Go keeps two exponent digits only for positive exponents ("e-07" becomes "e-7").
            if exponent < 0 && exponent > -10 {
                let at = self.out.len() - 2;
                self.out.remove(at);
            }
        } else {
            let _ = write!(self.out, "{f}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut GoJson)) -> String {
        let mut json = GoJson::default();
        f(&mut json);
        json.out
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        assert_eq!(
            written(|j| j.string("a<b>&\"c\\\n\t\u{1b}\u{2028}São/")),
            r#""a\u003cb\u003e\u0026\"c\\\n\t\u001b\u2028São/""#
        );
    }

    #[test]
    fn floats_as_go_prints_a_float64() {
        for (f, go) in [
            (42.0, "42"),
            (12.5, "12.5"),
            (1e20, "100000000000000000000"),
            (0.000001, "0.000001"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (1e-10, "1e-10"),
            (1e100, "1e+100"),
            (-0.0, "-0"),
            (0.1, "0.1"),
        ] {
            assert_eq!(written(|j| j.float(f)), go, "{f}");
        }
    }

    #[test]
    fn integers_come_out_as_the_float64_go_decoded_them_into() {
        let value: Value = serde_json::from_str(
            r#"{"small":42,"negative":-7,"exact":9007199254740992,"rounded":9007199254740993,"u64":18446744073709551615,"zero":0}"#,
        )
        .unwrap();
        // What Go's json.Marshal prints for the map[string]any json.Unmarshal made of it.
        assert_eq!(
            written(|j| j.value(&value)),
            r#"{"exact":9007199254740992,"negative":-7,"rounded":9007199254740992,"small":42,"u64":18446744073709552000,"zero":0}"#
        );
    }

    #[test]
    fn times_carry_their_nanoseconds_trimmed() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            written(|j| j.time(at("2026-07-20T12:05:00.250Z"))),
            "\"2026-07-20T12:05:00.25Z\""
        );
        assert_eq!(
            written(|j| j.time(at("2026-07-20T12:15:30.000000500Z"))),
            "\"2026-07-20T12:15:30.0000005Z\""
        );
        assert_eq!(
            written(|j| j.time(at("2026-07-01T06:30:00-03:00"))),
            "\"2026-07-01T09:30:00Z\""
        );
    }

    #[test]
    fn maps_are_sorted_by_bytes_at_every_level() {
        let value: Value =
            serde_json::from_str(r#"{"b":1,"a":{"é":true,"B":null,"a":[2.5,"x"]}}"#).unwrap();
        assert_eq!(
            written(|j| j.value(&value)),
            r#"{"a":{"B":null,"a":[2.5,"x"],"é":true},"b":1}"#
        );
    }
}
