//! Message formats: what a queue message may hold and how it becomes rows.
//!
//! - [`json`]: the reference ledger's API shape ([`model::Transaction`]) as JSON;
//! - [`msgpack`]: the same shape as a msgpack map, from any encoder;
//! - [`midaz`]: the reference ledger's own queue message (a msgpack envelope around a msgpack
//!   payload), which it labels `application/json`.
//!
//! With `auto` (the default) each body is looked at, because content types cannot be trusted:
//! `{` starts JSON; a msgpack map whose first key is one of the ledger's envelope keys is
//! `midaz`; any other msgpack map is `msgpack`.

pub mod decimal;
pub mod fields;
pub mod json;
pub mod midaz;
pub mod model;
pub mod msgpack;
pub mod timestamp;

pub use decimal::Decimal;
pub use model::{Amount, Balance, JsonText, Metadata, Operation, Status, Transaction};

/// The concrete formats; `None` where a format is expected means `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Msgpack,
    Midaz,
}

impl Format {
    /// `BULK_RECORDER_MESSAGE_FORMAT`: `auto` (None) or one format.
    pub fn parse_setting(text: &str) -> Result<Option<Format>, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(None),
            "json" => Ok(Some(Format::Json)),
            "msgpack" => Ok(Some(Format::Msgpack)),
            "midaz" => Ok(Some(Format::Midaz)),
            other => Err(format!(
                "{other:?} is not a message format: use auto, json, msgpack or midaz"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Msgpack => "msgpack",
            Format::Midaz => "midaz",
        }
    }
}

/// What the ledger keeps about a message besides its rows, for the side effects of persisting
/// it (see [`crate::ledger`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bookkeeping {
    /// The `transaction_status` the ledger's Redis backup entry holds for this message while it
    /// waits to be persisted: `CREATED` for a new posting of the ledger's own format (its
    /// payload says APPROVED, not pending), otherwise the payload's status as sent.
    pub backup_status: compact_str::CompactString,
}

impl Bookkeeping {
    /// For formats without the ledger's validation data: the status as sent.
    fn of(transaction: &Transaction) -> Self {
        Self {
            backup_status: transaction.status.code.clone(),
        }
    }
}

/// One transaction of a message, with what the ledger keeps about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub transaction: Transaction,
    pub bookkeeping: Bookkeeping,
}

impl Entry {
    fn of(transaction: Transaction) -> Self {
        Self {
            bookkeeping: Bookkeeping::of(&transaction),
            transaction,
        }
    }
}

/// What a message asks of the recorder.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// The transactions to write, settled together as one message (all written, or the message
    /// refused whole): one, or each entry of a ledger message's `QueueData`. `format` labels the
    /// metrics (`midaz_legacy` for ledger messages without a `Version`).
    Transactions {
        entries: Vec<Entry>,
        format: &'static str,
    },
    /// Nothing to write (an empty ledger envelope): acknowledged and counted by `reason`.
    Skip { reason: &'static str },
}

impl Decoded {
    /// The (first) transaction, unless the message was skipped.
    pub fn into_transaction(self) -> Option<Transaction> {
        self.into_transactions().into_iter().next()
    }

    /// Every transaction of the message, in order.
    pub fn into_transactions(self) -> Vec<Transaction> {
        match self {
            Decoded::Transactions { entries, .. } => {
                entries.into_iter().map(|e| e.transaction).collect()
            }
            Decoded::Skip { .. } => Vec::new(),
        }
    }
}

/// Why a message was rejected; `reason()` labels `bulk_recorder_messages_rejected_total`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("empty body")]
    Empty,
    #[error("body of {size} bytes exceeds BULK_RECORDER_MAX_MESSAGE_BYTES={limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed {format}: {detail}")]
    Malformed {
        format: &'static str,
        detail: String,
    },
    #[error("invalid transaction: {0}")]
    Invalid(String),
    /// A known format this recorder deliberately does not write.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl DecodeError {
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::Invalid(_) => "invalid",
            DecodeError::Unsupported(_) => "unsupported",
        }
    }
}

/// Decodes and validates one message body in `format` (`None`: decided from the body).
pub fn decode(
    body: &[u8],
    format: Option<Format>,
    max_bytes: usize,
) -> Result<Decoded, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    if body.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            size: body.len(),
            limit: max_bytes,
        });
    }
    let format = match format {
        Some(format) => format,
        None => detect(body)?,
    };
    let transaction = match format {
        Format::Json => json::decode(body)?,
        Format::Msgpack => msgpack::decode(body)?,
        Format::Midaz => return midaz::decode(body),
    };
    transaction.validate().map_err(DecodeError::Invalid)?;
    Ok(Decoded::Transactions {
        entries: vec![Entry::of(transaction)],
        format: format.as_str(),
    })
}

/// The format of a body, from its first bytes.
pub fn detect(body: &[u8]) -> Result<Format, DecodeError> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    if start.is_some_and(|i| body[i] == b'{') {
        return Ok(Format::Json);
    }
    if msgpack::is_map(body) {
        let envelope =
            msgpack::first_map_key(body).is_some_and(|k| midaz::ENVELOPE_KEYS.contains(&k));
        return Ok(if envelope {
            Format::Midaz
        } else {
            Format::Msgpack
        });
    }
    let first = body
        .first()
        .map_or(String::new(), |b| format!(" 0x{b:02x}"));
    Err(DecodeError::Malformed {
        format: "body",
        detail: format!(
            "tried json, msgpack and midaz: the body starts with byte{first}, which is neither \
             '{{' (a JSON object) nor a msgpack map"
        ),
    })
}
