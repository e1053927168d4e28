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

use crate::telemetry::traces;

use super::{
    columns::{Absent, Cell, Column, OperationColumn, TransactionColumn},
    layout::Layout,
    merge::Merged,
};
use crate::message::{Decimal, Operation};
use crate::store::commit::{deadline::Deadline, errors::WriteError};

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

    fn uuid(&mut self, id: Uuid) {
        self.value(id.as_bytes());
    }

    fn time(&mut self, t: DateTime<Utc>) {
        self.value(&(t.timestamp_micros() - POSTGRES_EPOCH_MICROS).to_be_bytes());
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

    fn numeric(&mut self, decimal: &Decimal) {
        let length_at = self.buf.len();
        self.buf.extend_from_slice(&0i32.to_be_bytes());
        numeric(decimal.as_str(), &mut self.buf);
        let length = (self.buf.len() - length_at - 4) as i32;
        self.buf[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
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

impl Rows {
    /// One value of `column`, or the column's default when the message left it out.
    fn cell<F>(&mut self, column: &Column<F>, cell: Cell<'_>, now: DateTime<Utc>) {
        let cell = match cell {
            Cell::Text("") if column.blank_is_absent => Cell::Null,
            cell => cell,
        };
        match (cell, column.absent) {
            (Cell::Null, Absent::Null) => self.null(),
            (Cell::Null, Absent::Zero) => self.int8(0),
            (Cell::Null, Absent::Text(text)) => self.text(text),
            (Cell::Null, Absent::True) => self.bool(true),
            (Cell::Null, Absent::EmptyObject) => self.jsonb("{}"),
            (Cell::Null, Absent::Now) => self.time(now),
            (Cell::Uuid(id), _) => self.uuid(id),
            (Cell::Text(text), _) => self.text(text),
            (Cell::Numeric(decimal), _) => self.numeric(decimal),
            (Cell::Int8(n), _) => self.int8(n),
            (Cell::Bool(b), _) => self.bool(b),
            (Cell::Jsonb(json), _) => self.jsonb(json),
            (Cell::Time(t), _) => self.time(t),
        }
    }
}

/// The `transaction` rows of `merged`, in `columns`.
fn transaction_rows(
    merged: &Merged,
    columns: &[&TransactionColumn],
    now: DateTime<Utc>,
) -> Vec<u8> {
    let mut rows = Rows::with_capacity(merged.rows.len() * 300);
    for row in &merged.rows {
        rows.row(columns.len() as i16);
        for column in columns {
            rows.cell(column, (column.value)(row.content, row.state), now);
        }
    }
    rows.finish()
}

/// The `operation` rows, in `columns`.
fn operation_rows(
    operations: &[&Operation],
    columns: &[&OperationColumn],
    now: DateTime<Utc>,
) -> Vec<u8> {
    let mut rows = Rows::with_capacity(operations.len() * 500);
    for o in operations {
        rows.row(columns.len() as i16);
        for column in columns {
            rows.cell(column, (column.value)(o), now);
        }
    }
    rows.finish()
}

/// A bulk's rows in `COPY`'s binary format, encoded before anything is sent.
pub struct CopyRows {
    pub transactions: Vec<u8>,
    pub operations: Vec<u8>,
}

impl CopyRows {
    /// The rows of `merged` in the columns of `layout`; `now` (the database transaction's time)
    /// fills the timestamps a message left out, as `now()` does in the other statements.
    pub fn encode(merged: &Merged<'_>, layout: &Layout, now: DateTime<Utc>) -> Self {
        CopyRows {
            transactions: transaction_rows(merged, &layout.transaction, now),
            operations: operation_rows(&merged.operations, &layout.operation, now),
        }
    }

    /// Sends the rows on `conn` (inside a database transaction), each step within `deadline`;
    /// returns the rows copied.
    pub async fn send(
        self,
        conn: &mut PgConnection,
        layout: &Layout,
        deadline: &Deadline,
    ) -> Result<u64, WriteError> {
        let mut copied = 0;
        let statements = &layout.statements;
        for (name, statement, rows) in [
            (
                "COPY transaction",
                statements.copy_transactions.as_str(),
                self.transactions,
            ),
            (
                "COPY operation",
                statements.copy_operations.as_str(),
                self.operations,
            ),
        ] {
            if rows.len() <= 21 {
                continue; // a header and a trailer: no row
            }
            copied += traces::step(name, async {
                let mut copy = deadline.call("COPY", conn.copy_in_raw(statement)).await?;
                deadline.call("COPY", copy.send(rows)).await?;
                deadline.call("COPY", copy.finish()).await
            })
            .await?;
        }
        Ok(copied)
    }
}

/// Copies the rows of `merged` on `conn` (inside a database transaction); the caller treats a
/// `unique_violation` as "write it with the upsert instead". Every step is within `deadline`:
/// a connection that goes silent while rows are sent fails the write (the caller then
/// discards the connection: nothing is sent to abort a `COPY` on a connection that does not
/// answer). `now` is the database transaction's time.
pub async fn copy(
    conn: &mut PgConnection,
    merged: &Merged<'_>,
    layout: &Layout,
    now: DateTime<Utc>,
    deadline: &Deadline,
) -> Result<u64, WriteError> {
    CopyRows::encode(merged, layout, now)
        .send(conn, layout, deadline)
        .await
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
