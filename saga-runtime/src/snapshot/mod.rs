//! Snapshots (manual section 9): sealing with a SHA-256 checksum and verifying.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::{Error, ErrorKind, Result, SagaId};
use crate::port::Snapshot;

/// When to snapshot and how many to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// Events between snapshots (default 100).
    pub interval: u64,
    /// Snapshots kept per saga (default 5).
    pub max_snapshots: u32,
    /// Seal snapshots with a SHA-256 checksum (default true).
    pub enable_checksum: bool,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            interval: 100,
            max_snapshots: 5,
            enable_checksum: true,
        }
    }
}

/// Hex SHA-256 of `bytes`.
pub fn checksum(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Builds a snapshot of `state` covering events up to `last_event_id`.
pub fn seal(
    saga_id: SagaId,
    last_event_id: u64,
    codec: &str,
    state: Vec<u8>,
    enable_checksum: bool,
    created_at: DateTime<Utc>,
) -> Snapshot {
    let checksum = enable_checksum.then(|| checksum(&state));
    Snapshot {
        saga_id,
        last_event_id,
        codec: codec.to_owned(),
        state,
        checksum,
        created_at,
    }
}

/// Checks a snapshot's checksum (a snapshot without one passes).
pub fn verify(snapshot: &Snapshot) -> Result<()> {
    match &snapshot.checksum {
        Some(expected) => {
            let actual = checksum(&snapshot.state);
            if &actual == expected {
                Ok(())
            } else {
                Err(
                    Error::new(ErrorKind::Snapshot, "snapshot checksum mismatch")
                        .with("saga_id", &snapshot.saga_id)
                        .with("last_event_id", snapshot.last_event_id)
                        .with("expected", expected)
                        .with("actual", actual),
                )
            }
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flipped_byte_fails_verification() {
        let mut s = seal(
            SagaId::new("s"),
            9,
            "json",
            b"{\"a\":1}".to_vec(),
            true,
            Utc::now(),
        );
        verify(&s).unwrap();
        s.state[2] ^= 0x01;
        let err = verify(&s).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Snapshot);
        assert_eq!(err.context("last_event_id"), Some("9"));
    }

    #[test]
    fn checksum_is_sha256_hex() {
        assert_eq!(
            checksum(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
