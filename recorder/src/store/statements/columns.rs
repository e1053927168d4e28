//! The columns the recorder writes, stated once: name, type, where a message's value comes
//! from, and what the column gets when a message leaves the value out (the table's default: an
//! explicit NULL would bypass it and sink the bulk on a NOT NULL column).
//!
//! The bulk and one-by-one statements ([`super::sql`]), their parameters ([`Array`]) and the
//! binary `COPY` rows ([`super::copy`]) are all derived from [`TRANSACTION`] and [`OPERATION`]
//! (the ledger's v4.0.0-beta.11 columns, which every statement writes) and, where the tables
//! have them, [`TRANSACTION_LATER`] and [`OPERATION_LATER`] (the nullable columns of its later
//! migrations; see [`crate::store::layout`]), so the paths cannot write a column differently.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::message::{Decimal, Operation, Transaction};

/// How a value travels to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Uuid,
    Text,
    /// Sent as text and cast by PostgreSQL, so that no precision is lost on the way.
    Numeric,
    Int8,
    Bool,
    /// Sent as text and cast to `jsonb`.
    Jsonb,
    Time,
}

impl Kind {
    /// The parameter type a value travels as.
    pub fn parameter_type(self) -> &'static str {
        match self {
            Kind::Uuid => "uuid",
            Kind::Text | Kind::Numeric | Kind::Jsonb => "text",
            Kind::Int8 => "int8",
            Kind::Bool => "bool",
            Kind::Time => "timestamptz",
        }
    }

    /// The cast from the parameter type to the column's, when they differ.
    pub fn cast(self) -> Option<&'static str> {
        match self {
            Kind::Numeric => Some("numeric"),
            Kind::Jsonb => Some("jsonb"),
            _ => None,
        }
    }
}

/// What a column gets when the message has no value for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// NULL (the column is nullable).
    Null,
    Zero,
    Text(&'static str),
    True,
    EmptyObject,
    /// The time of the write.
    Now,
}

impl Absent {
    /// The SQL the column gets, when not NULL.
    pub fn sql(self) -> Option<String> {
        match self {
            Absent::Null => None,
            Absent::Zero => Some("0".into()),
            Absent::Text(text) => Some(format!("'{text}'")),
            Absent::True => Some("true".into()),
            Absent::EmptyObject => Some("'{}'::jsonb".into()),
            Absent::Now => Some("now()".into()),
        }
    }
}

/// One value of a row, borrowed from the decoded message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Null,
    Uuid(Uuid),
    Text(&'a str),
    Numeric(&'a Decimal),
    Int8(i64),
    Bool(bool),
    Jsonb(&'a str),
    Time(DateTime<Utc>),
}

/// A column whose value is read from `R` by `value`.
pub struct Column<F> {
    pub name: &'static str,
    pub kind: Kind,
    pub absent: Absent,
    /// An empty text counts as absent (the ledger sends `""` for "no balance key").
    pub blank_is_absent: bool,
    pub value: F,
}

/// Reads a transaction column from (the row's content, its latest valid state): content from
/// the row's message, status and `updated_at` from the latest state of that transaction in the
/// bulk.
pub type TransactionValue = for<'a> fn(&'a Transaction, &'a Transaction) -> Cell<'a>;
pub type OperationValue = for<'a> fn(&'a Operation) -> Cell<'a>;
pub type TransactionColumn = Column<TransactionValue>;
pub type OperationColumn = Column<OperationValue>;

const fn column<F: Copy>(name: &'static str, kind: Kind, absent: Absent, value: F) -> Column<F> {
    Column {
        name,
        kind,
        absent,
        blank_is_absent: false,
        value,
    }
}

/// A nullable transaction column.
const fn t(name: &'static str, kind: Kind, value: TransactionValue) -> TransactionColumn {
    column(name, kind, Absent::Null, value)
}

/// A transaction column with a default.
const fn t_or(
    name: &'static str,
    kind: Kind,
    absent: Absent,
    value: TransactionValue,
) -> TransactionColumn {
    column(name, kind, absent, value)
}

/// A nullable operation column.
const fn o(name: &'static str, kind: Kind, value: OperationValue) -> OperationColumn {
    column(name, kind, Absent::Null, value)
}

/// An operation column with a default.
const fn o_or(
    name: &'static str,
    kind: Kind,
    absent: Absent,
    value: OperationValue,
) -> OperationColumn {
    column(name, kind, absent, value)
}

fn text(value: &str) -> Cell<'_> {
    Cell::Text(value)
}

fn opt_text(value: Option<&str>) -> Cell<'_> {
    value.map_or(Cell::Null, Cell::Text)
}

fn opt_uuid(value: Option<Uuid>) -> Cell<'static> {
    value.map_or(Cell::Null, Cell::Uuid)
}

fn opt_numeric(value: Option<&Decimal>) -> Cell<'_> {
    value.map_or(Cell::Null, Cell::Numeric)
}

/// PostgreSQL keeps microseconds: truncated (never rounded), as the ledger's driver does.
fn time(value: DateTime<Utc>) -> Cell<'static> {
    Cell::Time(crate::message::timestamp::truncate_to_micros(value))
}

fn opt_time(value: Option<DateTime<Utc>>) -> Cell<'static> {
    value.map_or(Cell::Null, time)
}

/// The ledger stores a route that is blank, `"null"` or `"nil"` as NULL, any other untrimmed.
fn route(value: Option<&str>) -> Cell<'_> {
    match value {
        None | Some("null" | "nil") => Cell::Null,
        Some(r) if r.trim().is_empty() => Cell::Null,
        Some(r) => Cell::Text(r),
    }
}

fn opt_int(value: Option<i64>) -> Cell<'static> {
    value.map_or(Cell::Null, Cell::Int8)
}

fn opt_json(value: Option<&crate::message::JsonText>) -> Cell<'_> {
    value.map_or(Cell::Null, |j| Cell::Jsonb(&j.0))
}

/// The `transaction` table, in the order every statement lists it.
pub static TRANSACTION: [TransactionColumn; 18] = [
    t("id", Kind::Uuid, |t, _| Cell::Uuid(t.id)),
    t("parent_transaction_id", Kind::Uuid, |t, _| {
        opt_uuid(t.parent_transaction_id)
    }),
    t("description", Kind::Text, |t, _| text(&t.description)),
    t("status", Kind::Text, |_, s| text(&s.status.code)),
    t("status_description", Kind::Text, |_, s| {
        opt_text(s.status.description.as_deref())
    }),
    t("amount", Kind::Numeric, |t, _| {
        opt_numeric(t.amount.as_ref())
    }),
    t("asset_code", Kind::Text, |t, _| text(&t.asset_code)),
    t("chart_of_accounts_group_name", Kind::Text, |t, _| {
        text(&t.chart_of_accounts_group_name)
    }),
    t("ledger_id", Kind::Uuid, |t, _| Cell::Uuid(t.ledger_id)),
    t("organization_id", Kind::Uuid, |t, _| {
        Cell::Uuid(t.organization_id)
    }),
    t("body", Kind::Jsonb, |t, _| opt_json(t.body.as_ref())),
    t("route", Kind::Text, |t, _| route(t.route.as_deref())),
    t("route_id", Kind::Uuid, |t, _| opt_uuid(t.route_id)),
    t("fees_skipped", Kind::Bool, |t, _| {
        Cell::Bool(t.fees_skipped)
    }),
    t("tracer_skipped", Kind::Bool, |t, _| {
        Cell::Bool(t.tracer_skipped)
    }),
    t("created_at", Kind::Time, |t, _| time(t.created_at)),
    t_or("updated_at", Kind::Time, Absent::Now, |_, s| {
        opt_time(s.updated_at)
    }),
    t("deleted_at", Kind::Time, |t, _| opt_time(t.deleted_at)),
];

/// The `operation` table, in the order every statement lists it.
pub static OPERATION: [OperationColumn; 31] = [
    o("id", Kind::Uuid, |o| Cell::Uuid(o.id)),
    o("transaction_id", Kind::Uuid, |o| {
        Cell::Uuid(o.transaction_id)
    }),
    o("description", Kind::Text, |o| text(&o.description)),
    o("type", Kind::Text, |o| text(&o.kind)),
    o("asset_code", Kind::Text, |o| text(&o.asset_code)),
    o("amount", Kind::Numeric, |o| {
        opt_numeric(o.amount.as_ref().and_then(|a| a.value.as_ref()))
    }),
    o("available_balance", Kind::Numeric, |o| {
        opt_numeric(o.balance.as_ref().and_then(|b| b.available.as_ref()))
    }),
    o("on_hold_balance", Kind::Numeric, |o| {
        opt_numeric(o.balance.as_ref().and_then(|b| b.on_hold.as_ref()))
    }),
    o("available_balance_after", Kind::Numeric, |o| {
        opt_numeric(o.balance_after.as_ref().and_then(|b| b.available.as_ref()))
    }),
    o("on_hold_balance_after", Kind::Numeric, |o| {
        opt_numeric(o.balance_after.as_ref().and_then(|b| b.on_hold.as_ref()))
    }),
    o_or("balance_version_before", Kind::Int8, Absent::Zero, |o| {
        opt_int(o.balance.as_ref().and_then(|b| b.version))
    }),
    o_or("balance_version_after", Kind::Int8, Absent::Zero, |o| {
        opt_int(o.balance_after.as_ref().and_then(|b| b.version))
    }),
    o("status", Kind::Text, |o| text(&o.status.code)),
    o("status_description", Kind::Text, |o| {
        opt_text(o.status.description.as_deref())
    }),
    o("account_id", Kind::Uuid, |o| Cell::Uuid(o.account_id)),
    o("account_alias", Kind::Text, |o| text(&o.account_alias)),
    o("balance_id", Kind::Uuid, |o| Cell::Uuid(o.balance_id)),
    Column {
        blank_is_absent: true,
        ..o_or("balance_key", Kind::Text, Absent::Text("default"), |o| {
            opt_text(o.balance_key.as_deref())
        })
    },
    o("chart_of_accounts", Kind::Text, |o| {
        text(&o.chart_of_accounts)
    }),
    o("organization_id", Kind::Uuid, |o| {
        Cell::Uuid(o.organization_id)
    }),
    o("ledger_id", Kind::Uuid, |o| Cell::Uuid(o.ledger_id)),
    o("route", Kind::Text, |o| route(o.route.as_deref())),
    o("route_id", Kind::Uuid, |o| opt_uuid(o.route_id)),
    o("route_code", Kind::Text, |o| {
        opt_text(o.route_code.as_deref())
    }),
    o("route_description", Kind::Text, |o| {
        opt_text(o.route_description.as_deref())
    }),
    o("direction", Kind::Text, |o| {
        opt_text(o.direction.as_deref())
    }),
    o_or("balance_affected", Kind::Bool, Absent::True, |o| {
        o.balance_affected.map_or(Cell::Null, Cell::Bool)
    }),
    o_or("snapshot", Kind::Jsonb, Absent::EmptyObject, |o| {
        opt_json(o.snapshot.as_ref())
    }),
    o("created_at", Kind::Time, |o| time(o.created_at)),
    o_or("updated_at", Kind::Time, Absent::Now, |o| {
        opt_time(o.updated_at)
    }),
    o("deleted_at", Kind::Time, |o| opt_time(o.deleted_at)),
];

/// The nullable `transaction` columns of the ledger's later migrations: written where the table
/// has them, from the message (NULL when it does not carry them).
pub static TRANSACTION_LATER: [TransactionColumn; 4] = [
    t("group_id", Kind::Uuid, |t, _| opt_uuid(t.group_id)),
    t("scheme", Kind::Text, |t, _| opt_text(t.scheme.as_deref())),
    t("operational_type_code", Kind::Text, |t, _| {
        opt_text(t.operational_type_code.as_deref())
    }),
    t("applied_exception_id", Kind::Uuid, |t, _| {
        opt_uuid(t.applied_exception_id)
    }),
];

/// The nullable `operation` columns of the ledger's later migrations: `recorded_at` (migration
/// `000036`) is the server's clock at the insert, one value for the whole bulk (the database
/// transaction's time), as the ledger's repository sets it; its point-in-time balance reads use
/// `COALESCE(recorded_at, created_at)`.
pub static OPERATION_LATER: [OperationColumn; 1] =
    [o_or("recorded_at", Kind::Time, Absent::Now, |_| Cell::Null)];

/// The columns of one table that a statement writes, in the order it lists them.
pub type Columns<C> = Vec<&'static C>;

/// One parameter array per column: what `unnest` expands into rows.
pub enum Array<'a> {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<&'a str>>),
    Int8(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<DateTime<Utc>>>),
}

impl<'a> Array<'a> {
    pub fn with_capacity(kind: Kind, n: usize) -> Self {
        match kind {
            Kind::Uuid => Array::Uuid(Vec::with_capacity(n)),
            Kind::Text | Kind::Numeric | Kind::Jsonb => Array::Text(Vec::with_capacity(n)),
            Kind::Int8 => Array::Int8(Vec::with_capacity(n)),
            Kind::Bool => Array::Bool(Vec::with_capacity(n)),
            Kind::Time => Array::Time(Vec::with_capacity(n)),
        }
    }

    pub fn push(&mut self, cell: Cell<'a>) {
        match (self, cell) {
            (Array::Uuid(v), Cell::Uuid(id)) => v.push(Some(id)),
            (Array::Text(v), Cell::Text(t) | Cell::Jsonb(t)) => v.push(Some(t)),
            (Array::Text(v), Cell::Numeric(d)) => v.push(Some(d.as_str())),
            (Array::Int8(v), Cell::Int8(n)) => v.push(Some(n)),
            (Array::Bool(v), Cell::Bool(b)) => v.push(Some(b)),
            (Array::Time(v), Cell::Time(t)) => v.push(Some(t)),
            (array, Cell::Null) => array.push_null(),
            (_, cell) => unreachable!("a column's value has the column's kind: {cell:?}"),
        }
    }

    fn push_null(&mut self) {
        match self {
            Array::Uuid(v) => v.push(None),
            Array::Text(v) => v.push(None),
            Array::Int8(v) => v.push(None),
            Array::Bool(v) => v.push(None),
            Array::Time(v) => v.push(None),
        }
    }

    /// Binds this array as the query's next parameter.
    pub fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        match self {
            Array::Uuid(v) => query.bind(v),
            Array::Text(v) => query.bind(v),
            Array::Int8(v) => query.bind(v),
            Array::Bool(v) => query.bind(v),
            Array::Time(v) => query.bind(v),
        }
    }
}

/// The parameter arrays of `rows` of the `transaction` table, as (content, state) pairs.
pub fn transaction_arrays<'a>(
    columns: &[&TransactionColumn],
    rows: impl ExactSizeIterator<Item = (&'a Transaction, &'a Transaction)> + Clone,
) -> Vec<Array<'a>> {
    let n = rows.len();
    columns
        .iter()
        .map(|column| {
            let mut array = Array::with_capacity(column.kind, n);
            for (content, state) in rows.clone() {
                array.push((column.value)(content, state));
            }
            array
        })
        .collect()
}

/// The parameter arrays of `operations`.
pub fn operation_arrays<'a>(
    columns: &[&OperationColumn],
    operations: &[&'a Operation],
) -> Vec<Array<'a>> {
    columns
        .iter()
        .map(|column| {
            let mut array = Array::with_capacity(column.kind, operations.len());
            for o in operations {
                array.push((column.value)(o));
            }
            array
        })
        .collect()
}

/// Binds one value as the query's next parameter (the one-by-one statements).
pub fn bind_cell<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    kind: Kind,
    cell: Cell<'q>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    match (kind, cell) {
        (Kind::Uuid, Cell::Uuid(id)) => query.bind(Some(id)),
        (Kind::Uuid, _) => query.bind(None::<Uuid>),
        (_, Cell::Text(t) | Cell::Jsonb(t)) => query.bind(Some(t)),
        (_, Cell::Numeric(d)) => query.bind(Some(d.as_str())),
        (Kind::Text | Kind::Numeric | Kind::Jsonb, _) => query.bind(None::<&str>),
        (Kind::Int8, Cell::Int8(n)) => query.bind(Some(n)),
        (Kind::Int8, _) => query.bind(None::<i64>),
        (Kind::Bool, Cell::Bool(b)) => query.bind(Some(b)),
        (Kind::Bool, _) => query.bind(None::<bool>),
        (Kind::Time, Cell::Time(t)) => query.bind(Some(t)),
        (Kind::Time, _) => query.bind(None::<DateTime<Utc>>),
    }
}

#[cfg(test)]
mod route_tests {
    use super::*;

    #[test]
    fn blank_null_and_nil_routes_are_null_others_are_kept_untrimmed() {
        for blank in ["", "  ", "null", "nil"] {
            assert!(matches!(route(Some(blank)), Cell::Null), "{blank:?}");
        }
        assert!(matches!(route(Some(" refunds ")), Cell::Text(" refunds ")));
        assert!(matches!(route(Some("NULL")), Cell::Text("NULL")));
    }
}
