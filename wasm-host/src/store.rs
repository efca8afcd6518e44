//! Modules and compiled artifacts on disk, and compiled modules in memory.
//!
//! `DIR/modules/<hash>.wasm` holds module bytes (checked against their hash when read);
//! `DIR/artifacts/<engine fingerprint>/<hash>.cwasm` holds wasmtime's compiled code, so a
//! restart or a second use does not compile again, and another wasmtime version or CPU
//! compiles afresh instead of loading code it cannot run.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::manifest::{Manifest, ModuleHash};
use crate::runtime::{Compiled, ModuleError, Runtime};

/// Where a compiled module came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Already in memory.
    Warm,
    /// Loaded from the artifact cache on disk.
    Artifact,
    /// Compiled from the module bytes.
    Compiled,
}

/// The module and artifact cache.
pub struct ModuleStore {
    modules: PathBuf,
    artifacts: PathBuf,
    runtime: Arc<Runtime>,
    compiled: Mutex<HashMap<ModuleHash, Arc<Compiled>>>,
}

impl ModuleStore {
    /// Opens (creating) the cache under `dir`.
    pub fn open(dir: &Path, runtime: Arc<Runtime>) -> std::io::Result<ModuleStore> {
        let modules = dir.join("modules");
        let artifacts = dir.join("artifacts").join(runtime.fingerprint());
        std::fs::create_dir_all(&modules)?;
        std::fs::create_dir_all(&artifacts)?;
        Ok(ModuleStore { modules, artifacts, runtime, compiled: Mutex::new(HashMap::new()) })
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    fn module_path(&self, hash: &ModuleHash) -> PathBuf {
        self.modules.join(format!("{}.wasm", hash.to_hex()))
    }

    /// Is this module on disk?
    pub fn has(&self, hash: &ModuleHash) -> bool {
        self.module_path(hash).exists()
    }

    /// Stores module bytes durably (write, fsync, rename) and returns their hash.
    pub fn put(&self, bytes: &[u8]) -> std::io::Result<ModuleHash> {
        let hash = ModuleHash::of(bytes);
        let path = self.module_path(&hash);
        if !path.exists() {
            write_atomic(&path, bytes)?;
        }
        Ok(hash)
    }

    /// The module's bytes, if present and intact (a damaged file is removed and reported
    /// missing, so it is fetched again).
    pub fn get(&self, hash: &ModuleHash) -> std::io::Result<Option<Vec<u8>>> {
        let path = self.module_path(hash);
        match std::fs::read(&path) {
            Ok(bytes) if ModuleHash::of(&bytes) == *hash => Ok(Some(bytes)),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "a cached module does not match its hash: removed");
                let _ = std::fs::remove_file(&path);
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The compiled module: from memory, else the artifact cache, else compiled from the
    /// module bytes on disk (`Ok(None)` if they are not here: fetch them first).
    pub fn load(&self, hash: &ModuleHash, manifest: &Manifest) -> Result<Option<(Arc<Compiled>, Source)>, ModuleError> {
        if let Some(c) = self.compiled.lock().map_err(|_| poisoned())?.get(hash) {
            return Ok(Some((c.clone(), Source::Warm)));
        }
        let artifact = self.artifacts.join(format!("{}.cwasm", hash.to_hex()));
        let (compiled, source) = match std::fs::read(&artifact) {
            Ok(bytes) => match self.runtime.load_artifact(&bytes, *hash, manifest) {
                Ok(c) => (c, Source::Artifact),
                Err(e) => {
                    tracing::warn!(error = %e, path = %artifact.display(), "ignoring an unusable compiled artifact");
                    match self.compile_from_disk(hash, manifest, &artifact)? {
                        Some(c) => (c, Source::Compiled),
                        None => return Ok(None),
                    }
                }
            },
            Err(_) => match self.compile_from_disk(hash, manifest, &artifact)? {
                Some(c) => (c, Source::Compiled),
                None => return Ok(None),
            },
        };
        let compiled = Arc::new(compiled);
        self.compiled.lock().map_err(|_| poisoned())?.insert(*hash, compiled.clone());
        Ok(Some((compiled, source)))
    }

    fn compile_from_disk(
        &self,
        hash: &ModuleHash,
        manifest: &Manifest,
        artifact: &Path,
    ) -> Result<Option<Compiled>, ModuleError> {
        let Some(bytes) = self.get(hash).map_err(|e| ModuleError::Artifact(e.to_string()))? else {
            return Ok(None);
        };
        let compiled = self.runtime.compile(&bytes, manifest)?;
        match compiled.serialize() {
            Ok(code) => {
                if let Err(e) = write_atomic(artifact, &code) {
                    tracing::warn!(error = %e, "could not cache a compiled artifact; the next start compiles again");
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not serialize a compiled module"),
        }
        Ok(Some(compiled))
    }

    /// Validates and compiles a module being deployed, then stores its bytes and compiled
    /// artifact durably and keeps it warm. Nothing is stored if it is refused.
    pub fn install(&self, bytes: &[u8], manifest: &Manifest) -> Result<ModuleHash, ModuleError> {
        let compiled = self.runtime.compile(bytes, manifest)?;
        let hash = compiled.hash();
        let io = |e: std::io::Error| ModuleError::Artifact(format!("storing the module: {e}"));
        self.put(bytes).map_err(io)?;
        let code = compiled.serialize()?;
        write_atomic(&self.artifacts.join(format!("{}.cwasm", hash.to_hex())), &code).map_err(io)?;
        self.compiled.lock().map_err(|_| poisoned())?.insert(hash, Arc::new(compiled));
        Ok(hash)
    }

    /// Drops the in-memory compiled module (after `fn rm`); files stay for a redeploy.
    pub fn forget(&self, hash: &ModuleHash) {
        if let Ok(mut m) = self.compiled.lock() {
            m.remove(hash);
        }
    }
}

fn poisoned() -> ModuleError {
    ModuleError::Artifact("the module cache lock was poisoned by a panic".into())
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the whole new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
