//! The statements, generated once (at start-up, for the columns the tables have: see
//! [`crate::store::layout`]) from the column tables ([`super::columns`]), so that the bulk,
//! one-by-one and `COPY` paths name, cast and default every column alike.
//!
//! A bulk is written by [`Statements::bulk_upsert`], which also tells the stored rows it meets
//! apart (duplicates, conflicts) with its snapshot. When another writer changed one of them after
//! that snapshot (detectable: see [`Statements::bulk_upsert`]), [`Statements::classify`] decides
//! for those rows in the next statement: the upsert locks every stored row it meets (`ON CONFLICT DO UPDATE` locks even
//! when its `WHERE` is false), and the next statement of the same database transaction reads
//! them with a new snapshot. So whether a stored row is the same transaction or another one is
//! decided on its latest committed version, the one `ON CONFLICT` saw.

use super::columns::{Column, OperationColumn, TransactionColumn};

/// `id, parent_transaction_id, ...`
fn names<F>(columns: &[&Column<F>]) -> String {
    columns
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first::uuid[], $first+1::text[], ...` (or scalars when `array` is false).
fn parameters<F>(columns: &[&Column<F>], first: usize, array: bool) -> String {
    let suffix = if array { "[]" } else { "" };
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| format!("${}::{}{suffix}", first + i, c.kind.parameter_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value written for each column, from a row source whose columns are named like the table:
/// cast where the parameter travels as text, the column's default where the message left the
/// value out.
fn values<F>(columns: &[&Column<F>]) -> String {
    columns
        .iter()
        .map(|c| {
            let mut value = match c.kind.cast() {
                Some(cast) => format!("{}::{cast}", c.name),
                None => c.name.to_string(),
            };
            if c.blank_is_absent {
                value = format!("NULLIF({value}, '')");
            }
            match c.absent.sql() {
                Some(default) => format!("COALESCE({value}, {default})"),
                None => value,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A stored PENDING transaction with the same content moves to the proposed final status;
/// anything else stored stays as it is (but is locked, for [`Statements::classify`]). Returns each row
/// written and whether it was inserted (`xmax = 0`) rather than updated.
const UPSERT_TRANSACTION: &str = "ON CONFLICT (id) DO UPDATE
    SET status = EXCLUDED.status, status_description = EXCLUDED.status_description,
        updated_at = EXCLUDED.updated_at
    WHERE s.status = 'PENDING' AND EXCLUDED.status IN ('APPROVED', 'CANCELED')
      AND (s.amount, s.asset_code, s.ledger_id, s.organization_id, s.parent_transaction_id)
          IS NOT DISTINCT FROM (EXCLUDED.amount, EXCLUDED.asset_code, EXCLUDED.ledger_id,
          EXCLUDED.organization_id, EXCLUDED.parent_transaction_id)
    RETURNING s.id, s.xmax = 0 AS inserted";

/// True when the stored transaction `s` and the proposed one `i` are not the same transaction:
/// other content, or a final status that is neither the stored one nor a stale PENDING.
const TRANSACTION_CONFLICTS: &str = "((s.amount, s.asset_code, s.ledger_id, s.organization_id,
        s.parent_transaction_id) IS DISTINCT FROM (i.amount::numeric, i.asset_code, i.ledger_id,
        i.organization_id, i.parent_transaction_id)
    OR (i.status <> s.status AND i.status <> 'PENDING'))";

/// What [`Statements::classify`] compares of a transaction, as parameters `$1..$7`.
pub const COMPARED_TRANSACTION: &str = "$1::uuid[], $2::text[], $3::text[], $4::uuid[], \
    $5::uuid[], $6::uuid[], $7::text[]) AS i(id, amount, asset_code, ledger_id, \
    organization_id, parent_transaction_id, status";

/// True when the stored operation `s` and the proposed one `i` are not the same leg.
const OPERATION_CONFLICTS: &str = "((s.transaction_id, s.type, s.asset_code, s.amount,
        s.account_id, s.balance_id, s.organization_id, s.ledger_id) IS DISTINCT FROM
    (i.transaction_id, i.type, i.asset_code, i.amount::numeric, i.account_id, i.balance_id,
        i.organization_id, i.ledger_id))";

/// True when the upsert should have moved the stored transaction `s` to the proposed final
/// status of `i`: a PENDING row with the same content.
const TRANSITION_APPLIES: &str = "(s.status = 'PENDING' AND i.status IN ('APPROVED', 'CANCELED')
    AND (s.amount, s.asset_code, s.ledger_id, s.organization_id, s.parent_transaction_id)
        IS NOT DISTINCT FROM (i.amount::numeric, i.asset_code, i.ledger_id, i.organization_id,
        i.parent_transaction_id))";

/// The bulk's statement: every transaction upserted, and every stored row it met classified
/// with this statement's snapshot, which is exact unless another writer changed the row after
/// the snapshot was taken. That shows: the row is not in the snapshot (inserted since), or the
/// snapshot's row is a PENDING one the message settles, which the upsert (reading the latest
/// version) left alone (settled since). Only those "racing" rows wait for `classify`, with a
/// new snapshot; rows and operations never change otherwise once stored.
///
/// Operations are inserted for every transaction but conflicting and racing ones. Returns:
/// inserted, inserted transitions, updated (with one id written), the racing transaction ids,
/// the conflicting ones,
/// operations inserted (with one of their ids), operations of conflicting transactions,
/// conflicting operations, and the ids of operations a concurrent writer inserted after the
/// snapshot (for `classify`).
fn bulk_upsert(tc: &[&TransactionColumn], oc: &[&OperationColumn]) -> String {
    let t = names(tc);
    let o = names(oc);
    let transition = tc.len() + 1;
    // `IN (SELECT ...)` of a CTE is a hashed semi-join.
    format!(
        "WITH t_in AS (SELECT * FROM unnest({tp}, ${transition}::bool[]) AS r({t}, transition)),
        t AS (INSERT INTO transaction AS s ({t}) SELECT {tv} FROM t_in {UPSERT_TRANSACTION}),
        met AS (SELECT i.id, s.id IS NULL AS unseen, {TRANSITION_APPLIES} AS settled_since,
                {TRANSACTION_CONFLICTS} AS conflicting
            FROM t_in i LEFT JOIN transaction s ON s.id = i.id
            WHERE i.id NOT IN (SELECT id FROM t)),
        racing AS (SELECT id FROM met WHERE unseen OR settled_since),
        conflicts AS (SELECT id FROM met WHERE NOT unseen AND NOT settled_since AND conflicting),
        o_in AS (SELECT * FROM unnest({op}) AS r({o})),
        kept AS (SELECT * FROM o_in WHERE transaction_id NOT IN (SELECT id FROM racing)
            AND transaction_id NOT IN (SELECT id FROM conflicts)),
        o AS (INSERT INTO operation ({o}) SELECT {ov} FROM kept
            ON CONFLICT (id) DO NOTHING RETURNING id),
        stored_ops AS (SELECT * FROM kept WHERE id NOT IN (SELECT id FROM o))
        SELECT (SELECT count(*) FROM t WHERE inserted),
            (SELECT count(*) FROM t JOIN t_in USING (id) WHERE t.inserted AND t_in.transition),
            (SELECT count(*) FROM t WHERE NOT inserted), (SELECT id FROM t LIMIT 1),
            (SELECT array_agg(id) FROM racing),
            (SELECT array_agg(id) FROM conflicts),
            (SELECT count(*) FROM o), (SELECT id FROM o LIMIT 1),
            (SELECT count(*) FROM o_in WHERE transaction_id IN (SELECT id FROM conflicts)),
            (SELECT count(*) FROM stored_ops i JOIN operation s ON s.id = i.id
                WHERE {OPERATION_CONFLICTS}),
            (SELECT array_agg(i.id) FROM stored_ops i
                WHERE NOT EXISTS (SELECT 1 FROM operation s WHERE s.id = i.id))",
        tp = parameters(tc, 1, true),
        tv = values(tc),
        op = parameters(oc, transition + 1, true),
        ov = values(oc),
    )
}

/// The bulk's second statement, only when the first met rows another writer changed after its
/// snapshot (locked by it since, so this new snapshot reads their latest version): which of
/// those transactions conflict, the operations of the others inserted, and which operations
/// stored already are other legs under the same id. Returns: the conflicting transaction ids,
/// the ids of operations inserted, the operations of conflicting transactions (left out), the
/// conflicting operations, and the ids of operations a concurrent writer inserted after this
/// statement's snapshot (for `classify_operations`).
fn classify(oc: &[&OperationColumn]) -> String {
    let o = names(oc);
    format!(
        "WITH t_in AS (SELECT * FROM unnest({COMPARED_TRANSACTION})),
        c AS (SELECT i.id FROM t_in i JOIN transaction s ON s.id = i.id WHERE {TRANSACTION_CONFLICTS}),
        o_in AS (SELECT * FROM unnest({op}) AS r({o})),
        o AS (INSERT INTO operation ({o}) SELECT {ov} FROM o_in
            WHERE transaction_id NOT IN (SELECT id FROM c) ON CONFLICT (id) DO NOTHING RETURNING id),
        l AS (SELECT * FROM o_in WHERE transaction_id NOT IN (SELECT id FROM c)
            AND id NOT IN (SELECT id FROM o))
        SELECT (SELECT array_agg(id) FROM c),
            (SELECT array_agg(id) FROM o),
            (SELECT count(*) FROM o_in WHERE transaction_id IN (SELECT id FROM c)),
            (SELECT count(*) FROM l i JOIN operation s ON s.id = i.id WHERE {OPERATION_CONFLICTS}),
            (SELECT array_agg(i.id) FROM l i
                WHERE NOT EXISTS (SELECT 1 FROM operation s WHERE s.id = i.id))",
        op = parameters(oc, 8, true),
        ov = values(oc),
    )
}

/// Operations that a concurrent writer inserted after `classify`'s snapshot (its insert waited
/// for them to commit): with a new snapshot, how many are other legs under the same id, and how
/// many were found.
fn classify_operations(oc: &[&OperationColumn]) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE {OPERATION_CONFLICTS}), count(*)
        FROM unnest({op}) AS i({o}) JOIN operation s ON s.id = i.id",
        op = parameters(oc, 1, true),
        o = names(oc),
    )
}

/// Asked, in the next statement, when the one-by-one insert left a stored row alone.
const ONE_TRANSACTION_CONFLICTS: &str = "SELECT {TRANSACTION_CONFLICTS} FROM transaction s, \
    (VALUES ($1::uuid, $2::text, $3::text, $4::uuid, $5::uuid, $6::uuid, $7::text)) \
    AS i(id, amount, asset_code, ledger_id, organization_id, parent_transaction_id, status) \
    WHERE s.id = i.id";

/// Every statement the recorder sends, for the columns the tables have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statements {
    /// A bulk (see [`bulk_upsert`]).
    pub bulk_upsert: String,
    /// The bulk's second statement (see [`classify`]).
    pub classify: String,
    pub classify_operations: String,
    /// One transaction row (one-by-one mode).
    pub one_transaction: String,
    pub one_transaction_conflicts: String,
    /// One operation row (one-by-one mode); returns its id when it was inserted.
    pub one_operation: String,
    /// Asked, in the next statement, when `one_operation` met a stored row.
    pub one_operation_conflicts: String,
    pub copy_transactions: String,
    pub copy_operations: String,
}

impl Statements {
    pub fn new(tc: &[&TransactionColumn], oc: &[&OperationColumn]) -> Self {
        let (t, o) = (names(tc), names(oc));
        Self {
            bulk_upsert: bulk_upsert(tc, oc),
            classify: classify(oc),
            classify_operations: classify_operations(oc),
            one_transaction: format!(
                "INSERT INTO transaction AS s ({t}) SELECT {tv} FROM (VALUES ({tp})) AS r({t})
                {UPSERT_TRANSACTION}",
                tv = values(tc),
                tp = parameters(tc, 1, false),
            ),
            one_transaction_conflicts: ONE_TRANSACTION_CONFLICTS
                .replace("{TRANSACTION_CONFLICTS}", TRANSACTION_CONFLICTS),
            one_operation: format!(
                "INSERT INTO operation ({o}) SELECT {ov} FROM (VALUES ({op})) AS r({o})
                ON CONFLICT (id) DO NOTHING RETURNING id",
                ov = values(oc),
                op = parameters(oc, 1, false),
            ),
            one_operation_conflicts: format!(
                "SELECT {OPERATION_CONFLICTS} FROM operation s, (VALUES ({op})) AS i({o})
                WHERE s.id = i.id",
                op = parameters(oc, 1, false),
            ),
            copy_transactions: format!("COPY transaction ({t}) FROM STDIN (FORMAT binary)"),
            copy_operations: format!("COPY operation ({o}) FROM STDIN (FORMAT binary)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::statements::columns::{
        OPERATION, OPERATION_LATER, TRANSACTION, TRANSACTION_LATER,
    };

    fn all<C>(columns: &'static [C]) -> Vec<&'static C> {
        columns.iter().collect()
    }

    #[test]
    fn defaults_are_written_where_a_message_leaves_a_value_out() {
        let v = values(&all(&OPERATION));
        assert!(v.contains("COALESCE(balance_version_before, 0)"), "{v}");
        assert!(
            v.contains("COALESCE(NULLIF(balance_key, ''), 'default')"),
            "{v}"
        );
        assert!(v.contains("COALESCE(snapshot::jsonb, '{}'::jsonb)"), "{v}");
        assert!(v.contains("COALESCE(balance_affected, true)"), "{v}");
        assert!(
            v.starts_with("id, transaction_id, description, type, asset_code, amount::numeric")
        );
        assert!(values(&all(&TRANSACTION)).contains("COALESCE(updated_at, now())"));
        assert_eq!(
            values(&all(&OPERATION_LATER)),
            "COALESCE(recorded_at, now())"
        );
    }

    #[test]
    fn parameters_are_numbered_past_the_transaction_columns() {
        let base = Statements::new(&all(&TRANSACTION), &all(&OPERATION));
        // The transaction columns, the transition flags, then the operation columns.
        let last = TRANSACTION.len() + 1 + OPERATION.len();
        assert!(
            base.bulk_upsert
                .contains(&format!("${last}::timestamptz[]"))
        );
        assert!(base.bulk_upsert.contains("$19::bool[]"));
        assert!(base.bulk_upsert.contains("$20::uuid[]"));
        assert!(
            base.classify.contains("$8::uuid[]") && base.classify.contains("$38::timestamptz[]")
        );
        assert!(base.one_transaction_conflicts.contains("IS DISTINCT FROM"));
    }

    #[test]
    fn the_later_columns_are_named_and_numbered_when_the_tables_have_them() {
        let t: Vec<_> = TRANSACTION.iter().chain(&TRANSACTION_LATER).collect();
        let o: Vec<_> = OPERATION.iter().chain(&OPERATION_LATER).collect();
        let later = Statements::new(&t, &o);
        assert!(
            later
                .bulk_upsert
                .contains("applied_exception_id, transition")
        );
        assert!(
            later.bulk_upsert.contains("$23::bool[]"),
            "22 columns, then the flags"
        );
        assert!(later.copy_operations.contains("deleted_at, recorded_at)"));
        assert!(later.one_operation.contains("COALESCE(recorded_at, now())"));
    }
}
