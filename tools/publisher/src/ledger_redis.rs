//! What the reference ledger stores in its Redis before it publishes a transaction: its backup
//! entry in `backup_queue:{transactions}` (a JSON value with the ledger's keys; the recorder
//! reads `transaction_status`) and its write-behind key, for 24 hours. The demo writes them so
//! that the recorder's acknowledgement of the backup can be seen.

use bulk_recorder::{ledger::backup::BACKUP_HASH, message::Transaction};
use chrono::SecondsFormat;

/// One transaction's entry, under the status the ledger's entry holds when the recorder reads
/// it: `CREATED` for a new posting, `APPROVED` for a PENDING transaction whose commit rewrote
/// the entry.
pub struct Backup {
    pub organization_id: String,
    pub ledger_id: String,
    pub transaction_id: String,
    pub status: &'static str,
}

impl Backup {
    pub fn of(t: &Transaction, status: &'static str) -> Self {
        Self {
            organization_id: t.organization_id.to_string(),
            ledger_id: t.ledger_id.to_string(),
            transaction_id: t.id.to_string(),
            status,
        }
    }

    fn ids(&self) -> String {
        format!(
            "{}:{}:{}",
            self.organization_id, self.ledger_id, self.transaction_id
        )
    }

    /// The ledger's JSON, its keys in its struct's order (`mmodel.TransactionRedisQueue`).
    fn value(&self) -> String {
        let now = chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true);
        let action = if self.status == "APPROVED" {
            "commit"
        } else {
            "direct"
        };
        serde_json::json!({
            "header_id": uuid::Uuid::new_v4().to_string(),
            "transaction_id": self.transaction_id,
            "organization_id": self.organization_id,
            "ledger_id": self.ledger_id,
            "balances": null,
            "parserDSL": {"send": {"asset": "BRL"}},
            "ttl": now,
            "validate": {"Pending": self.status == "APPROVED"},
            "transaction_status": self.status,
            "action": action,
            "transaction_date": now,
        })
        .to_string()
    }
}

/// Writes the entries and write-behind keys, a thousand a round-trip.
pub async fn back_up(url: &str, backups: &[Backup]) -> redis::RedisResult<usize> {
    let mut connection = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    for chunk in backups.chunks(1000) {
        let mut pipeline = redis::pipe();
        for backup in chunk {
            let field = format!("transaction:{{transactions}}:{}", backup.ids());
            pipeline.hset(BACKUP_HASH, field, backup.value()).ignore();
            let write_behind = format!("wb_transaction:{{{}}}", backup.ids());
            pipeline
                .set_ex(write_behind, backup.transaction_id.as_bytes(), 86_400)
                .ignore();
        }
        let () = pipeline.query_async(&mut connection).await?;
    }
    Ok(backups.len())
}
