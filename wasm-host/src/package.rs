//! Reading a function package from disk: a directory holding `liquid.toml` (whose `module`
//! names the Wasm file) or a bare `.wasm`/`.wat` file with a default manifest.

use std::path::Path;

use crate::manifest::{Manifest, ManifestError};

/// Why a package could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A file could not be read.
    #[error("{what} {path}: {error}")]
    Read {
        /// What it was.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why. (Not a `source`: the message already says it, and `{:#}` would say it twice.)
        error: std::io::Error,
    },
    /// The manifest's `module` leaves the package's folder.
    #[error(
        "{manifest}: module = {module:?} must name a file inside the package's folder (a relative path without `..`)"
    )]
    Outside {
        /// The manifest's path.
        manifest: String,
        /// The refused `module` value.
        module: String,
    },
    /// The manifest is invalid.
    #[error("{path}: {error}")]
    Manifest {
        /// The manifest's path.
        path: String,
        /// What is wrong (in the message, not a `source`, for the same reason).
        error: ManifestError,
    },
}

/// Reads the manifest and module bytes a deploy names; `name` overrides the manifest's name.
pub fn load(path: &Path, name: Option<&str>) -> Result<(Manifest, Vec<u8>), PackageError> {
    let (mut manifest, module) = if path.is_dir() {
        let toml_path = path.join("liquid.toml");
        let text = std::fs::read_to_string(&toml_path).map_err(|error| PackageError::Read {
            what: "the manifest",
            path: toml_path.display().to_string(),
            error,
        })?;
        let m = Manifest::from_toml(&text)
            .map_err(|error| PackageError::Manifest { path: toml_path.display().to_string(), error })?;
        let module = match &m.module {
            Some(file) => inside(path, file).ok_or_else(|| PackageError::Outside {
                manifest: toml_path.display().to_string(),
                module: file.clone(),
            })?,
            None => path.join(format!("{}.wasm", m.name)),
        };
        (m, module)
    } else {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("function");
        (Manifest::for_module(name.unwrap_or(stem)), path.to_path_buf())
    };
    if let Some(n) = name {
        manifest.name = n.to_string();
    }
    manifest.validate().map_err(|error| PackageError::Manifest { path: path.display().to_string(), error })?;
    let bytes = std::fs::read(&module).map_err(|error| PackageError::Read {
        what: "the module (build the examples with scripts/build-guests.sh)",
        path: module.display().to_string(),
        error,
    })?;
    Ok((manifest, bytes))
}

/// `dir/file` if `file` is a relative path of plain names that, links resolved, stays in `dir`.
fn inside(dir: &Path, file: &str) -> Option<std::path::PathBuf> {
    use std::path::Component;
    let rel = Path::new(file);
    if file.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return None;
    }
    let joined = dir.join(rel);
    // A link inside the package may still point out of it; a missing file is reported by the
    // read that follows.
    match (joined.canonicalize(), dir.canonicalize()) {
        (Ok(real), Ok(root)) => real.starts_with(&root).then_some(joined),
        _ => Some(joined),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package(module: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg");
        std::fs::create_dir_all(pkg.join("sub")).unwrap();
        std::fs::write(pkg.join("liquid.toml"), format!("name = \"f\"\nkind = \"stateless\"\nmodule = {module:?}\n"))
            .unwrap();
        std::fs::write(pkg.join("sub/f.wasm"), b"\0asm\x01\0\0\0").unwrap();
        std::fs::write(dir.path().join("secret"), b"top secret").unwrap();
        (dir, pkg)
    }

    /// Issue 17: `module = "../../../../etc/passwd"` made the CLI upload that file.
    #[test]
    fn a_module_path_stays_inside_the_package() {
        for bad in ["../secret", "/etc/passwd", "sub/../../secret", ""] {
            let (_d, pkg) = package(bad);
            let e = load(&pkg, None).expect_err(bad);
            assert!(matches!(e, PackageError::Outside { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("inside the package"), "{e}");
        }
        let (d, pkg) = package("sub/link.wasm");
        std::os::unix::fs::symlink(d.path().join("secret"), pkg.join("sub/link.wasm")).unwrap();
        assert!(matches!(load(&pkg, None), Err(PackageError::Outside { .. })), "a link out of the package");
        let (_d, pkg) = package("./sub/f.wasm");
        let (m, bytes) = load(&pkg, None).unwrap();
        assert_eq!((m.name.as_str(), bytes.len()), ("f", 8));
    }
}
