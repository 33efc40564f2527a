//! Everything that leaves the LAN.
//!
//! The promise of homehub is that a full copy of the cloud bucket tells a thief nothing,
//! so this module is the one place where data is prepared to leave the house, and only
//! ciphertext ever does: age v1 files (SPEC "Cloud format (v1)") with padded sizes and no
//! metadata. Once the relay lands, only this module may open outbound connections; that
//! invariant is to be written into ARCHITECTURE.md and enforced then.
//!
//! Submodules (all pure or stream-based so far; no network, no S3 yet):
//!
//! - [`keys`]: new owner identities in the `age-keygen` layout, parsing the configured
//!   recipients, reading identity files (for `cloud get`, never stored by the hub).
//! - [`pad`]: Padmé sizes and padding that keeps the plaintext valid (an MP4 `free` box,
//!   JSON whitespace).
//! - [`seal`]: streaming age encryption to all recipients, and decryption.

pub mod keys;
pub mod pad;
pub mod seal;
