//! The one error type of homehub. Its [`ErrorKind`] decides the HTTP status a request
//! gets and the exit code a command ends with; its message names the thing that is wrong.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input from a user: config, arguments, request body.
    Invalid,
    /// No valid session or credentials.
    Unauthenticated,
    /// Authenticated, but the role does not allow it.
    Forbidden,
    NotFound,
    /// The thing exists already or is held by someone else (e.g. the data dir lock).
    Conflict,
    /// A dependency is missing or broken on this machine (GStreamer element, disk).
    Unavailable,
    /// Too many attempts: try again later.
    RateLimited,
    /// A bug or an I/O failure we did not expect.
    Internal,
}

#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    msg: String,
    /// What caused it, when it came from another error (kept for `source()` chains).
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, msg: impl Into<String>) -> Self {
        Error { kind, msg: msg.into(), source: None }
    }
    /// An error caused by `source`; the message should say what failed ("opening x: …").
    pub fn with_source(kind: ErrorKind, msg: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error { kind, msg: msg.into(), source: Some(Box::new(source)) }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, msg)
    }
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, msg)
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn message(&self) -> &str {
        &self.msg
    }
    /// Adds what was being done in front of the message: "opening x: <msg>".
    pub fn context(self, what: impl fmt::Display) -> Self {
        Error { kind: self.kind, msg: format!("{what}: {}", self.msg), source: self.source }
    }
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::Invalid => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Unavailable => 503,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
        }
    }
    /// Exit codes follow sysexits where one fits.
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::Invalid => 2,
            ErrorKind::Unauthenticated | ErrorKind::Forbidden => 77,
            ErrorKind::NotFound => 66,
            ErrorKind::Conflict => 75,
            ErrorKind::Unavailable => 69,
            ErrorKind::RateLimited => 75,
            ErrorKind::Internal => 70,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A task or blocking job that panicked or was cancelled. Prefer [`blocking`], which
/// names the work.
impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        let what = if e.is_panic() { "panicked" } else { "was cancelled" };
        Error::with_source(ErrorKind::Internal, format!("a background job {what}"), e)
    }
}

/// Runs blocking work (`what`: what it does, for the error) on tokio's blocking pool.
/// A panic in it becomes an internal error naming the work.
pub async fn blocking<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::from(e).context(what))
}

/// Attaches a description of what was being done to any error.
pub trait ResultExt<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> ResultExt<T> for std::result::Result<T, std::io::Error> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
                _ => ErrorKind::Internal,
            };
            Error::with_source(kind, format!("{what}: {e}"), e)
        })
    }
}
