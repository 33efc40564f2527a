//! homehub: a local-first home hub.
//!
//! Map of the crate (see ARCHITECTURE.md for the invariants):
//!
//! - [`clock`]: the one clock (wall and monotonic time), a test clock, `now_ms` and `rfc3339`.
//! - [`config`]: the TOML configuration, parsed and validated; names the key that is wrong.
//! - [`store`]: the one SQLite file; the only module that imports rusqlite.
//! - [`camera`]: one GStreamer pipeline per camera (ingest, decode, segment files); the
//!   only hub module that imports gstreamer.
//! - [`events`]: motion events from frames: detector per camera, post-roll, clips, thumbnails.
//! - [`motion`]: the motion detector on small grey frames; pure, no I/O.
//! - [`recorder`]: turns closed segment files into rows (files before rows), recovery
//!   after a crash, retention.
//! - [`web`]: HTTPS server, sessions, the JSON API and `/metrics`; it reads the other
//!   subsystems through narrow ports and nothing reaches back into it.
//! - [`hub`]: `run(cfg, shutdown, ready)`: start-up and ordered tear-down of all of the
//!   above, every thread and task joined before it returns.
//! - [`cloud`]: what may leave the LAN, and only as ciphertext: owner keys, padding,
//!   age encryption, the bucket, the persistent upload queue and its relay task, the
//!   encrypted index and `cloud list/get`.
//! - [`mqtt`]: the broker edge: an authorising front end (TLS, topic grants, CONNACK
//!   codes, revocation) before an embedded rumqttd on loopback.
//! - [`devices`]: broker logins and grants, pairing, paired devices, Home Assistant discovery.
//! - [`pairing`]: the pairing protocol's wire types and checks; pure.
//! - [`mdns`]: advertising the hub and browsing for devices and cameras.
//! - [`cli`]: the admin subcommands (`user`, `mqtt-user`, `device`, `keys`, `discover`,
//!   `doctor`, `demo`).
//! - [`camsim`]: the simulated camera (`homehub-camsim`), not part of the hub.
//! - [`lan`]: what counts as the home network (one `is_lan`).
//! - [`limits`]: the descriptor budget and reserve, per-address connection caps, shared by
//!   every listener.
//! - [`secrets`]: the seal key for secrets the hub must read back (TOTP, the store's key).
//! - [`shutdown`]: the one stop signal, for threads and tasks alike.
//! - [`sync`]: the one policy for poisoned locks.
//! - [`error`]: the one error type, with a kind that maps to an HTTP status and an exit code.

pub mod camera;
pub mod camsim;
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod config;
pub mod devices;
pub mod error;
pub mod events;
pub mod fmp4;
pub mod hub;
pub mod lan;
pub mod limits;
pub mod mdns;
pub mod motion;
pub mod mqtt;
pub mod pairing;
pub mod recorder;
pub mod secrets;
pub mod shutdown;
pub mod store;
pub mod sync;
pub mod web;

pub use error::{Error, ErrorKind, Result};
