//! The node's persistent Ed25519 identity.

use std::fs;
use std::io::Write;
use std::path::Path;

use libp2p::identity::Keypair;

use crate::MeshError;

/// Loads the keypair at `path`, or creates one (file mode 0600) if there is none.
///
/// The same file gives the same peer id after every restart.
pub fn load_or_create(path: &Path) -> Result<Keypair, MeshError> {
    if path.exists() {
        let bytes = fs::read(path).map_err(|e| MeshError::Identity(format!("reading {}: {e}", path.display())))?;
        return Keypair::from_protobuf_encoding(&bytes)
            .map_err(|e| MeshError::Identity(format!("{} is not a valid identity key: {e}", path.display())));
    }
    let key = Keypair::generate_ed25519();
    let bytes = key.to_protobuf_encoding().map_err(|e| MeshError::Identity(e.to_string()))?;
    write_private(path, &bytes).map_err(|e| MeshError::Identity(format!("writing {}: {e}", path.display())))?;
    Ok(key)
}

/// Writes `bytes` to `path` readable by the owner only, atomically (temp file, fsync, rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_identity_after_reload_and_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let a = load_or_create(&path).unwrap();
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        fs::write(&path, b"garbage").unwrap();
        assert!(matches!(load_or_create(&path), Err(MeshError::Identity(_))));
    }
}
