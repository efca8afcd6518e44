//! Node identity as the core sees it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The prefix that turns a raw Ed25519 public key into the bytes of a libp2p `PeerId`:
/// an identity multihash (code 0, length 36) of the protobuf `PublicKey { type: Ed25519, data }`.
const PEER_ID_PREFIX: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

/// A node's stable identity: its Ed25519 public key.
///
/// The core does not depend on libp2p, but `Display` prints exactly what libp2p prints for the
/// same key (`12D3KooW…`), so ids in logs, the API and multiaddrs agree.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The bytes of the libp2p `PeerId` for this key.
    pub fn to_peer_id_bytes(&self) -> [u8; 38] {
        let mut out = [0u8; 38];
        out[..6].copy_from_slice(&PEER_ID_PREFIX);
        out[6..].copy_from_slice(&self.0);
        out
    }

    /// Parses the bytes of a libp2p `PeerId`; `None` unless it is an inline Ed25519 key.
    pub fn from_peer_id_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != 38 || bytes[..6] != PEER_ID_PREFIX {
            return None;
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[6..]);
        Some(NodeId(key))
    }

    /// Parses the base58 text form (`12D3KooW…`).
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = bs58::decode(text).into_vec().ok()?;
        Self::from_peer_id_bytes(&bytes)
    }

    /// The first characters of the text form after the common `12D3KooW` prefix, for tables.
    pub fn short(&self) -> String {
        let full = self.to_string();
        full.chars().skip(8).take(8).collect()
    }

    /// A cheap, stable 64-bit fingerprint of the key, used in digests.
    pub(crate) fn fingerprint(&self) -> u64 {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in self.0 {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.to_peer_id_bytes()).into_string())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_libp2p_prefix() {
        let id = NodeId([7u8; 32]);
        let text = id.to_string();
        assert!(text.starts_with("12D3KooW"), "{text}");
        assert_eq!(NodeId::parse(&text), Some(id));
        assert_eq!(NodeId::parse("not-an-id"), None);
        assert_eq!(NodeId::from_peer_id_bytes(&[0u8; 38]), None);
    }
}
