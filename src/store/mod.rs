//! The one SQLite file, `homehub.db` in the data dir.
//!
//! Owns: the connection, the schema and its upgrades, the data-dir lock, and every SQL
//! statement. It is the only module that imports rusqlite. May not touch: media files
//! (the recorder owns those; the store only records their paths).
//!
//! The connection lives on one dedicated thread. Callers hand it closures over [`Db`]
//! ([`Store::call`] from async code, [`Store::call_blocking`] from threads); the thread
//! runs whatever is queued inside one transaction, each closure in its own savepoint,
//! so a burst of writes costs one fsync (SD cards wear) and one failing job rolls back
//! only itself. A closure's result is delivered after the commit: when a caller hears
//! "ok", the row is durable.
//!
//! Files by concern, each with the `impl Db` block that holds its SQL: `engine` (the
//! thread, batching and savepoints, opening the file, `meta`), `lock` (the data-dir
//! lock), `schema`, `cameras`, `segments` (and the garbage list and retention), `events`,
//! `users` (and sessions), `audit` (bounded, with its rollup), `tokens` (the scrape
//! token), `devices` (pairing, devices, broker users) and `cloud` (the upload queue).

mod audit;
mod cameras;
mod cloud;
mod devices;
mod engine;
mod events;
mod lock;
mod schema;
mod segments;
mod tokens;
mod users;

use engine::db_err;

pub use audit::{AuditRow, RollupRow, cut as audit_cut};
pub use cameras::CameraRow;
pub use cloud::{CloudEvent, NewUpload, Payload, QueueStatus, Upload, UploadKind};
pub use devices::DeviceFence;
pub use devices::{DeviceRow, MqttUserRow, NewDevice, WrongCode};
pub use engine::{DB_FILE, Db, Store};
pub use events::{EventRow, FinishedEvent};
pub use lock::{DirLock, prepare_data_dir};
pub use schema::LATEST_VERSION;
pub use segments::{CameraBytes, Segment, SegmentQuery, SegmentRow, Span, Written, merge_spans};
pub use users::{NewSession, Role, SessionRow, UserRow};
