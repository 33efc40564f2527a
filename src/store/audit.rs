//! The audit trail: who did what, when.

use rusqlite::params;

use super::{Db, db_err};
use crate::error::Result;

impl Db {
    pub fn audit(&mut self, actor: &str, action: &str, detail: &str, now_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO audit (at_ms, actor, action, detail) VALUES (?1, ?2, ?3, ?4)",
                params![now_ms, actor, action, detail],
            )
            .map_err(db_err("writing audit"))?;
        Ok(())
    }

    pub fn audit_entries(&mut self, limit: u32) -> Result<Vec<AuditRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT id, at_ms, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(db_err("listing audit"))?;
        let rows = st
            .query_map(params![limit], |r| {
                Ok(AuditRow { id: r.get(0)?, at_ms: r.get(1)?, actor: r.get(2)?, action: r.get(3)?, detail: r.get(4)? })
            })
            .map_err(db_err("listing audit"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing audit"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
}
