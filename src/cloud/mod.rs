//! Everything that leaves the LAN.
//!
//! The promise of homehub is that a full copy of the cloud bucket tells a thief nothing,
//! so this module is the one place where data is prepared to leave the house, and only
//! ciphertext ever does: age v1 files (SPEC "Cloud format (v1)") with padded sizes and no
//! metadata. Only this module may open connections beyond the LAN (ARCHITECTURE.md; a
//! test scans the sources for it).
//!
//! Submodules:
//!
//! - [`keys`]: new owner identities in the `age-keygen` layout, parsing the configured
//!   recipients, reading identity files (for `cloud get`, never stored by the hub).
//! - [`pad`]: Padmé sizes and padding that keeps the plaintext valid (an MP4 `free` box,
//!   JSON whitespace).
//! - [`seal`] and [`agefmt`]: streaming age encryption to all recipients, and decryption.
//! - [`remote`]: the bucket (S3-compatible or a local folder) — the only outbound
//!   connection homehub makes (ARCHITECTURE.md, "What may leave the house").
//! - [`relay`]: the persistent upload queue and the task that drains it.
//! - [`index`]: index entries, and reading a bucket back with only the owner's key
//!   (`homehub cloud list/get`).

pub mod agefmt;
pub mod index;
pub mod keys;
pub mod pad;
pub mod relay;
pub mod remote;
pub mod seal;
