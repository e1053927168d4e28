//! Exact decimals from JSON strings or numbers, and msgpack strings or numbers.
//!
//! Amounts are money: they are never rounded. Strings and integers are exact. A JSON number
//! with a fraction reaches us as an `f64`; its shortest round-trip form is the number that was
//! written as long as it had at most 15 significant digits (f64 guarantees 15), so longer ones
//! are refused with a message asking for a string instead of being silently rounded.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};

/// Significant digits an `f64` always carries exactly.
const F64_EXACT_DIGITS: usize = 15;

/// Parses a decimal written as text, refusing what `Decimal` cannot hold exactly.
pub fn parse(text: &str) -> Result<Decimal, String> {
    let text = text.trim();
    let parsed = if text.contains(['e', 'E']) {
        Decimal::from_scientific(text)
    } else {
        Decimal::from_str_exact(text)
    };
    parsed.map_err(|e| {
        format!("{text:?} is not an exact decimal of at most 28 significant digits ({e})")
    })
}

fn from_f64(value: f64) -> Result<Decimal, String> {
    if !value.is_finite() {
        return Err(format!("{value} is not a decimal"));
    }
    let shortest = format!("{value}");
    let digits = shortest
        .chars()
        .filter(char::is_ascii_digit)
        .skip_while(|c| *c == '0')
        .count();
    if digits > F64_EXACT_DIGITS {
        return Err(format!(
            "the JSON number {shortest} has more than {F64_EXACT_DIGITS} significant digits and may \
             have been rounded: send it as a string"
        ));
    }
    parse(&shortest)
}

struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Option<Decimal>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal as a string or a number")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse(v).map(Some).map_err(E::custom)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Decimal::from(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Decimal::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        from_f64(v).map(Some).map_err(E::custom)
    }
}

/// `#[serde(with = "decimal::option")]` for `Option<Decimal>` fields.
pub mod option {
    use super::*;

    pub fn deserialize<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        d.deserialize_any(DecimalVisitor)
    }

    /// Written as a string, the exact form every reader understands.
    pub fn serialize<S: serde::Serializer>(
        value: &Option<Decimal>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Holder {
        #[serde(with = "option")]
        v: Option<Decimal>,
    }

    fn json(body: &str) -> Result<Option<Decimal>, String> {
        serde_json::from_str::<Holder>(body)
            .map(|h| h.v)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn strings_and_integers_are_exact() {
        assert_eq!(
            json(r#"{"v":"1500.25"}"#).unwrap().unwrap().to_string(),
            "1500.25"
        );
        assert_eq!(
            json(r#"{"v":"12345678901234567890.12345678"}"#)
                .unwrap()
                .unwrap()
                .to_string(),
            "12345678901234567890.12345678"
        );
        assert_eq!(
            json(r#"{"v":9007199254740993}"#)
                .unwrap()
                .unwrap()
                .to_string(),
            "9007199254740993"
        );
        assert_eq!(json(r#"{"v":"1e3"}"#).unwrap().unwrap().to_string(), "1000");
        assert_eq!(json(r#"{"v":null}"#).unwrap(), None);
    }

    #[test]
    fn short_json_fractions_keep_their_digits() {
        assert_eq!(
            json(r#"{"v":1500.25}"#).unwrap().unwrap().to_string(),
            "1500.25"
        );
        assert_eq!(json(r#"{"v":0.1}"#).unwrap().unwrap().to_string(), "0.1");
    }

    #[test]
    fn long_json_fractions_are_refused_not_rounded() {
        let err = json(r#"{"v":1234567890.1234567}"#).unwrap_err();
        assert!(err.contains("send it as a string"), "{err}");
    }

    #[test]
    fn text_that_is_no_decimal_or_too_precise_is_refused() {
        assert!(json(r#"{"v":"12,5"}"#).is_err());
        assert!(json(r#"{"v":"abc"}"#).is_err());
        assert!(json(r#"{"v":"1.00000000000000000000000000001"}"#).is_err());
    }
}
