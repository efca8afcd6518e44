//! Durable actor checkpoints: `DATA_DIR/actors/<name>/<epoch>.snap`, one snapshot
//! ([`wasm_host::snapshot`]) per activation epoch, written after every call (write, fsync,
//! rename, fsync the directory) before the call is answered, so an acknowledged state update
//! survives kill -9. A migration streams the newest checkpoint to the target, which stores it
//! under the new epoch.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use wasm_host::runtime::Actor;
use wasm_host::snapshot::{SnapshotError, SnapshotInfo};

/// The checkpoints of every actor on this node.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    root: PathBuf,
}

impl Checkpoints {
    /// Checkpoints under `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Checkpoints> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Checkpoints { root })
    }

    fn dir(&self, actor: &str) -> PathBuf {
        self.root.join(actor)
    }

    /// The file of `actor`'s checkpoint at `epoch`.
    pub fn path(&self, actor: &str, epoch: u64) -> PathBuf {
        self.dir(actor).join(format!("{epoch}.snap"))
    }

    /// The epochs with a checkpoint, ascending.
    pub fn epochs(&self, actor: &str) -> Vec<u64> {
        let mut out: Vec<u64> = fs::read_dir(self.dir(actor))
            .map(|rd| {
                rd.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".snap")?.parse().ok()).collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// The checkpoint a call at `epoch` starts from: the one of `epoch`, else (unless the
    /// activation starts fresh) the newest below it.
    pub fn find(&self, actor: &str, epoch: u64, fresh: bool) -> Option<(u64, PathBuf)> {
        let epochs = self.epochs(actor);
        let e = if epochs.contains(&epoch) {
            epoch
        } else if fresh {
            return None;
        } else {
            *epochs.iter().rev().find(|e| **e < epoch)?
        };
        Some((e, self.path(actor, e)))
    }

    /// Writes `actor`'s snapshot as the checkpoint of `epoch` and drops older epochs.
    pub fn save(&self, name: &str, epoch: u64, actor: &mut Actor) -> Result<SnapshotInfo, SnapshotError> {
        let info = self.write_with(name, epoch, |w| actor.write_snapshot(w))?;
        self.prune(name, epoch);
        Ok(info)
    }

    /// Writes a checkpoint of `epoch` through `fill`, atomically and durably.
    pub fn write_with<T, E: From<io::Error>>(
        &self,
        name: &str,
        epoch: u64,
        fill: impl FnOnce(&mut BufWriter<File>) -> Result<T, E>,
    ) -> Result<T, E> {
        let dir = self.dir(name);
        fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!("{epoch}.snap.tmp"));
        let file = File::create(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        let out = fill(&mut w)?;
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, self.path(name, epoch))?;
        sync_dir(&dir)?;
        Ok(out)
    }

    /// Removes checkpoints older than `epoch`.
    pub fn prune(&self, name: &str, epoch: u64) {
        for e in self.epochs(name).into_iter().filter(|e| *e < epoch) {
            let _ = fs::remove_file(self.path(name, e));
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_checkpoint_at_or_below_an_epoch_is_found() {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let c = Checkpoints::open(tmp.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.find("a", 1, true), None);
        for e in [1, 3] {
            c.write_with::<(), io::Error>("a", e, |w| w.write_all(b"x")).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(c.epochs("a"), vec![1, 3]);
        assert_eq!(c.find("a", 3, true).map(|f| f.0), Some(3));
        assert_eq!(c.find("a", 5, false).map(|f| f.0), Some(3));
        assert_eq!(c.find("a", 5, true), None, "a fresh activation ignores older state");
        assert_eq!(c.find("a", 2, false).map(|f| f.0), Some(1));
        c.prune("a", 3);
        assert_eq!(c.epochs("a"), vec![3]);
    }
}
