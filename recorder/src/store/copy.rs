//! The fast path of a bulk write: `COPY` straight into the tables.
//!
//! When none of a bulk's transaction ids is stored yet (the common case: the queue holds new
//! transactions), `COPY` writes its rows with less work per row than `INSERT ... ON CONFLICT`:
//! no speculative insertion, batched heap inserts, no parameter arrays to expand. `COPY`
//! cannot skip a row that exists: a duplicate fails it (`unique_violation`), the database
//! transaction is rolled back, and the bulk is written again by the upsert statement, which
//! handles redeliveries, status transitions and conflicting content.
//!
//! Rows are sent in `COPY`'s binary format with every column the upsert writes, and the same
//! values for the ones a message leaves out (the columns' defaults).

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{commit::Deadline, db::WriteError, json, merge::Merged};
use crate::message::{Decimal, Operation};

const COPY_TRANSACTIONS: &str = concat!(
    "COPY transaction (",
    transaction_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

const COPY_OPERATIONS: &str = concat!(
    "COPY operation (",
    operation_columns!(),
    ") FROM STDIN (FORMAT binary)"
);

/// `unique_violation`: some row of the bulk is stored already.
pub const UNIQUE_VIOLATION: &str = "23505";

/// Rows in `COPY`'s binary format: a header, then per row the field count and each field as
/// a length (-1 for NULL) and the value in the type's own binary form. Nothing is parsed as
/// text on the server: ids, decimals and timestamps arrive as the table stores them.
struct Rows {
    buf: Vec<u8>,
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl Rows {
    fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes + 32);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension
        Self { buf }
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }

    fn value(&mut self, bytes: &[u8]) {
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn text(&mut self, value: &str) {
        self.value(value.as_bytes());
    }

    fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    fn uuid(&mut self, id: Uuid) {
        self.value(id.as_bytes());
    }

    fn opt_uuid(&mut self, id: Option<Uuid>) {
        match id {
            Some(id) => self.uuid(id),
            None => self.null(),
        }
    }

    fn time(&mut self, t: DateTime<Utc>) {
        self.value(&(t.timestamp_micros() - POSTGRES_EPOCH_MICROS).to_be_bytes());
    }

    fn opt_time(&mut self, t: Option<DateTime<Utc>>) {
        match t {
            Some(t) => self.time(t),
            None => self.null(),
        }
    }

    fn bool(&mut self, b: bool) {
        self.value(&[u8::from(b)]);
    }

    fn int8(&mut self, n: i64) {
        self.value(&n.to_be_bytes());
    }

    fn jsonb(&mut self, json: &str) {
        self.buf
            .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.buf.push(1); // jsonb's binary format version
        self.buf.extend_from_slice(json.as_bytes());
    }

    fn opt_jsonb(&mut self, json: Option<&str>) {
        match json {
            Some(j) => self.jsonb(j),
            None => self.null(),
        }
    }

    fn numeric(&mut self, decimal: &Decimal) {
        let length_at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        numeric(decimal.as_str(), &mut self.buf);
        let length = (self.buf.len() - length_at - 4) as i32;
        self.buf[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
    }

    fn opt_numeric(&mut self, decimal: Option<&Decimal>) {
        match decimal {
            Some(d) => self.numeric(d),
            None => self.null(),
        }
    }
}

/// Base-10000 digits a decimal can have: `Decimal` keeps at most 1000 decimal digits.
const MAX_NUMERIC_DIGITS: usize = crate::message::decimal::MAX_DIGITS / 4 + 2;

/// Appends PostgreSQL's binary `numeric` of canonical decimal text to `out`: digit count,
/// weight, sign and display scale, then the digits in base 10000 (the first one times
/// 10000^weight). No allocation: this runs for every amount and balance of a bulk.
fn numeric(text: &str, out: &mut Vec<u8>) {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let integer = integer.trim_start_matches('0');
    let group = |digits: &[u8]| {
        digits
            .iter()
            .fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0'))
    };
    let mut digits = [0i16; MAX_NUMERIC_DIGITS];
    let mut count = 0;
    let mut push = |d: i16| {
        digits[count] = d;
        count += 1;
    };
    // Integer digits in groups of four counted from the decimal point.
    let head = integer.len() % 4;
    if head > 0 {
        push(group(&integer.as_bytes()[..head]));
    }
    integer.as_bytes()[head..]
        .chunks(4)
        .for_each(|c| push(group(c)));
    let integer_groups = integer.len().div_ceil(4);
    // Fraction digits in groups of four from the decimal point, the last one padded.
    for chunk in fraction.as_bytes().chunks(4) {
        push(group(chunk) * 10i16.pow((4 - chunk.len()) as u32));
    }
    // No leading or trailing zero groups (the weight moves with the leading ones).
    let leading = digits[..count].iter().take_while(|d| **d == 0).count();
    let trailing = digits[leading..count]
        .iter()
        .rev()
        .take_while(|d| **d == 0)
        .count();
    let kept = &digits[leading..count - trailing];
    let weight = if kept.is_empty() {
        0
    } else {
        integer_groups as i16 - 1 - leading as i16
    };
    out.extend_from_slice(&(kept.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    let sign: u16 = if negative && !kept.is_empty() {
        0x4000
    } else {
        0
    };
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&(fraction.len() as i16).to_be_bytes());
    for d in kept {
        out.extend_from_slice(&d.to_be_bytes());
    }
}

/// The `transaction` rows of `merged`.
fn transaction_rows(merged: &Merged, now: DateTime<Utc>) -> Vec<u8> {
    let mut rows = Rows::with_capacity(merged.rows.len() * 300);
    for row in &merged.rows {
        let (t, state) = (row.content, row.state);
        rows.row(18);
        rows.uuid(t.id);
        rows.opt_uuid(t.parent_transaction_id);
        rows.text(&t.description);
        rows.text(&state.status.code);
        rows.opt_text(state.status.description.as_deref());
        rows.opt_numeric(t.amount.as_ref());
        rows.text(&t.asset_code);
        rows.text(&t.chart_of_accounts_group_name);
        rows.uuid(t.ledger_id);
        rows.uuid(t.organization_id);
        rows.opt_jsonb(json(t.body.as_ref()));
        rows.opt_text(t.route.as_deref());
        rows.opt_uuid(t.route_id);
        rows.bool(t.fees_skipped);
        rows.bool(t.tracer_skipped);
        rows.time(t.created_at);
        rows.time(state.updated_at.unwrap_or(now));
        rows.opt_time(t.deleted_at);
    }
    rows.finish()
}

/// The `operation` rows, with the columns' defaults where a message left a value out.
fn operation_rows(operations: &[&Operation], now: DateTime<Utc>) -> Vec<u8> {
    let mut rows = Rows::with_capacity(operations.len() * 500);
    for o in operations {
        let before = o.balance.as_ref();
        let after = o.balance_after.as_ref();
        rows.row(31);
        rows.uuid(o.id);
        rows.uuid(o.transaction_id);
        rows.text(&o.description);
        rows.text(&o.kind);
        rows.text(&o.asset_code);
        rows.opt_numeric(o.amount.as_ref().and_then(|a| a.value.as_ref()));
        rows.opt_numeric(before.and_then(|b| b.available.as_ref()));
        rows.opt_numeric(before.and_then(|b| b.on_hold.as_ref()));
        rows.opt_numeric(after.and_then(|b| b.available.as_ref()));
        rows.opt_numeric(after.and_then(|b| b.on_hold.as_ref()));
        rows.int8(before.and_then(|b| b.version).unwrap_or(0));
        rows.int8(after.and_then(|b| b.version).unwrap_or(0));
        rows.text(&o.status.code);
        rows.opt_text(o.status.description.as_deref());
        rows.uuid(o.account_id);
        rows.text(&o.account_alias);
        rows.uuid(o.balance_id);
        rows.text(
            o.balance_key
                .as_deref()
                .filter(|k| !k.is_empty())
                .unwrap_or("default"),
        );
        rows.text(&o.chart_of_accounts);
        rows.uuid(o.organization_id);
        rows.uuid(o.ledger_id);
        rows.opt_text(o.route.as_deref());
        rows.opt_uuid(o.route_id);
        rows.opt_text(o.route_code.as_deref());
        rows.opt_text(o.route_description.as_deref());
        rows.opt_text(o.direction.as_deref());
        rows.bool(o.balance_affected.unwrap_or(true));
        rows.jsonb(json(o.snapshot.as_ref()).unwrap_or("{}"));
        rows.time(o.created_at);
        rows.time(o.updated_at.unwrap_or(now));
        rows.opt_time(o.deleted_at);
    }
    rows.finish()
}

/// Copies the rows of `merged` on `conn` (inside a database transaction); the caller treats a
/// `unique_violation` as "write it with the upsert instead".
pub async fn copy(
    conn: &mut PgConnection,
    merged: &Merged<'_>,
    deadline: &Deadline,
) -> Result<u64, WriteError> {
    let now = Utc::now();
    let mut copied = 0;
    for (statement, rows) in [
        (COPY_TRANSACTIONS, transaction_rows(merged, now)),
        (COPY_OPERATIONS, operation_rows(&merged.operations, now)),
    ] {
        if rows.len() <= 21 {
            continue; // a header and a trailer: no row
        }
        let mut copy = deadline.call("COPY", conn.copy_in_raw(statement)).await?;
        if let Err(error) = deadline.call("COPY", copy.send(rows)).await {
            let _ = copy.abort("send failed").await;
            return Err(error);
        }
        copied += deadline.call("COPY", copy.finish()).await?;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::numeric;

    /// (digit count, weight, sign, scale, digits)
    fn parts(text: &str) -> (i16, i16, u16, i16, Vec<i16>) {
        let mut b = Vec::new();
        numeric(text, &mut b);
        let n = |i: usize| i16::from_be_bytes([b[i], b[i + 1]]);
        let count = n(0);
        let digits = (0..count as usize).map(|i| n(8 + 2 * i)).collect();
        (count, n(2), u16::from_be_bytes([b[4], b[5]]), n(6), digits)
    }

    #[test]
    fn decimals_in_base_10000() {
        assert_eq!(parts("1234.56"), (2, 0, 0, 2, vec![1234, 5600]));
        assert_eq!(parts("-5000.5"), (2, 0, 0x4000, 1, vec![5000, 5000]));
        assert_eq!(parts("0.0015"), (1, -1, 0, 4, vec![15]));
        assert_eq!(parts("0.00000001"), (1, -2, 0, 8, vec![1]));
        assert_eq!(parts("100000000"), (1, 2, 0, 0, vec![1]));
        assert_eq!(parts("12345"), (2, 1, 0, 0, vec![1, 2345]));
        assert_eq!(parts("0"), (0, 0, 0, 0, vec![]));
        assert_eq!(
            parts("123456789012345708.123456789"),
            (
                8,
                4,
                0,
                9,
                vec![12, 3456, 7890, 1234, 5708, 1234, 5678, 9000]
            )
        );
    }
}
