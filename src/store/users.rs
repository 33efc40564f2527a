//! People: web users (argon2id hashes), their sessions (SHA-256 of the token, with a
//! public id to list and revoke them), the cameras shared with them, their second factor
//! (the TOTP secret sealed by the caller, hashed recovery codes), the one-time setup
//! tokens of a hub with no users, and the hub's settings in `meta`.

use rusqlite::{OptionalExtension, params};

use super::{Db, db_err};
use crate::error::{Error, ErrorKind, Result};

/// Setup tokens kept at once (each `homehub setup-link` adds one; the oldest go).
const SETUP_TOKENS_KEPT: i64 = 5;
/// Sessions one user may hold; a new one past that ends their least recently used.
pub const SESSIONS_PER_USER: i64 = 50;

const USER_COLS: &str = "u.id, u.email, u.role, u.password_hash, u.totp_enabled, u.created_ms";

impl Db {
    pub fn add_user(&mut self, email: &str, role: Role, password_hash: &str, now_ms: i64) -> Result<i64> {
        match self.conn.execute(
            "INSERT INTO users (email, role, password_hash, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![email, role.as_str(), password_hash, now_ms],
        ) {
            Ok(_) => Ok(self.conn.last_insert_rowid()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(Error::new(ErrorKind::Conflict, format!("user {email} exists already")))
            }
            Err(e) => Err(Error::internal(format!("database: adding user: {e}"))),
        }
    }

    pub fn user_by_email(&mut self, email: &str) -> Result<Option<UserRow>> {
        self.conn
            .query_row(&format!("SELECT {USER_COLS} FROM users u WHERE u.email = ?1"), params![email], UserRow::from_row)
            .optional()
            .map_err(db_err("reading user"))
    }

    pub fn user(&mut self, id: i64) -> Result<Option<UserRow>> {
        self.conn
            .query_row(&format!("SELECT {USER_COLS} FROM users u WHERE u.id = ?1"), params![id], UserRow::from_row)
            .optional()
            .map_err(db_err("reading user"))
    }

    /// A user who must exist: NotFound names the id otherwise.
    pub fn existing_user(&mut self, id: i64) -> Result<UserRow> {
        self.user(id)?.ok_or_else(|| Error::new(ErrorKind::NotFound, format!("no user {id}")))
    }

    /// Every user, owners first, then by email.
    pub fn users(&mut self) -> Result<Vec<UserRow>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {USER_COLS} FROM users u
                 ORDER BY CASE u.role WHEN 'owner' THEN 0 WHEN 'member' THEN 1 ELSE 2 END, u.email"
            ))
            .map_err(db_err("listing users"))?;
        let rows = st.query_map([], UserRow::from_row).map_err(db_err("listing users"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err("listing users"))
    }

    pub fn user_count(&mut self) -> Result<i64> {
        self.conn.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)).map_err(db_err("counting users"))
    }

    fn owner_count(&mut self) -> Result<i64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM users WHERE role = 'owner'", [], |r| r.get(0))
            .map_err(db_err("counting owners"))
    }

    /// Changes a user's role; refused when it would leave the hub without an owner.
    pub fn set_role(&mut self, id: i64, role: Role) -> Result<UserRow> {
        let user = self.existing_user(id)?;
        if user.role == Role::Owner && role != Role::Owner && self.owner_count()? <= 1 {
            return Err(Error::new(ErrorKind::Conflict, "the hub needs an owner: make someone else owner first"));
        }
        self.conn
            .execute("UPDATE users SET role = ?2 WHERE id = ?1", params![id, role.as_str()])
            .map_err(db_err("changing a role"))?;
        if role == Role::Owner {
            // An owner sees every camera: shares would only be stale rows.
            self.conn.execute("DELETE FROM camera_shares WHERE user_id = ?1", params![id]).map_err(db_err("clearing shares"))?;
        }
        self.user(id)?.ok_or_else(|| Error::internal("user vanished"))
    }

    /// Sets a new password hash and ends every session of the user except `keep` (the
    /// token hash of the session that asked, if it is theirs); returns how many ended.
    pub fn set_password(&mut self, id: i64, password_hash: &str, keep: Option<&[u8]>) -> Result<usize> {
        let n = self
            .conn
            .execute("UPDATE users SET password_hash = ?2 WHERE id = ?1", params![id, password_hash])
            .map_err(db_err("changing a password"))?;
        if n == 0 {
            return Err(Error::new(ErrorKind::NotFound, format!("no user {id}")));
        }
        self.delete_sessions_of(id, keep)
    }

    /// Removes a user (their sessions, shares and codes go with them); refused for the
    /// last owner.
    pub fn delete_user(&mut self, id: i64) -> Result<UserRow> {
        let user = self.existing_user(id)?;
        if user.role == Role::Owner && self.owner_count()? <= 1 {
            return Err(Error::new(ErrorKind::Conflict, "the hub's last owner cannot be removed"));
        }
        self.conn.execute("DELETE FROM users WHERE id = ?1", params![id]).map_err(db_err("removing a user"))?;
        Ok(user)
    }

    /// The cameras shared with a user, by id.
    pub fn shares_of(&mut self, user_id: i64) -> Result<Vec<i64>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT camera_id FROM camera_shares WHERE user_id = ?1 ORDER BY camera_id")
            .map_err(db_err("reading shares"))?;
        let rows = st.query_map(params![user_id], |r| r.get(0)).map_err(db_err("reading shares"))?;
        rows.collect::<rusqlite::Result<Vec<i64>>>().map_err(db_err("reading shares"))
    }

    /// Replaces the cameras shared with a user; every id must be a camera not removed.
    pub fn set_shares(&mut self, user_id: i64, cameras: &[i64]) -> Result<Vec<i64>> {
        let user = self.existing_user(user_id)?;
        if user.role == Role::Owner && !cameras.is_empty() {
            return Err(Error::invalid("cameras: an owner sees every camera; nothing to share"));
        }
        for &c in cameras {
            if self.live_camera(c)?.is_none() {
                return Err(Error::invalid(format!("cameras: no camera {c}")));
            }
        }
        self.conn.execute("DELETE FROM camera_shares WHERE user_id = ?1", params![user_id]).map_err(db_err("sharing"))?;
        for &c in cameras {
            self.conn
                .execute("INSERT OR IGNORE INTO camera_shares (user_id, camera_id) VALUES (?1, ?2)", params![user_id, c])
                .map_err(db_err("sharing"))?;
        }
        self.shares_of(user_id)
    }

    /// A new session; returns its public id.
    pub fn add_session(&mut self, s: &NewSession<'_>) -> Result<String> {
        let public_id = hex::encode(rand::random::<[u8; 8]>());
        self.conn
            .execute(
                "INSERT INTO sessions (token_hash, public_id, user_id, created_ms, expires_ms, last_seen_ms, address, agent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?6, ?7)",
                params![s.token_hash, public_id, s.user_id, s.now_ms, s.expires_ms, s.address, s.agent],
            )
            .map_err(db_err("adding session"))?;
        self.conn
            .execute(
                "DELETE FROM sessions WHERE user_id = ?1 AND token_hash NOT IN
                 (SELECT token_hash FROM sessions WHERE user_id = ?1 ORDER BY last_seen_ms DESC, created_ms DESC LIMIT ?2)",
                params![s.user_id, SESSIONS_PER_USER],
            )
            .map_err(db_err("capping sessions"))?;
        Ok(public_id)
    }

    /// The user of a live session: not past its absolute expiry, and used within
    /// `idle_ms`. Marks it used (at most once a minute, to spare the disk).
    pub fn session_user(&mut self, token_hash: &[u8], now_ms: i64, idle_ms: i64) -> Result<Option<(SessionRow, UserRow)>> {
        let found = self
            .conn
            .query_row(
                &format!(
                    "SELECT {USER_COLS}, s.public_id, s.created_ms, s.expires_ms, s.last_seen_ms, s.address, s.agent
                     FROM sessions s JOIN users u ON u.id = s.user_id
                     WHERE s.token_hash = ?1 AND s.expires_ms > ?2 AND s.last_seen_ms > ?2 - ?3"
                ),
                params![token_hash, now_ms, idle_ms],
                |r| Ok((SessionRow::from_row(r, 6)?, UserRow::from_row(r)?)),
            )
            .optional()
            .map_err(db_err("reading session"))?;
        if let Some((s, _)) = &found
            && now_ms - s.last_seen_ms >= 60_000
        {
            self.conn
                .execute("UPDATE sessions SET last_seen_ms = ?2 WHERE token_hash = ?1", params![token_hash, now_ms])
                .map_err(db_err("marking a session used"))?;
        }
        Ok(found)
    }

    /// A user's live sessions, most recently used first.
    pub fn sessions_of(&mut self, user_id: i64, now_ms: i64, idle_ms: i64) -> Result<Vec<SessionRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT public_id, created_ms, expires_ms, last_seen_ms, address, agent FROM sessions
                 WHERE user_id = ?1 AND expires_ms > ?2 AND last_seen_ms > ?2 - ?3 ORDER BY last_seen_ms DESC",
            )
            .map_err(db_err("listing sessions"))?;
        let rows = st
            .query_map(params![user_id, now_ms, idle_ms], |r| SessionRow::from_row(r, 0))
            .map_err(db_err("listing sessions"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err("listing sessions"))
    }

    /// Live sessions per user id.
    pub fn session_counts(&mut self, now_ms: i64, idle_ms: i64) -> Result<std::collections::HashMap<i64, i64>> {
        let mut st = self
            .conn
            .prepare("SELECT user_id, COUNT(*) FROM sessions WHERE expires_ms > ?1 AND last_seen_ms > ?1 - ?2 GROUP BY user_id")
            .map_err(db_err("counting sessions"))?;
        let rows = st.query_map(params![now_ms, idle_ms], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db_err("counting sessions"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("counting sessions"))
    }

    /// Ends one of a user's sessions by its public id; false when they have no such one.
    pub fn delete_session_of(&mut self, user_id: i64, public_id: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM sessions WHERE user_id = ?1 AND public_id = ?2", params![user_id, public_id])
            .map_err(db_err("revoking a session"))?;
        Ok(n > 0)
    }

    /// Ends every session of a user but `keep` (a token hash); returns how many.
    pub fn delete_sessions_of(&mut self, user_id: i64, keep: Option<&[u8]>) -> Result<usize> {
        self.conn
            .execute("DELETE FROM sessions WHERE user_id = ?1 AND (?2 IS NULL OR token_hash != ?2)", params![user_id, keep])
            .map_err(db_err("revoking sessions"))
    }

    /// Ends every session of everyone; returns how many.
    pub fn delete_all_sessions(&mut self) -> Result<usize> {
        self.conn.execute("DELETE FROM sessions", []).map_err(db_err("revoking every session"))
    }

    pub fn delete_session(&mut self, token_hash: &[u8]) -> Result<()> {
        self.conn
            .execute("DELETE FROM sessions WHERE token_hash = ?1", params![token_hash])
            .map_err(db_err("deleting session"))?;
        Ok(())
    }

    pub fn delete_expired_sessions(&mut self, now_ms: i64, idle_ms: i64) -> Result<usize> {
        self.conn
            .execute("DELETE FROM sessions WHERE expires_ms <= ?1 OR last_seen_ms <= ?1 - ?2", params![now_ms, idle_ms])
            .map_err(db_err("expiring sessions"))
    }

    /// Starts (or restarts) a user's TOTP enrolment with a sealed secret; 2FA stays off
    /// until [`Db::enable_totp`].
    pub fn set_totp_pending(&mut self, user_id: i64, sealed: &[u8]) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE users SET totp_sealed = ?2, totp_enabled = 0, totp_last_step = 0 WHERE id = ?1 AND totp_enabled = 0",
                params![user_id, sealed],
            )
            .map_err(db_err("storing a TOTP secret"))?;
        if n == 0 {
            return Err(Error::new(ErrorKind::Conflict, "two-factor is on already: turn it off first to enrol again"));
        }
        Ok(())
    }

    /// The sealed secret, whether 2FA is on, and the last time step accepted.
    pub fn totp_of(&mut self, user_id: i64) -> Result<Option<(Vec<u8>, bool, i64)>> {
        let row: Option<(Option<Vec<u8>>, bool, i64)> = self
            .conn
            .query_row("SELECT totp_sealed, totp_enabled, totp_last_step FROM users WHERE id = ?1", params![user_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
            .map_err(db_err("reading a TOTP secret"))?;
        Ok(row.and_then(|(s, on, step)| s.map(|s| (s, on, step))))
    }

    /// Switches 2FA on with the step the enrolment code used, and replaces the recovery
    /// codes with these hashes.
    pub fn enable_totp(&mut self, user_id: i64, step: i64, recovery_hashes: &[Vec<u8>]) -> Result<()> {
        self.conn
            .execute("UPDATE users SET totp_enabled = 1, totp_last_step = ?2 WHERE id = ?1", params![user_id, step])
            .map_err(db_err("turning on 2FA"))?;
        self.conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", params![user_id]).map_err(db_err("recovery codes"))?;
        for h in recovery_hashes {
            self.conn
                .execute("INSERT INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)", params![user_id, h])
                .map_err(db_err("recovery codes"))?;
        }
        Ok(())
    }

    pub fn disable_totp(&mut self, user_id: i64) -> Result<()> {
        self.conn
            .execute("UPDATE users SET totp_sealed = NULL, totp_enabled = 0, totp_last_step = 0 WHERE id = ?1", params![user_id])
            .map_err(db_err("turning off 2FA"))?;
        self.conn.execute("DELETE FROM recovery_codes WHERE user_id = ?1", params![user_id]).map_err(db_err("recovery codes"))?;
        Ok(())
    }

    /// Takes TOTP time step `step` for the user: true only if it is later than every step
    /// used before (a code works once).
    pub fn use_totp_step(&mut self, user_id: i64, step: i64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE users SET totp_last_step = ?2 WHERE id = ?1 AND totp_enabled = 1 AND totp_last_step < ?2",
                params![user_id, step],
            )
            .map_err(db_err("using a TOTP code"))?;
        Ok(n == 1)
    }

    /// Uses up a recovery code; false when the user has no unused code with that hash.
    pub fn use_recovery_code(&mut self, user_id: i64, code_hash: &[u8], now_ms: i64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "UPDATE recovery_codes SET used_ms = ?3 WHERE user_id = ?1 AND code_hash = ?2 AND used_ms IS NULL",
                params![user_id, code_hash, now_ms],
            )
            .map_err(db_err("using a recovery code"))?;
        Ok(n == 1)
    }

    pub fn recovery_codes_left(&mut self, user_id: i64) -> Result<i64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1 AND used_ms IS NULL", params![user_id], |r| {
                r.get(0)
            })
            .map_err(db_err("counting recovery codes"))
    }

    /// Adds a setup token (its hash), keeping the newest few.
    pub fn add_setup_token(&mut self, token_hash: &[u8], now_ms: i64, expires_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO setup_tokens (token_hash, created_ms, expires_ms) VALUES (?1, ?2, ?3)",
                params![token_hash, now_ms, expires_ms],
            )
            .map_err(db_err("adding a setup token"))?;
        self.conn
            .execute(
                "DELETE FROM setup_tokens WHERE token_hash NOT IN
                 (SELECT token_hash FROM setup_tokens ORDER BY created_ms DESC, rowid DESC LIMIT ?1)",
                params![SETUP_TOKENS_KEPT],
            )
            .map_err(db_err("pruning setup tokens"))?;
        Ok(())
    }

    pub fn setup_token_valid(&mut self, token_hash: &[u8], now_ms: i64) -> Result<bool> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM setup_tokens WHERE token_hash = ?1 AND expires_ms > ?2",
                params![token_hash, now_ms],
                |r| r.get(0),
            )
            .map_err(db_err("checking a setup token"))?;
        Ok(n > 0)
    }

    pub fn clear_setup_tokens(&mut self) -> Result<()> {
        self.conn.execute("DELETE FROM setup_tokens", []).map_err(db_err("clearing setup tokens"))?;
        Ok(())
    }

    /// A hub setting from `meta` (`setting.KEY`).
    pub fn setting(&mut self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![format!("setting.{key}")], |r| r.get(0))
            .optional()
            .map_err(db_err("reading a setting"))
    }

    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![format!("setting.{key}"), value],
            )
            .map_err(db_err("storing a setting"))?;
        Ok(())
    }
}

/// What a new session records.
pub struct NewSession<'a> {
    pub token_hash: &'a [u8],
    pub user_id: i64,
    pub now_ms: i64,
    pub expires_ms: i64,
    pub address: &'a str,
    pub agent: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Owner,
    Member,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "owner" => Some(Role::Owner),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub role: Role,
    pub password_hash: String,
    pub totp_enabled: bool,
    pub created_ms: i64,
}

impl UserRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let role: String = r.get(2)?;
        Ok(UserRow {
            id: r.get(0)?,
            email: r.get(1)?,
            role: Role::parse(&role).unwrap_or(Role::Viewer),
            password_hash: r.get(3)?,
            totp_enabled: r.get(4)?,
            created_ms: r.get(5)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub public_id: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub last_seen_ms: i64,
    pub address: String,
    pub agent: String,
}

impl SessionRow {
    fn from_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Self> {
        Ok(SessionRow {
            public_id: r.get(at)?,
            created_ms: r.get(at + 1)?,
            expires_ms: r.get(at + 2)?,
            last_seen_ms: r.get(at + 3)?,
            address: r.get(at + 4)?,
            agent: r.get(at + 5)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LATEST_VERSION;

    fn session<'a>(hash: &'a [u8], uid: i64, now: i64, expires: i64) -> NewSession<'a> {
        NewSession { token_hash: hash, user_id: uid, now_ms: now, expires_ms: expires, address: "192.168.1.5", agent: "test" }
    }

    #[test]
    fn sessions_expire_by_age_and_idleness_and_users_are_unique() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let uid = db.add_user("a@example.com", Role::Owner, "h", 0).unwrap();
        assert_eq!(db.add_user("A@example.com", Role::Viewer, "h", 0).unwrap_err().kind(), ErrorKind::Conflict);
        db.add_session(&session(b"tok", uid, 0, 1_000_000)).unwrap();
        let idle = 100_000;
        assert_eq!(db.session_user(b"tok", 50_000, idle).unwrap().unwrap().1.email, "a@example.com");
        // Used at 70 s (the mark happens once 60 s have passed): alive until 170 s.
        assert!(db.session_user(b"tok", 70_000, idle).unwrap().is_some());
        assert!(db.session_user(b"tok", 169_000, idle).unwrap().is_some());
        assert!(db.session_user(b"tok", 269_001, idle).unwrap().is_none(), "idle too long");
        db.add_session(&session(b"tok2", uid, 0, 100)).unwrap();
        assert!(db.session_user(b"tok2", 100, idle).unwrap().is_none(), "past its absolute expiry");
        assert!(db.session_user(b"other", 50, idle).unwrap().is_none());
    }

    #[test]
    fn sessions_are_listed_and_revoked_one_by_one_or_all_but_one() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let a = db.add_user("a@example.com", Role::Owner, "h", 0).unwrap();
        let b = db.add_user("b@example.com", Role::Viewer, "h", 0).unwrap();
        let ida = db.add_session(&session(b"a1", a, 0, 1_000)).unwrap();
        db.add_session(&session(b"a2", a, 1, 1_000)).unwrap();
        db.add_session(&session(b"b1", b, 0, 1_000)).unwrap();
        assert_eq!(db.sessions_of(a, 10, 1_000).unwrap().len(), 2);
        assert_eq!(db.session_counts(10, 1_000).unwrap()[&b], 1);
        assert!(!db.delete_session_of(b, &ida).unwrap(), "not b's session");
        assert!(db.delete_session_of(a, &ida).unwrap());
        assert!(db.session_user(b"a1", 10, 1_000).unwrap().is_none());
        db.add_session(&session(b"a3", a, 2, 1_000)).unwrap();
        assert_eq!(db.set_password(a, "h2", Some(b"a3")).unwrap(), 1, "the asking session stays");
        assert!(db.session_user(b"a3", 10, 1_000).unwrap().is_some());
        assert!(db.session_user(b"a2", 10, 1_000).unwrap().is_none());
        assert_eq!(db.delete_all_sessions().unwrap(), 2);
    }

    #[test]
    fn a_user_holds_a_bounded_number_of_sessions_and_the_least_used_goes() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let u = db.add_user("a@example.com", Role::Owner, "h", 0).unwrap();
        for i in 0..(SESSIONS_PER_USER + 10) {
            let hash = i.to_be_bytes();
            db.add_session(&session(&hash, u, 1_000 + i, 1_000_000)).unwrap();
        }
        assert_eq!(db.sessions_of(u, 2_000, 1_000_000).unwrap().len() as i64, SESSIONS_PER_USER);
        assert!(db.session_user(&0i64.to_be_bytes(), 2_000, 1_000_000).unwrap().is_none(), "the oldest went");
        let newest = (SESSIONS_PER_USER + 9).to_be_bytes();
        assert!(db.session_user(&newest, 2_000, 1_000_000).unwrap().is_some());
    }

    #[test]
    fn the_last_owner_stays_and_shares_name_live_cameras() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let o = db.add_user("o@example.com", Role::Owner, "h", 0).unwrap();
        let v = db.add_user("v@example.com", Role::Viewer, "h", 0).unwrap();
        assert_eq!(db.set_role(o, Role::Member).unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(db.delete_user(o).unwrap_err().kind(), ErrorKind::Conflict);
        let cam = db.add_camera("Porch", "rtsp://h/a", "", 0).unwrap();
        assert_eq!(db.set_shares(v, &[9999]).unwrap_err().kind(), ErrorKind::Invalid);
        assert_eq!(db.set_shares(v, &[cam.id]).unwrap(), vec![cam.id]);
        assert_eq!(db.set_shares(o, &[cam.id]).unwrap_err().kind(), ErrorKind::Invalid);
        db.set_role(v, Role::Owner).unwrap();
        assert!(db.shares_of(v).unwrap().is_empty(), "an owner's shares go");
        db.set_role(o, Role::Viewer).unwrap();
        db.delete_user(o).unwrap();
        assert!(db.user(o).unwrap().is_none());
    }

    #[test]
    fn a_totp_step_and_a_recovery_code_work_once() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let u = db.add_user("a@example.com", Role::Owner, "h", 0).unwrap();
        assert!(db.totp_of(u).unwrap().is_none());
        db.set_totp_pending(u, b"sealed").unwrap();
        assert!(!db.use_totp_step(u, 5).unwrap(), "not on yet");
        db.enable_totp(u, 5, &[b"c1".to_vec(), b"c2".to_vec()]).unwrap();
        assert_eq!(db.totp_of(u).unwrap(), Some((b"sealed".to_vec(), true, 5)));
        assert_eq!(db.set_totp_pending(u, b"other").unwrap_err().kind(), ErrorKind::Conflict);
        assert!(!db.use_totp_step(u, 5).unwrap(), "the enrolment's code is used");
        assert!(db.use_totp_step(u, 6).unwrap());
        assert!(!db.use_totp_step(u, 6).unwrap());
        assert!(db.use_recovery_code(u, b"c1", 1).unwrap());
        assert!(!db.use_recovery_code(u, b"c1", 2).unwrap());
        assert_eq!(db.recovery_codes_left(u).unwrap(), 1);
        db.disable_totp(u).unwrap();
        assert!(db.totp_of(u).unwrap().is_none());
        assert_eq!(db.recovery_codes_left(u).unwrap(), 0);
    }

    #[test]
    fn setup_tokens_expire_and_only_the_newest_few_stay() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        for i in 0..7u8 {
            db.add_setup_token(&[i], i64::from(i), 100).unwrap();
        }
        assert!(!db.setup_token_valid(&[0], 10).unwrap(), "pushed out by newer ones");
        assert!(db.setup_token_valid(&[6], 10).unwrap());
        assert!(!db.setup_token_valid(&[6], 100).unwrap(), "expired");
        db.clear_setup_tokens().unwrap();
        assert!(!db.setup_token_valid(&[6], 10).unwrap());
        assert_eq!(db.setting("require_totp").unwrap(), None);
        db.set_setting("require_totp", "true").unwrap();
        db.set_setting("require_totp", "false").unwrap();
        assert_eq!(db.setting("require_totp").unwrap().as_deref(), Some("false"));
    }
}
