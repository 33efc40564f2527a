//! Web users (argon2id hashes) and their sessions (SHA-256 of the token).

use rusqlite::{OptionalExtension, params};

use super::{Db, db_err};
use crate::error::{Error, ErrorKind, Result};

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
            .query_row("SELECT id, email, role, password_hash FROM users WHERE email = ?1", params![email], UserRow::from_row)
            .optional()
            .map_err(db_err("reading user"))
    }

    pub fn add_session(&mut self, token_hash: &[u8], user_id: i64, now_ms: i64, expires_ms: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO sessions (token_hash, user_id, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![token_hash, user_id, now_ms, expires_ms],
            )
            .map_err(db_err("adding session"))?;
        Ok(())
    }

    /// The user of a live session.
    pub fn session_user(&mut self, token_hash: &[u8], now_ms: i64) -> Result<Option<UserRow>> {
        self.conn
            .query_row(
                "SELECT u.id, u.email, u.role, u.password_hash FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.token_hash = ?1 AND s.expires_ms > ?2",
                params![token_hash, now_ms],
                UserRow::from_row,
            )
            .optional()
            .map_err(db_err("reading session"))
    }

    pub fn delete_session(&mut self, token_hash: &[u8]) -> Result<()> {
        self.conn
            .execute("DELETE FROM sessions WHERE token_hash = ?1", params![token_hash])
            .map_err(db_err("deleting session"))?;
        Ok(())
    }

    pub fn delete_expired_sessions(&mut self, now_ms: i64) -> Result<usize> {
        self.conn.execute("DELETE FROM sessions WHERE expires_ms <= ?1", params![now_ms]).map_err(db_err("expiring sessions"))
    }
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
}

impl UserRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let role: String = r.get(2)?;
        Ok(UserRow {
            id: r.get(0)?,
            email: r.get(1)?,
            role: Role::parse(&role).unwrap_or(Role::Viewer),
            password_hash: r.get(3)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LATEST_VERSION;

    #[test]
    fn sessions_expire_and_users_are_unique() {
        let mut db = Db::open_in_memory_at(LATEST_VERSION);
        let uid = db.add_user("a@example.com", Role::Owner, "h", 0).unwrap();
        assert_eq!(db.add_user("A@example.com", Role::Viewer, "h", 0).unwrap_err().kind(), ErrorKind::Conflict);
        db.add_session(b"tok", uid, 0, 100).unwrap();
        assert_eq!(db.session_user(b"tok", 50).unwrap().unwrap().email, "a@example.com");
        assert!(db.session_user(b"tok", 100).unwrap().is_none());
        assert!(db.session_user(b"other", 50).unwrap().is_none());
    }
}
