//! The `json` format: the reference ledger's API shape (see [`super::model`]).
//!
//! The ledger's newer producers publish, on the same queue, JSON envelopes with a
//! `formatVersion` (its write-behind envelope, and its legacy "completion record") whose rows the
//! ledger derives with its own engine: they are refused by name as `unsupported`, never read as
//! a malformed transaction.

use super::{DecodeError, Transaction};

pub fn decode(body: &[u8]) -> Result<Transaction, DecodeError> {
    // One UTF-8 check of the whole body, then a parse that trusts it: cheaper than serde_json's
    // check of every string on its own (dozens per message).
    let text = std::str::from_utf8(body).map_err(|e| DecodeError::Malformed {
        format: "JSON",
        detail: format!("not UTF-8: {e}"),
    })?;
    // An envelope is no transaction (it has no id, status, ...): it is looked for only in a body
    // that failed as one, so that every good body is parsed once and not searched.
    serde_json::from_str(text).map_err(|e| match engine_envelope(body) {
        Some(envelope) => DecodeError::Unsupported(format!(
            "{envelope} carries engine evidence whose rows the ledger derives itself: run the \
             ledger's own consumer for it"
        )),
        None => DecodeError::Malformed {
            format: "JSON",
            detail: e.to_string(),
        },
    })
}

/// The name of the ledger's engine envelope `body` is, if it is one: a JSON object with a
/// top-level `formatVersion`.
pub fn engine_envelope(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let object = value.as_object()?;
    let version = object.get("formatVersion")?;
    let version = version
        .as_u64()
        .map_or_else(|| version.to_string(), |v| v.to_string());
    Some(if object.contains_key("record") {
        format!("the ledger's write-behind envelope v{version}")
    } else if object.contains_key("executionId") || object.contains_key("result") {
        format!("the ledger's completion record v{version}")
    } else {
        format!("a ledger envelope with formatVersion {version}")
    })
}
