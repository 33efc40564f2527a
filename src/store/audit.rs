//! The audit trail: who did what, when. Bounded: actors and details are cut to a length,
//! and past [`MAX_ROWS`] rows the oldest are folded into `audit_rollup` (per action: how
//! many, first and last time), so a flood of failures cannot fill the disk; rows older than
//! [`MAX_AGE_MS`] are folded the same way.

use rusqlite::params;

use super::{Db, db_err};
use crate::error::Result;

/// Rows the trail keeps in full.
pub const MAX_ROWS: i64 = 20_000;
/// Rows past the bound before the oldest are folded: one fold per this many inserts.
const FOLD_EVERY: i64 = 500;
/// Rows older than this (400 days) are folded too.
pub const MAX_AGE_MS: i64 = 400 * 86_400_000;
/// Characters of a detail kept (the cut ends with `…`).
pub const DETAIL_MAX: usize = 256;
/// Characters of an actor kept (an email's longest).
pub const ACTOR_MAX: usize = 254;

/// `s` cut to at most `max` characters, the last of them `…` when anything was cut.
pub fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s.into(),
        Some(_) => {
            let keep = s.char_indices().nth(max.saturating_sub(1)).map_or(s.len(), |(i, _)| i);
            format!("{}…", &s[..keep]).into()
        }
    }
}

impl Db {
    pub fn audit(&mut self, actor: &str, action: &str, detail: &str, now_ms: i64) -> Result<()> {
        self.audit_bounded(actor, action, detail, now_ms, MAX_ROWS, FOLD_EVERY)
    }

    /// Inserts one row; when the trail holds `max_rows + every` rows, folds the oldest
    /// into `audit_rollup` so `max_rows` remain. Runs in the caller's transaction, and
    /// costs one index lookup per insert besides.
    fn audit_bounded(&mut self, actor: &str, action: &str, detail: &str, now_ms: i64, max_rows: i64, every: i64) -> Result<()> {
        let (actor, detail) = (cut(actor, ACTOR_MAX), cut(detail, DETAIL_MAX));
        self.conn
            .prepare_cached("INSERT INTO audit (at_ms, actor, action, detail) VALUES (?1, ?2, ?3, ?4)")
            .and_then(|mut st| st.execute(params![now_ms, actor, action, detail]))
            .map_err(db_err("writing audit"))?;
        let newest = self.conn.last_insert_rowid();
        // Rows are only ever removed oldest first, so the ids in use are one run.
        let (oldest, oldest_at): (i64, i64) = self
            .conn
            .prepare_cached("SELECT id, at_ms FROM audit ORDER BY id LIMIT 1")
            .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(db_err("counting audit"))?;
        let last_folded = if newest - oldest + 1 >= max_rows + every {
            newest - max_rows
        } else if oldest_at < now_ms - MAX_AGE_MS {
            self.conn
                .prepare_cached("SELECT COALESCE(max(id), 0) FROM audit WHERE at_ms < ?1 AND id < ?2")
                .and_then(|mut st| st.query_row(params![now_ms - MAX_AGE_MS, newest], |r| r.get(0)))
                .map_err(db_err("aging audit"))?
        } else {
            return Ok(());
        };
        self.conn
            .execute(
                "INSERT INTO audit_rollup (action, count, first_ms, last_ms)
                 SELECT action, count(*), min(at_ms), max(at_ms) FROM audit WHERE id <= ?1 GROUP BY action
                 ON CONFLICT (action) DO UPDATE SET count = count + excluded.count,
                     first_ms = min(first_ms, excluded.first_ms), last_ms = max(last_ms, excluded.last_ms)",
                params![last_folded],
            )
            .map_err(db_err("rolling up audit"))?;
        self.conn.execute("DELETE FROM audit WHERE id <= ?1", params![last_folded]).map_err(db_err("rolling up audit"))?;
        Ok(())
    }

    /// A page of the trail, newest first: rows before id `before`, whose action starts
    /// with `action` and whose actor contains `actor` (both optional), at most `limit`.
    pub fn audit_page(
        &mut self,
        action: Option<&str>,
        actor: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>> {
        let like = |s: &str| s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        let action = action.map(|a| format!("{}%", like(a)));
        let actor = actor.map(|a| format!("%{}%", like(a)));
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, at_ms, actor, action, detail FROM audit
                 WHERE (?1 IS NULL OR id < ?1) AND (?2 IS NULL OR action LIKE ?2 ESCAPE '\\')
                   AND (?3 IS NULL OR actor LIKE ?3 ESCAPE '\\')
                 ORDER BY id DESC LIMIT ?4",
            )
            .map_err(db_err("listing audit"))?;
        let rows = st
            .query_map(params![before, action, actor, limit], |r| {
                Ok(AuditRow { id: r.get(0)?, at_ms: r.get(1)?, actor: r.get(2)?, action: r.get(3)?, detail: r.get(4)? })
            })
            .map_err(db_err("listing audit"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing audit"))
    }

    /// Rows of `action` per UTC day (days since the epoch) since `since_ms`.
    pub fn audit_per_day(&mut self, action: &str, since_ms: i64) -> Result<Vec<(i64, i64)>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT at_ms / 86400000 AS day, COUNT(*) FROM audit WHERE action = ?1 AND at_ms >= ?2 GROUP BY day ORDER BY day",
            )
            .map_err(db_err("counting audit per day"))?;
        let rows =
            st.query_map(params![action, since_ms], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err("counting audit per day"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("counting audit per day"))
    }

    /// The actions in the trail and its rollup, for a filter.
    pub fn audit_actions(&mut self) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT action FROM audit UNION SELECT action FROM audit_rollup ORDER BY 1")
            .map_err(db_err("listing audit actions"))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(db_err("listing audit actions"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing audit actions"))
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

    /// What was folded out of the trail, per action.
    pub fn audit_rollup(&mut self) -> Result<Vec<RollupRow>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT action, count, first_ms, last_ms FROM audit_rollup ORDER BY action")
            .map_err(db_err("listing audit rollup"))?;
        let rows = st
            .query_map([], |r| Ok(RollupRow { action: r.get(0)?, count: r.get(1)?, first_ms: r.get(2)?, last_ms: r.get(3)? }))
            .map_err(db_err("listing audit rollup"))?;
        rows.collect::<std::result::Result<_, _>>().map_err(db_err("listing audit rollup"))
    }

    /// Rows in the trail (tests and checks; a full count, not for hot paths).
    pub fn audit_len(&mut self) -> Result<i64> {
        self.conn.query_row("SELECT count(*) FROM audit", [], |r| r.get(0)).map_err(db_err("counting audit"))
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

/// The rows of one action folded out of the trail.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupRow {
    pub action: String,
    pub count: i64,
    pub first_ms: i64,
    pub last_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LATEST_VERSION;

    #[test]
    fn cuts_end_with_an_ellipsis_on_a_char_boundary() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("exactly10!", 10), "exactly10!");
        assert_eq!(cut("eleven char", 10), "eleven ch…");
        // Multi-byte characters: counted as characters, never split.
        let s = "é".repeat(300);
        let c = cut(&s, DETAIL_MAX);
        assert_eq!(c.chars().count(), DETAIL_MAX);
        assert!(c.ends_with('…'));
    }

    #[test]
    fn long_actors_and_details_are_cut_when_written() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let email = format!("{}@example.com", "x".repeat(1_000_000));
        db.audit(&email, "login.failed", &"d".repeat(10_000), 5).unwrap();
        let row = &db.audit_entries(1).unwrap()[0];
        assert_eq!(row.actor.chars().count(), ACTOR_MAX);
        assert!(row.actor.ends_with('…') && row.actor.starts_with("xxx"));
        assert_eq!(row.detail.chars().count(), DETAIL_MAX);
        assert_eq!(row.action, "login.failed");
    }

    #[test]
    fn the_oldest_rows_fold_into_the_rollup() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        // Bound 10, folded every 5: the trail never holds more than 14 rows.
        for i in 0..30i64 {
            let action = if i % 3 == 0 { "login" } else { "login.failed" };
            db.audit_bounded("a@example.com", action, "", 1_000 + i, 10, 5).unwrap();
            assert!(db.audit_len().unwrap() < 15, "after {i}: {}", db.audit_len().unwrap());
        }
        let kept = db.audit_entries(100).unwrap();
        let rolled = db.audit_rollup().unwrap();
        let folded: i64 = rolled.iter().map(|r| r.count).sum();
        assert_eq!(folded + kept.len() as i64, 30, "every row is either kept or counted");
        assert!(kept.len() >= 10);
        // The newest are kept; the rollup spans exactly the oldest.
        assert_eq!(kept[0].at_ms, 1_029);
        let oldest_kept = kept.last().unwrap().at_ms;
        assert_eq!(oldest_kept - 1_000, folded);
        let login = rolled.iter().find(|r| r.action == "login").unwrap();
        let failed = rolled.iter().find(|r| r.action == "login.failed").unwrap();
        assert_eq!(login.first_ms, 1_000);
        assert_eq!(failed.first_ms, 1_001);
        assert!(login.last_ms < oldest_kept && failed.last_ms < oldest_kept);
        assert_eq!(login.count, (0..folded).filter(|i| i % 3 == 0).count() as i64);
    }

    #[test]
    fn the_real_bound_holds_with_one_fold_per_500() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let n = MAX_ROWS + FOLD_EVERY * 2 + 7;
        for i in 0..n {
            db.audit("x@example.com", "login.failed", "10.0.0.9", i).unwrap();
        }
        let len = db.audit_len().unwrap();
        assert!((MAX_ROWS..MAX_ROWS + FOLD_EVERY).contains(&len), "{len} rows");
        let rolled = db.audit_rollup().unwrap();
        assert_eq!(rolled.len(), 1);
        assert_eq!(rolled[0].count + len, n);
        assert_eq!((rolled[0].first_ms, rolled[0].last_ms), (0, rolled[0].count - 1));
    }

    #[test]
    fn rows_past_the_age_limit_fold_too() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let day = 86_400_000;
        db.audit("a@example.com", "login", "", 0).unwrap();
        db.audit("a@example.com", "login", "", day).unwrap();
        db.audit("a@example.com", "user.added", "", 300 * day).unwrap();
        // 401 days after the first: the first two are past 400 days, the third is not.
        db.audit("a@example.com", "login", "", 401 * day + 1).unwrap();
        let kept: Vec<i64> = db.audit_entries(10).unwrap().iter().map(|r| r.at_ms).collect();
        assert_eq!(kept, vec![401 * day + 1, 300 * day]);
        assert_eq!(db.audit_rollup().unwrap()[0].count, 2);
    }

    #[test]
    fn pages_filter_by_action_prefix_and_actor() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        for i in 0..20i64 {
            let (who, what) = if i % 2 == 0 { ("owner@example.com", "login") } else { ("x_y@example.com", "login.failed") };
            db.audit(who, what, "", i).unwrap();
        }
        db.audit("owner@example.com", "user.added", "viewer@example.com", 20).unwrap();
        let page = db.audit_page(None, None, None, 5).unwrap();
        assert_eq!(page.len(), 5);
        assert_eq!(page[0].action, "user.added");
        let next = db.audit_page(None, None, Some(page[4].id), 100).unwrap();
        assert_eq!(next.len(), 16);
        assert_eq!(db.audit_page(Some("login"), None, None, 100).unwrap().len(), 20);
        assert_eq!(db.audit_page(Some("login.f"), None, None, 100).unwrap().len(), 10);
        // `_` is a letter here, not a wildcard.
        assert_eq!(db.audit_page(None, Some("x_y"), None, 100).unwrap().len(), 10);
        assert_eq!(db.audit_page(None, Some("x%y"), None, 100).unwrap().len(), 0);
        assert_eq!(db.audit_actions().unwrap(), vec!["login", "login.failed", "user.added"]);
    }
}
