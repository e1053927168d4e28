//! The `json` format: the reference ledger's API shape (see [`super::model`]).

use super::{DecodeError, Transaction};

pub fn decode(body: &[u8]) -> Result<Transaction, DecodeError> {
    serde_json::from_slice(body).map_err(|e| DecodeError::Malformed {
        format: "JSON",
        detail: e.to_string(),
    })
}
