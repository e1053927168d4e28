//! The bulk statement on its own, against a real database: chunking, counts, defaults.

use bulk_recorder::{
    message::Transaction,
    store::db,
    store::{BulkWriter, Database, Written, statements::layout::Layout},
};
use bulk_recorder_e2e::TestDb;
use bulk_recorder_publish::sample_transaction;

async fn writer(max_rows: usize) -> (TestDb, BulkWriter) {
    let test_db = TestDb::create().await;
    let pool = test_db.pool().await;
    db::migrate(&pool).await.expect("migrations");
    let timeout = std::time::Duration::from_secs(10);
    (
        test_db,
        BulkWriter::new(
            Database::standalone(pool, timeout),
            std::sync::Arc::new(Layout::base()),
            max_rows,
        ),
    )
}

async fn write(writer: &BulkWriter, transactions: &[Transaction]) -> Written {
    let refs: Vec<&Transaction> = transactions.iter().collect();
    writer.write(&refs).await.expect("bulk written")
}

#[tokio::test]
async fn exactly_max_rows_is_one_statement_and_one_more_is_two() {
    let (db, writer) = writer(10).await;
    // 2 transactions x 5 operations: 10 operation rows, exactly the limit.
    let at_limit: Vec<_> = (0..2).map(|_| sample_transaction(5)).collect();
    let written = write(&writer, &at_limit).await;
    assert_eq!(written.statements, 1);
    assert_eq!(written.counts.operations.inserted, 10);

    // 11 operation rows: one more statement.
    let mut above: Vec<_> = vec![sample_transaction(5), sample_transaction(6)];
    let written = write(&writer, &above).await;
    assert_eq!(written.statements, 2);
    assert_eq!(
        (
            written.counts.transactions.inserted,
            written.counts.operations.inserted
        ),
        (2, 11)
    );

    // The same for transaction rows: 10 are one statement, 11 are two.
    let ten: Vec<_> = (0..10).map(|_| sample_transaction(0)).collect();
    assert_eq!(write(&writer, &ten).await.statements, 1);
    above = (0..11).map(|_| sample_transaction(0)).collect();
    let written = write(&writer, &above).await;
    assert_eq!(written.statements, 2);
    assert_eq!(written.counts.transactions.inserted, 11);
    assert_eq!(db.count("transaction").await, 25);
    assert_eq!(db.count("operation").await, 21);
}

#[tokio::test]
async fn duplicates_within_a_bulk_and_across_bulks_are_ignored_and_counted() {
    let (db, writer) = writer(1000).await;
    let (a, b, c) = (
        sample_transaction(2),
        sample_transaction(2),
        sample_transaction(2),
    );
    let written = write(&writer, &[a.clone(), b.clone(), a.clone()]).await;
    assert_eq!(
        (
            written.counts.transactions.attempted,
            written.counts.transactions.inserted,
            written.counts.transactions.ignored
        ),
        (3, 2, 1)
    );
    assert_eq!(
        (
            written.counts.operations.attempted,
            written.counts.operations.inserted
        ),
        (6, 4)
    );

    let written = write(&writer, &[c.clone(), b.clone()]).await;
    assert_eq!(
        (
            written.counts.transactions.inserted,
            written.counts.transactions.ignored
        ),
        (1, 1)
    );
    assert_eq!(
        (
            written.counts.operations.inserted,
            written.counts.operations.ignored
        ),
        (2, 2)
    );

    // A redelivered bulk of nothing new changes nothing.
    let written = write(&writer, &[a, b, c]).await;
    assert_eq!(written.counts.transactions.inserted, 0);
    assert_eq!(written.counts.transactions.ignored, 3);
    assert_eq!(db.count("transaction").await, 3);
}

#[tokio::test]
async fn absent_values_take_the_column_defaults_and_text_is_stored_verbatim() {
    let (db, writer) = writer(1000).await;
    let mut t = sample_transaction(1);
    t.updated_at = None;
    t.description = "'); DROP TABLE operation; --".into();
    let op = &mut t.operations[0];
    op.balance_key = None;
    op.balance_affected = None;
    op.balance = None;
    op.updated_at = None;
    write(&writer, std::slice::from_ref(&t)).await;

    let pool = db.pool().await;
    let (description, updated): (String, bool) =
        sqlx::query_as("SELECT description, updated_at IS NOT NULL FROM transaction WHERE id = $1")
            .bind(t.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(description, "'); DROP TABLE operation; --");
    assert!(updated);
    let (key, affected, version): (String, bool, i64) = sqlx::query_as(
        "SELECT balance_key, balance_affected, balance_version_before FROM operation WHERE transaction_id = $1",
    )
    .bind(t.id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((key.as_str(), affected, version), ("default", true, 0));
}

#[tokio::test]
async fn a_child_and_its_parent_in_one_bulk_are_both_stored() {
    let (db, writer) = writer(1000).await;
    let parent = sample_transaction(1);
    let mut child = sample_transaction(1);
    child.parent_transaction_id = Some(parent.id);
    let written = write(&writer, &[child, parent]).await;
    assert_eq!(written.counts.transactions.inserted, 2);
    assert_eq!(db.count("transaction").await, 2);
}

#[tokio::test]
async fn a_bulk_refused_on_data_commits_nothing() {
    let (db, writer) = writer(2).await;
    let mut orphan = sample_transaction(1);
    orphan.parent_transaction_id = Some(uuid::Uuid::now_v7());
    // Several statements in one database transaction: the refused last one undoes the first.
    let bulk = [sample_transaction(1), sample_transaction(1), orphan];
    let refs: Vec<&Transaction> = bulk.iter().collect();
    let error = writer.write(&refs).await.unwrap_err();
    assert!(error.is_data(), "{error}");
    assert_eq!(db.count("transaction").await, 0);
}

/// The reference ledger's fixtures (those that insert), decoded, with their expected rows.
fn ledger_fixtures() -> Vec<(Transaction, bulk_recorder_e2e::ledger::Fixture)> {
    [
        "approved",
        "route",
        "pending",
        "noted",
        "big-decimals",
        "metadata",
    ]
    .into_iter()
    .map(|name| {
        let fixture = bulk_recorder_e2e::ledger::fixture(name);
        let decoded = bulk_recorder::message::decode(&fixture.body, None, 1 << 20)
            .expect("decodes")
            .into_transaction()
            .expect("a transaction");
        (decoded, fixture)
    })
    .collect()
}

/// A bulk of new transactions goes in by COPY, a small one by the upsert statement: both
/// write every column as the ledger's own consumer does.
#[tokio::test]
async fn copy_and_upsert_write_the_same_columns_as_the_ledger() {
    for padding in [
        0,
        bulk_recorder::store::statements::bulk::COPY_MIN_TRANSACTIONS,
    ] {
        let (db, writer) = writer(1000).await;
        let fixtures = ledger_fixtures();
        let mut bulk: Vec<Transaction> = fixtures.iter().map(|(t, _)| t.clone()).collect();
        bulk.extend((0..padding).map(|_| sample_transaction(2)));
        let written = write(&writer, &bulk).await;
        let by_copy = padding > 0;
        assert_eq!(
            written.statements,
            if by_copy { 2 } else { 1 },
            "COPY: {by_copy}"
        );
        assert_eq!(written.counts.transactions.inserted, bulk.len() as u64);
        for (_, fixture) in &fixtures {
            for row in fixture.transactions() {
                bulk_recorder_e2e::ledger::assert_row(&db, "transaction", row).await;
            }
            for row in fixture.operations() {
                bulk_recorder_e2e::ledger::assert_row(&db, "operation", row).await;
            }
        }
    }
}

#[tokio::test]
async fn a_copy_that_meets_a_stored_row_is_written_again_by_the_upsert() {
    let (db, writer) = writer(1000).await;
    let first: Vec<_> = (0..40).map(|_| sample_transaction(2)).collect();
    let written = write(&writer, &first).await;
    assert_eq!(written.statements, 2, "new rows: COPY");
    // Half of them again (a redelivery) with 20 new ones: COPY fails on the first stored id,
    // the same bulk goes in by the upsert, and the counts are those of the upsert.
    let mut second: Vec<_> = first[..20].to_vec();
    second.extend((0..20).map(|_| sample_transaction(2)));
    let written = write(&writer, &second).await;
    assert_eq!(
        written.statements, 1,
        "the upsert statement, which tells the stored rows it met apart"
    );
    let t = written.counts.transactions;
    assert_eq!((t.attempted, t.inserted, t.ignored), (40, 20, 20));
    assert_eq!(written.counts.operations.inserted, 40);
    assert_eq!(db.count("transaction").await, 60);
    assert_eq!(db.count("operation").await, 120);
}
