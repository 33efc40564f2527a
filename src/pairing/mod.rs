//! Pairing protocol v1 (SPEC): payloads, proofs, sealing; pure, no I/O.
