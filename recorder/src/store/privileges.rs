//! What the recorder's database role needs, checked at start-up so that a missing grant is one
//! clear line instead of a write that fails forever.
//!
//! Needed: `SELECT, INSERT, UPDATE` on `transaction` and `operation` (and `USAGE` on their
//! schema): rows are inserted (by `COPY` or `INSERT`), PENDING transactions updated, stored rows
//! read to tell duplicates from conflicts and to find a lost commit's rows. Nothing else: the
//! recorder's questions about its own sessions (`pg_stat_activity`, `pg_terminate_backend`,
//! `txid_status`) are open to every role for its own sessions. Without `BULK_RECORDER_MIGRATE`
//! no DDL right is needed.
//!
//! Optional: `pg_monitor` (or `pg_read_all_stats`), to read the synchronous standbys' positions.
//! Without it every commit that returned is trusted (see [`super::commit::durability`]); a least-
//! privilege role (CloudNativePG's `app`, say) works, and the recorder says what it gives up.

use sqlx::{PgPool, Row};

/// The privileges every write needs, per table.
const TABLE_PRIVILEGES: [&str; 3] = ["SELECT", "INSERT", "UPDATE"];
const TABLES: [&str; 2] = ["transaction", "operation"];

/// What the role may do, as read at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub role: String,
    /// Missing table privileges, as `INSERT on operation`; a missing table as `transaction`.
    pub missing: Vec<String>,
    /// Synchronous standbys are configured and this role cannot read their positions.
    pub standbys_unreadable: bool,
}

impl Grants {
    /// Reads the role's privileges on the tables and on `pg_stat_replication`.
    pub async fn read(pool: &PgPool) -> Result<Self, sqlx::Error> {
        let row = sqlx::query(
            "SELECT current_user::text, \
             current_setting('synchronous_standby_names') <> '' \
             AND NOT pg_has_role('pg_read_all_stats', 'USAGE')",
        )
        .fetch_one(pool)
        .await?;
        let mut grants = Self {
            role: row.try_get(0)?,
            missing: Vec::new(),
            standbys_unreadable: row.try_get(1)?,
        };
        for table in TABLES {
            let privileges: Option<Vec<bool>> = sqlx::query_scalar(
                "SELECT ARRAY(SELECT has_table_privilege(to_regclass($1), p) FROM unnest($2::text[]) p) \
                 WHERE to_regclass($1) IS NOT NULL",
            )
            .bind(table)
            .bind(&TABLE_PRIVILEGES[..])
            .fetch_optional(pool)
            .await?;
            match privileges {
                None => grants.missing.push(format!("{table} (no such table)")),
                Some(held) => grants.missing.extend(
                    TABLE_PRIVILEGES
                        .iter()
                        .zip(held)
                        .filter(|(_, held)| !held)
                        .map(|(privilege, _)| format!("{privilege} on {table}")),
                ),
            }
        }
        Ok(grants)
    }

    /// What is wrong and the statement that fixes it; `None` when the recorder can write.
    pub fn problem(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        Some(format!(
            "the database role {role:?} cannot write the ledger's tables (missing: {missing}): \
             GRANT USAGE ON SCHEMA <schema> TO {role}; GRANT SELECT, INSERT, UPDATE ON \
             transaction, operation TO {role} (or create the tables with \
             BULK_RECORDER_MIGRATE=true)",
            role = self.role,
            missing = self.missing.join(", "),
        ))
    }

    /// What the role gives up, said once at start-up; `None` when nothing.
    pub fn caveat(&self) -> Option<String> {
        self.standbys_unreadable.then(|| {
            format!(
                "synchronous standbys are configured, and the role {role:?} cannot read their \
                 positions: a COMMIT that returns is trusted, including one whose wait an \
                 administrator cancelled (GRANT pg_monitor TO {role} to have every commit \
                 checked against the standbys)",
                role = self.role
            )
        })
    }
}
