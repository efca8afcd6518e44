//! Reading a function package from disk: a directory holding `liquid.toml` (whose `module`
//! names the Wasm file) or a bare `.wasm`/`.wat` file with a default manifest.

use std::path::Path;

use crate::manifest::{Manifest, ManifestError};

/// Why a package could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A file could not be read.
    #[error("{what} {path}: {source}")]
    Read {
        /// What it was.
        what: &'static str,
        /// Its path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The manifest is invalid.
    #[error("{path}: {source}")]
    Manifest {
        /// The manifest's path.
        path: String,
        /// What is wrong.
        source: ManifestError,
    },
}

/// Reads the manifest and module bytes a deploy names; `name` overrides the manifest's name.
pub fn load(path: &Path, name: Option<&str>) -> Result<(Manifest, Vec<u8>), PackageError> {
    let (mut manifest, module) = if path.is_dir() {
        let toml_path = path.join("liquid.toml");
        let text = std::fs::read_to_string(&toml_path).map_err(|source| PackageError::Read {
            what: "the manifest",
            path: toml_path.display().to_string(),
            source,
        })?;
        let m = Manifest::from_toml(&text)
            .map_err(|source| PackageError::Manifest { path: toml_path.display().to_string(), source })?;
        let module = match &m.module {
            Some(file) => path.join(file),
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
    manifest.validate().map_err(|source| PackageError::Manifest { path: path.display().to_string(), source })?;
    let bytes = std::fs::read(&module).map_err(|source| PackageError::Read {
        what: "the module (build the examples with scripts/build-guests.sh)",
        path: module.display().to_string(),
        source,
    })?;
    Ok((manifest, bytes))
}
