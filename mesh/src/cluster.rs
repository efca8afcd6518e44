//! Cluster gating: only nodes holding the same 256-bit secret may join a mesh.
//!
//! The transport (TLS 1.3 on QUIC, Noise on TCP) already proves each side's peer id. On top of
//! it, each side sends `MAC(secret, "liquid-auth-v1" ‖ prover id ‖ verifier id)` (BLAKE3 keyed
//! hash). The proof is bound to both ids, so it cannot be replayed to another node or by
//! another node, and it reveals nothing about the secret. Until a peer's proof has been
//! verified, the mesh delivers nothing from it and sends nothing to it.

use std::fmt;
use std::path::Path;

use libp2p::PeerId;

use crate::MeshError;

const CONTEXT: &[u8] = b"liquid-auth-v1";
const FILE_PREFIX: &str = "liquid-cluster-key-v1:";

/// A cluster secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<secret>)")
    }
}

impl ClusterKey {
    /// A new random secret.
    pub fn generate() -> Self {
        ClusterKey(rand::random())
    }

    /// A key from raw bytes (tests and the simulator).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        ClusterKey(bytes)
    }

    /// Reads a key file written by [`ClusterKey::save`].
    pub fn load(path: &Path) -> Result<Self, MeshError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MeshError::ClusterKey(format!("reading {}: {e}", path.display())))?;
        let hex = text.trim().strip_prefix(FILE_PREFIX).ok_or_else(|| {
            MeshError::ClusterKey(format!(
                "{} is not a cluster key (create one with `liquid cluster init --out FILE`)",
                path.display()
            ))
        })?;
        let mut key = [0u8; 32];
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(MeshError::ClusterKey(format!("{}: the key must be 64 hex digits (0-9, a-f)", path.display())));
        }
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| MeshError::ClusterKey(format!("{}: the key must be hex digits", path.display())))?;
        }
        Ok(ClusterKey(key))
    }

    /// Writes the key to `path`, readable by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), MeshError> {
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        crate::identity::write_private(path, format!("{FILE_PREFIX}{hex}\n").as_bytes())
            .map_err(|e| MeshError::ClusterKey(format!("writing {}: {e}", path.display())))
    }

    /// The proof that `prover` holds this key, addressed to `verifier`.
    pub fn proof(&self, prover: &PeerId, verifier: &PeerId) -> [u8; 32] {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(CONTEXT);
        h.update(&prover.to_bytes());
        h.update(&verifier.to_bytes());
        *h.finalize().as_bytes()
    }

    /// Checks a proof in constant time.
    pub fn verify(&self, prover: &PeerId, verifier: &PeerId, proof: &[u8]) -> bool {
        let Ok(proof) = <[u8; 32]>::try_from(proof) else { return false };
        blake3::Hash::from(self.proof(prover, verifier)) == blake3::Hash::from(proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_bind_both_ids_and_the_key() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let k = ClusterKey::generate();
        let p = k.proof(&a, &b);
        assert!(k.verify(&a, &b, &p));
        assert!(!k.verify(&b, &a, &p));
        assert!(!k.verify(&a, &c, &p));
        assert!(!ClusterKey::generate().verify(&a, &b, &p));
        assert!(!k.verify(&a, &b, &p[..31]));
    }

    #[test]
    fn save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let k = ClusterKey::generate();
        k.save(&path).unwrap();
        assert_eq!(ClusterKey::load(&path).unwrap(), k);
        std::fs::write(&path, "nope").unwrap();
        assert!(ClusterKey::load(&path).is_err());
    }

    /// Issue 17: a key with non-ASCII bytes (64 bytes long, so past the length check) sliced
    /// a multi-byte character in half and panicked the agent.
    #[test]
    fn a_key_with_non_ascii_bytes_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        let hex = format!("é{}", "a".repeat(62));
        assert_eq!(hex.len(), 64);
        std::fs::write(&path, format!("{FILE_PREFIX}{hex}\n")).unwrap();
        let e = ClusterKey::load(&path).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
