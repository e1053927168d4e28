//! What a bulk's messages ask of the tables, before any row is sent.
//!
//! Messages are merged by transaction id, so that each id is sent once (an upsert may not
//! touch one row twice in a statement), and so that the result does not depend on the order in
//! which parallel channels delivered them:
//! - the same transaction again (a redelivery, a repeated transition, a stale PENDING) adds
//!   nothing;
//! - a PENDING transaction and its commit or cancel become one row with the final status, the
//!   PENDING message's content (its input, `body`) and the operations of both;
//! - a message that reuses the id with other content (or a contradicting final status) is
//!   deferred, with its operations, to a pass of its own after this one: there the stored row
//!   decides which of the two is the conflicting one.
//!
//! Operations are then taken from every merged message and de-duplicated by their own id.

use std::collections::{HashMap, HashSet, hash_map::Entry};

use uuid::Uuid;

use crate::message::{Operation, Transaction};

/// One transaction row to send.
#[derive(Debug)]
pub struct Row<'a> {
    /// Content of the row: the PENDING message when there is one, else the first.
    pub content: &'a Transaction,
    /// Where status, status description and `updated_at` come from: the latest valid state.
    pub state: &'a Transaction,
    /// Messages this row stands for (conflicting ones excluded).
    pub messages: u64,
    /// A PENDING transaction and its final status were both in this bulk.
    pub transition: bool,
}

/// A bulk, merged.
#[derive(Debug, Default)]
pub struct Merged<'a> {
    pub rows: Vec<Row<'a>>,
    pub operations: Vec<&'a Operation>,
    /// Messages (transactions) and operations merged here, whatever becomes of them.
    pub attempted_transactions: u64,
    pub attempted_operations: u64,
    /// Messages that contradict another message of the bulk with the same id: for the next
    /// pass.
    pub deferred: Vec<&'a Transaction>,
}

impl<'a> Merged<'a> {
    pub fn new(messages: &[&'a Transaction]) -> Self {
        let mut merged = Merged::default();
        let mut index: HashMap<Uuid, usize> = HashMap::with_capacity(messages.len());
        let mut kept: Vec<&'a Transaction> = Vec::with_capacity(messages.len());
        for &message in messages {
            match index.entry(message.id) {
                Entry::Vacant(slot) => {
                    slot.insert(merged.rows.len());
                    merged.rows.push(Row {
                        content: message,
                        state: message,
                        messages: 1,
                        transition: false,
                    });
                    kept.push(message);
                }
                Entry::Occupied(slot) => {
                    let row = &mut merged.rows[*slot.get()];
                    if row.absorb(message) {
                        kept.push(message);
                    } else {
                        merged.deferred.push(message);
                    }
                }
            }
        }
        merged.attempted_transactions = kept.len() as u64;
        merged.attempted_operations = kept.iter().map(|t| t.operations.len() as u64).sum();
        let mut seen = HashSet::with_capacity(merged.attempted_operations as usize);
        merged.operations = kept
            .iter()
            .flat_map(|t| &t.operations)
            .filter(|op| seen.insert(op.id))
            .collect();
        merged.rows.sort_unstable_by_key(|row| row.content.id);
        merged.operations.sort_unstable_by_key(|op| op.id);
        merged
    }

    /// Rows ordered so that a parent always comes before its children (needed when a bulk is
    /// split into several statements), ids ascending within each generation.
    pub fn order_parents_first(&mut self) {
        let ids: Vec<Uuid> = self.rows.iter().map(|r| r.content.id).collect();
        let parents: Vec<Option<Uuid>> = self
            .rows
            .iter()
            .map(|r| r.content.parent_transaction_id)
            .collect();
        let depths = generations(&ids, &parents);
        let mut keyed: Vec<(usize, Row<'a>)> = depths
            .into_iter()
            .zip(std::mem::take(&mut self.rows))
            .collect();
        keyed.sort_by_key(|(depth, row)| (*depth, row.content.id));
        self.rows = keyed.into_iter().map(|(_, row)| row).collect();
    }

    /// Whether any row's parent is in this bulk.
    pub fn has_parents_inside(&self) -> bool {
        let ids: HashSet<Uuid> = self.rows.iter().map(|r| r.content.id).collect();
        self.rows.iter().any(|r| {
            r.content
                .parent_transaction_id
                .is_some_and(|p| ids.contains(&p))
        })
    }
}

/// For each item (an id and its parent), how many of its ancestors are among `ids`: 0 when its
/// parent, if any, is elsewhere. Writing in ascending order writes parents before children.
pub fn generations(ids: &[Uuid], parents: &[Option<Uuid>]) -> Vec<usize> {
    let position: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    (0..ids.len())
        .map(|mut i| {
            let mut depth = 0;
            // Bounded by the number of items, so that a cycle cannot loop forever.
            while let Some(parent) = parents[i]
                && let Some(&p) = position.get(&parent)
                && depth < ids.len()
            {
                depth += 1;
                i = p;
            }
            depth
        })
        .collect()
}

impl<'a> Row<'a> {
    /// Takes a later message with the same id into this row; false when it conflicts.
    ///
    /// Channels deliver in parallel, so a commit may arrive before its PENDING message in the
    /// same bulk: the pair merges the same way in either order (the PENDING message's content,
    /// which carries the input, with the final status).
    fn absorb(&mut self, message: &'a Transaction) -> bool {
        if !self.content.same_content(message) {
            return false;
        }
        let same_status = self.state.status.code == message.status.code;
        if message.is_pending() {
            if !self.content.is_pending() {
                self.content = message;
            }
            self.transition |= self.state.is_final();
        } else if message.is_final() && self.state.is_pending() {
            self.state = message;
            self.transition = true;
        } else if !same_status {
            // A final status never becomes another one.
            return false;
        }
        self.messages += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Decimal;

    /// An APPROVED transaction with `operations` legs, fresh ids.
    fn sample_transaction(operations: usize) -> Transaction {
        let id = Uuid::now_v7();
        let legs: Vec<_> = (0..operations)
            .map(|_| {
                serde_json::json!({
                    "id": Uuid::now_v7(), "transactionId": id, "type": "DEBIT",
                    "assetCode": "BRL", "accountId": Uuid::from_u128(1), "accountAlias": "@a",
                    "balanceId": Uuid::from_u128(2), "organizationId": Uuid::from_u128(3),
                    "ledgerId": Uuid::from_u128(4), "createdAt": "2026-11-24T10:00:00Z",
                    "amount": {"value": "10"}
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "id": id, "status": {"code": "APPROVED"}, "amount": "10", "assetCode": "BRL",
            "organizationId": Uuid::from_u128(3), "ledgerId": Uuid::from_u128(4),
            "createdAt": "2026-11-24T10:00:00Z", "operations": legs
        }))
        .expect("a valid transaction")
    }

    fn with_status(t: &Transaction, code: &str) -> Transaction {
        let mut t = t.clone();
        t.status.code = code.into();
        t.operations = vec![sample_transaction(1).operations[0].clone()];
        t.operations[0].transaction_id = t.id;
        t
    }

    #[test]
    fn a_pending_and_its_commit_become_one_row_with_the_operations_of_both() {
        let pending = with_status(&sample_transaction(0), "PENDING");
        let commit = with_status(&pending, "APPROVED");
        let merged = Merged::new(&[&pending, &commit]);
        assert_eq!(merged.rows.len(), 1);
        let row = &merged.rows[0];
        assert!(std::ptr::eq(row.content, &pending) && std::ptr::eq(row.state, &commit));
        assert!(row.transition);
        assert_eq!(row.messages, 2);
        assert_eq!(merged.operations.len(), 2);
        assert!(merged.deferred.is_empty());
    }

    #[test]
    fn a_commit_that_overtakes_its_pending_merges_the_same_way() {
        let pending = with_status(&sample_transaction(0), "PENDING");
        let commit = with_status(&pending, "APPROVED");
        let merged = Merged::new(&[&commit, &pending]);
        let row = &merged.rows[0];
        assert!(std::ptr::eq(row.content, &pending) && std::ptr::eq(row.state, &commit));
        assert!(row.transition);
        assert_eq!(merged.operations.len(), 2);
    }

    #[test]
    fn other_content_or_a_contradicting_final_status_is_deferred_to_a_later_pass() {
        let first = sample_transaction(2);
        let mut other_amount = first.clone();
        other_amount.amount = Some(Decimal::from_i64(1));
        let canceled = with_status(&first, "CANCELED");
        let merged = Merged::new(&[&first, &other_amount, &canceled]);
        assert_eq!(merged.rows.len(), 1);
        assert_eq!(merged.rows[0].messages, 1);
        assert_eq!(merged.attempted_transactions, 1);
        assert_eq!(merged.operations.len(), 2, "only the first message's");
        assert_eq!(merged.deferred.len(), 2);
        // The next pass keeps one of them, and defers the other again.
        let next = Merged::new(&merged.deferred);
        assert_eq!((next.rows.len(), next.deferred.len()), (1, 1));
    }

    #[test]
    fn redeliveries_are_one_row_and_operations_are_deduplicated() {
        let t = sample_transaction(3);
        let merged = Merged::new(&[&t, &t, &t]);
        assert_eq!(merged.rows.len(), 1);
        assert_eq!(merged.rows[0].messages, 3);
        assert_eq!(merged.operations.len(), 3);
        assert_eq!(merged.attempted_operations, 9);
    }

    #[test]
    fn parents_come_before_children_whatever_their_ids() {
        let mut grandchild = sample_transaction(0);
        let mut child = sample_transaction(0);
        let parent = sample_transaction(0);
        // Ids so that sorting by id alone would put the grandchild first.
        grandchild.id = Uuid::from_u128(1);
        child.id = Uuid::from_u128(2);
        child.parent_transaction_id = Some(parent.id);
        grandchild.parent_transaction_id = Some(child.id);
        let mut merged = Merged::new(&[&grandchild, &child, &parent]);
        assert!(merged.has_parents_inside());
        merged.order_parents_first();
        let ids: Vec<Uuid> = merged.rows.iter().map(|r| r.content.id).collect();
        assert_eq!(ids, vec![parent.id, child.id, grandchild.id]);
    }
}
