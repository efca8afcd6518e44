//! Keeping the data dir private: objects, modules and actor state are the cluster's data,
//! and a local user who is not the agent must not read them (issue 17).
//!
//! Two layers: the agent sets its umask to `077` before it creates anything, so every folder
//! it (or wasmtime, or the store) makes is `0700` and every file `0600`; and at start it
//! tightens what an older version left group- or world-readable, saying how many entries it
//! changed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::sys::stat::{Mode, umask};

/// How deep the walk goes (the data dir's layout is a few levels deep; a link farm or a
/// mistaken `--data-dir /` must not make start-up walk a whole disk).
const DEPTH_MAX: usize = 6;
/// At most this many entries are examined.
const ENTRIES_MAX: usize = 2_000_000;

/// Files and folders created from now on are private to this user.
pub fn private_umask() {
    umask(Mode::from_bits_truncate(0o077));
}

/// Removes group and other permissions under `dir` (folders `0700`, files `0600` at most),
/// without following symbolic links; returns how many entries it changed.
pub fn tighten(dir: &Path) -> usize {
    let mut changed = 0;
    let mut seen = 0;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    while let Some((path, depth)) = stack.pop() {
        seen += 1;
        if seen > ENTRIES_MAX {
            tracing::warn!(dir = %dir.display(), "the data dir has more than {ENTRIES_MAX} entries; stopped tightening permissions");
            break;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            match fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o700)) {
                Ok(()) => changed += 1,
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot make this data-dir entry private"),
            }
        }
        if meta.is_dir()
            && depth < DEPTH_MAX
            && let Ok(entries) = fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| (e.path(), depth + 1)));
        }
    }
    changed
}

/// Warns if a secret file can be read by others than its owner.
pub fn warn_if_readable(path: &Path, what: &str) -> bool {
    let Ok(meta) = fs::metadata(path) else { return false };
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return false;
    }
    tracing::warn!(
        path = %path.display(),
        mode = format!("{:o}", mode & 0o777),
        "the {what} is readable by other users: anyone who reads it can join the mesh (fix: chmod 600 {})",
        path.display()
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightening_removes_group_and_other_bits_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("data");
        fs::create_dir_all(root.join("objects/sub")).unwrap();
        fs::write(root.join("objects/sub/a.log"), b"x").unwrap();
        fs::write(root.join("key"), b"k").unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"o").unwrap();
        fs::set_permissions(&outside, fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        for p in ["", "objects", "objects/sub"] {
            fs::set_permissions(root.join(p), fs::Permissions::from_mode(0o755)).unwrap();
        }
        for p in ["objects/sub/a.log", "key"] {
            fs::set_permissions(root.join(p), fs::Permissions::from_mode(0o664)).unwrap();
        }
        assert_eq!(tighten(&root), 5);
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!([mode(""), mode("objects"), mode("objects/sub")], [0o700; 3]);
        assert_eq!([mode("objects/sub/a.log"), mode("key")], [0o600; 2]);
        assert_eq!(fs::metadata(&outside).unwrap().permissions().mode() & 0o777, 0o644, "links are not followed");
        assert_eq!(tighten(&root), 0, "idempotent");
        assert!(warn_if_readable(&outside, "cluster key"));
        assert!(!warn_if_readable(&root.join("key"), "cluster key"));
    }
}
