//! The Prometheus scrape token: one at a time, stored only as its SHA-256.

use rusqlite::{OptionalExtension, params};

use super::{Db, db_err};
use crate::error::Result;

impl Db {
    /// Makes `token_hash` the scrape token, replacing any other.
    pub fn set_metrics_token(&mut self, token_hash: &[u8], now_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO metrics_token (id, token_hash, created_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash, created_ms = excluded.created_ms",
                params![token_hash, now_ms],
            )
            .map_err(db_err("storing the metrics token"))?;
        Ok(())
    }

    /// Removes the scrape token; false when there was none.
    pub fn delete_metrics_token(&mut self) -> Result<bool> {
        let n = self.conn.execute("DELETE FROM metrics_token", []).map_err(db_err("removing the metrics token"))?;
        Ok(n > 0)
    }

    /// The SHA-256 of the scrape token, when there is one.
    pub fn metrics_token_hash(&mut self) -> Result<Option<Vec<u8>>> {
        self.conn
            .prepare_cached("SELECT token_hash FROM metrics_token WHERE id = 1")
            .and_then(|mut st| st.query_row([], |r| r.get(0)).optional())
            .map_err(db_err("reading the metrics token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LATEST_VERSION;

    #[test]
    fn one_token_replaces_the_other_and_goes_on_revoke() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        assert_eq!(db.metrics_token_hash().unwrap(), None);
        assert!(!db.delete_metrics_token().unwrap());
        db.set_metrics_token(b"first", 1).unwrap();
        db.set_metrics_token(b"second", 2).unwrap();
        assert_eq!(db.metrics_token_hash().unwrap().as_deref(), Some(&b"second"[..]));
        assert!(db.delete_metrics_token().unwrap());
        assert_eq!(db.metrics_token_hash().unwrap(), None);
    }
}
