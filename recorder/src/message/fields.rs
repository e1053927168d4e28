//! Field decoders that accept what any producer writes, whatever its encoder.
//!
//! serde's own impls follow one convention per type (`uuid` reads 16 raw bytes from msgpack,
//! `chrono` reads only text). Producers differ: ids come as text (canonical) or as 16 bytes,
//! timestamps as RFC 3339 text or the msgpack timestamp extension, and `nil` means absent.
//! These decoders use `deserialize_any`, so they work with JSON and msgpack alike.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{
    Deserialize, Deserializer,
    de::{self, SeqAccess, Visitor},
};
use uuid::Uuid;

use super::timestamp;

/// A uuid as text or as 16 raw bytes.
pub struct AnyUuid(pub Uuid);

impl<'de> Deserialize<'de> for AnyUuid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AnyUuid;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a uuid as a string or 16 bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyUuid, E> {
                Uuid::try_parse(v)
                    .map(AnyUuid)
                    .map_err(|e| E::custom(format!("{v:?} is not a uuid ({e})")))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<AnyUuid, E> {
                Uuid::from_slice(v)
                    .map(AnyUuid)
                    .map_err(|_| E::custom(format!("a binary uuid has 16 bytes, not {}", v.len())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A timestamp as RFC 3339 text or the msgpack timestamp extension, with its nanoseconds.
pub struct AnyTime(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for AnyTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyTime;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string or a msgpack timestamp")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AnyTime, E> {
                timestamp::parse_rfc3339(v).map(AnyTime).map_err(E::custom)
            }
            // rmp-serde hands an extension over as a newtype holding (type, bytes).
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<AnyTime, D::Error> {
                d.deserialize_any(ExtVisitor)
            }
        }
        d.deserialize_any(V)
    }
}

struct ExtVisitor;

impl<'de> Visitor<'de> for ExtVisitor {
    type Value = AnyTime;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a msgpack extension (type, data)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyTime, A::Error> {
        let missing = || de::Error::custom("truncated msgpack extension");
        let ext_type: i8 = seq.next_element()?.ok_or_else(missing)?;
        let data: Bytes = seq.next_element()?.ok_or_else(missing)?;
        timestamp::from_msgpack_ext(ext_type, &data.0)
            .map(AnyTime)
            .map_err(de::Error::custom)
    }
}

/// Raw bytes (msgpack `bin`, or an extension's data).
pub struct Bytes(pub Vec<u8>);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
        }
        d.deserialize_bytes(V)
    }
}

pub fn uuid<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
    AnyUuid::deserialize(d).map(|u| u.0)
}

pub fn opt_uuid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
    Ok(Option::<AnyUuid>::deserialize(d)?.map(|u| u.0))
}

pub fn time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    AnyTime::deserialize(d).map(|t| t.0)
}

pub fn opt_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Ok(Option::<AnyTime>::deserialize(d)?.map(|t| t.0))
}

/// `nil` where a value with a default is expected means the default: it must not sink a
/// NOT NULL column.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Whether a value carries something: a non-empty map, list or text, a number or a boolean
/// (`nil`, `{}`, `[]` and `""` carry nothing). Decodes nothing else.
pub fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl<'de> de::Visitor<'de> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any value")
        }
        fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_none<E: de::Error>(self) -> Result<bool, E> {
            Ok(false)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_any(V)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
            Ok(true)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
            Ok(true)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
            Ok(true)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
            Ok(true)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(!v.is_empty())
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<bool, E> {
            Ok(!v.is_empty())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
            let mut any = false;
            while seq.next_element::<de::IgnoredAny>()?.is_some() {
                any = true;
            }
            Ok(any)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            let mut any = false;
            while map
                .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                .is_some()
            {
                any = true;
            }
            Ok(any)
        }
    }
    d.deserialize_any(V)
}

/// A key that is present, even with `nil`: `Some(None)`; a missing key stays `None` (with
/// `#[serde(default)]`), so the two can be told apart.
pub fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The ledger's metadata (a map of keys to any JSON value): `nil` is none, `{}` an empty map;
/// anything but a map is refused.
pub fn metadata<'de, D: Deserializer<'de>>(d: D) -> Result<Option<super::Metadata>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(map)) => Ok(Some(map)),
        Some(other) => Err(de::Error::custom(format!(
            "metadata must be a map of keys to values, as the ledger's API takes it, not {other}"
        ))),
    }
}
