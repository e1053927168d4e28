//! The `msgpack` format: the API shape (see [`super::model`]) as a msgpack map, written by any
//! encoder. Ids may be text or 16-byte `bin`, decimals text or numbers, timestamps RFC 3339
//! text or the timestamp extension, and `nil` means absent.

use super::{DecodeError, Transaction};

pub fn decode(body: &[u8]) -> Result<Transaction, DecodeError> {
    rmp_serde::from_slice(body).map_err(|e| DecodeError::Malformed {
        format: "msgpack",
        detail: e.to_string(),
    })
}

/// The first key of a body that is a msgpack map with string keys: enough to tell the
/// reference ledger's envelope from a transaction without decoding the whole body.
pub fn first_map_key(body: &[u8]) -> Option<&str> {
    let mut rest = body;
    let len = rmp::decode::read_map_len(&mut rest).ok()?;
    if len == 0 {
        return None;
    }
    let (key, _) = rmp::decode::read_str_from_slice(rest).ok()?;
    Some(key)
}

/// Whether the body starts like a msgpack map.
pub fn is_map(body: &[u8]) -> bool {
    matches!(body.first(), Some(0x80..=0x8f | 0xde | 0xdf))
}
