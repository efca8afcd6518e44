//! [`FileStore`]: object logs as files in one directory.
//!
//! Durability rules followed here: an append is `write(2)` to a file opened for appending;
//! `sync` is `fdatasync` of every file appended to since the last sync, then `fsync` of the
//! directory if a file was created (so the new name survives a crash too). Compaction writes
//! `<file>.tmp`, fsyncs it, renames it over the log and fsyncs the directory. The handles of
//! files awaiting a sync stay open until it (so a writeback error reaches our `fsync`); at
//! most [`DIRTY_FILES_MAX`] of them, beyond which an early sync happens.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::log::{self, Parsed};
use super::{Log, LogStats, Store, StoreError};
use crate::object::ObjectName;

/// The most files with unsynced appends; one more triggers an early [`Store::sync`].
pub const DIRTY_FILES_MAX: usize = 1024;

/// Object logs in a directory (the data dir's `objects/`).
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    dirty: BTreeMap<ObjectName, File>,
    dir_dirty: bool,
    stats: BTreeMap<ObjectName, LogStats>,
    torn: BTreeSet<ObjectName>,
    unix_clock: fn() -> u64,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io { op, path: path.to_owned(), source }
}

impl FileStore {
    /// Opens (creating) the store in `dir`, and deletes compaction leftovers (`*.tmp`)
    /// from a crash.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        for entry in fs::read_dir(&dir).map_err(io("list", &dir))? {
            let path = entry.map_err(io("list", &dir))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&path).map_err(io("remove leftover", &path))?;
            }
        }
        Ok(FileStore {
            dir,
            dirty: BTreeMap::new(),
            dir_dirty: false,
            stats: BTreeMap::new(),
            torn: BTreeSet::new(),
            unix_clock: || 0,
        })
    }

    /// Sets the clock (seconds since the Unix epoch) that names the copies of damaged logs
    /// (`<file>.corrupt-<seconds>`). Without one they are numbered from 0.
    pub fn with_unix_clock(mut self, clock: fn() -> u64) -> Self {
        self.unix_clock = clock;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file holding `name`'s log.
    pub fn path(&self, name: &ObjectName) -> PathBuf {
        let hash = blake3::hash(name.as_str().as_bytes());
        self.dir.join(format!("{}.log", hex::encode(&hash.as_bytes()[..16])))
    }

    /// Writes `bytes` durably to `path` through a temporary file and a rename.
    fn replace(&mut self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = path.with_extension("tmp");
        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io("write", &tmp))?;
        drop(file);
        fs::rename(&tmp, path).map_err(io("rename over", path))?;
        self.sync_dir()
    }

    /// Copies a damaged log's bytes to a new file beside it, durably, and returns its path.
    fn keep_aside(&mut self, path: &Path, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        let stamp = (self.unix_clock)();
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for n in 0..u64::from(u16::MAX) {
            let suffix = if n == 0 { String::new() } else { format!("-{n}") };
            let kept = self.dir.join(format!("{file_name}.corrupt-{stamp}{suffix}"));
            let mut file = match OpenOptions::new().write(true).create_new(true).open(&kept) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("create", &kept)(e)),
            };
            file.write_all(bytes).and_then(|()| file.sync_all()).map_err(io("write", &kept))?;
            self.sync_dir()?;
            return Ok(kept);
        }
        Err(io("create", path)(io::Error::other("too many kept copies of this damaged log; remove old ones")))
    }

    /// The copies of `name`'s log kept aside because it was damaged, sorted.
    pub fn kept(&self, name: &ObjectName) -> Result<Vec<PathBuf>, StoreError> {
        let path = self.path(name);
        let prefix = format!("{}.corrupt-", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        let mut kept = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("list", &self.dir))? {
            let entry = entry.map_err(io("list", &self.dir))?;
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                kept.push(entry.path());
            }
        }
        kept.sort();
        Ok(kept)
    }

    fn sync_dir(&mut self) -> Result<(), StoreError> {
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io("fsync directory", &self.dir))?;
        self.dir_dirty = false;
        Ok(())
    }

    /// Opens `name`'s log for appending if it is not open yet, creating it or checking it
    /// (and cutting a torn tail) first.
    fn open_log(&mut self, name: &ObjectName) -> Result<(), StoreError> {
        if self.torn.remove(name) {
            // An append failed half-way and could not be undone: make what came before it
            // durable, then re-read the log, which cuts the partial record off.
            if let Some(file) = self.dirty.remove(name) {
                file.sync_data().map_err(io("fsync", &self.path(name)))?;
            }
            self.stats.remove(name);
        }
        if self.dirty.contains_key(name) {
            return Ok(());
        }
        if self.dirty.len() >= DIRTY_FILES_MAX {
            self.sync()?;
        }
        let path = self.path(name);
        let loaded = if self.stats.contains_key(name) { None } else { Some(self.load(name)?) };
        if let Some(Some(Log { damage: Some(d), .. })) = &loaded {
            // Found on a write rather than at start: the records kept are on disk, not in the
            // caller's document (it did not load them); they come back at the next restore.
            tracing::error!(object = %name, kept = %d.kept.display(), offset = d.offset(), lost_bytes = d.lost_bytes(), "an object log is damaged: kept the damaged file and rewrote the log from the records that verify");
        }
        if matches!(loaded, Some(None)) {
            let header = log::header(name);
            fs::write(&path, &header).map_err(io("create", &path))?;
            let len = header.len() as u64;
            self.stats.insert(name.clone(), LogStats { bytes: len, base_bytes: len, records: 1 });
            self.dir_dirty = true;
        }
        let file = OpenOptions::new().append(true).open(&path).map_err(io("open", &path))?;
        self.dirty.insert(name.clone(), file);
        Ok(())
    }
}

impl Store for FileStore {
    fn append(&mut self, name: &ObjectName, changes: &[u8]) -> Result<(), StoreError> {
        let mut rec = Vec::with_capacity(changes.len() + log::OVERHEAD);
        log::record(log::CHANGES, changes, &mut rec)?;
        self.open_log(name)?;
        let path = self.path(name);
        let (Some(file), Some(stats)) = (self.dirty.get_mut(name), self.stats.get_mut(name)) else {
            return Err(io("open", &path)(io::Error::other("log not open after opening it")));
        };
        if let Err(e) = file.write_all(&rec) {
            // Cut the partial record off, or later records would hide behind it. The handle
            // stays dirty: earlier appends still need their fsync.
            if file.set_len(stats.bytes).is_err() {
                self.torn.insert(name.clone());
            }
            return Err(io("append to", &path)(e));
        }
        stats.bytes += rec.len() as u64;
        stats.records += 1;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let names: Vec<ObjectName> = self.dirty.keys().cloned().collect();
        for name in names {
            if let Some(file) = self.dirty.get(&name) {
                file.sync_data().map_err(io("fsync", &self.path(&name)))?;
            }
            self.dirty.remove(&name);
        }
        if self.dir_dirty {
            self.sync_dir()?;
        }
        Ok(())
    }

    fn compact(&mut self, name: &ObjectName, snapshot: &[u8]) -> Result<(), StoreError> {
        let image = log::image(name, snapshot)?;
        let path = self.path(name);
        self.replace(&path, &image)?;
        self.dirty.remove(name); // the old file is gone; its unsynced appends are in the snapshot
        self.torn.remove(name);
        let len = image.len() as u64;
        self.stats.insert(name.clone(), LogStats { bytes: len, base_bytes: len, records: 2 });
        Ok(())
    }

    fn load(&mut self, name: &ObjectName) -> Result<Option<Log>, StoreError> {
        let path = self.path(name);
        if let Some(file) = self.dirty.remove(name) {
            file.sync_data().map_err(io("fsync", &path))?;
        }
        self.torn.remove(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.stats.remove(name);
                return Ok(None);
            }
            Err(e) => return Err(io("read", &path)(e)),
        };
        match log::parse(&bytes, name, &path)? {
            Parsed::Unborn => {
                tracing::warn!(object = %name, path = %path.display(), "removing an object log whose creation never completed");
                self.dirty.remove(name);
                self.stats.remove(name);
                fs::remove_file(&path).map_err(io("remove", &path))?;
                self.sync_dir()?;
                Ok(None)
            }
            Parsed::Log { mut log, valid_len, spans } => {
                if let Some(damage) = &mut log.damage {
                    // Never cut: keep the damaged file, then rewrite the log from what verifies.
                    damage.kept = self.keep_aside(&path, &bytes)?;
                    self.replace(&path, &log::salvaged(name, &bytes, &spans))?;
                } else if valid_len < bytes.len() {
                    let f = OpenOptions::new().write(true).open(&path).map_err(io("open", &path))?;
                    f.set_len(valid_len as u64)
                        .and_then(|()| f.sync_all())
                        .map_err(io("truncate torn tail of", &path))?;
                }
                self.stats.insert(name.clone(), log.stats);
                Ok(Some(log))
            }
        }
    }

    fn remove(&mut self, name: &ObjectName) -> Result<(), StoreError> {
        let path = self.path(name);
        self.dirty.remove(name);
        self.stats.remove(name);
        self.torn.remove(name);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove", &path)(e)),
        }
    }

    fn list(&mut self) -> Result<Vec<ObjectName>, StoreError> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("list", &self.dir))? {
            let path = entry.map_err(io("list", &self.dir))?.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let mut head = Vec::with_capacity(512);
            let read = File::open(&path).and_then(|f| f.take(512).read_to_end(&mut head));
            match read {
                // A name whose record is damaged still counts if it hashes to the file name.
                Ok(_) => {
                    match log::name(&head).into_iter().chain(log::name_candidates(&head)).find(|n| self.path(n) == path)
                    {
                        Some(n) => names.push(n),
                        None if head.len() > log::MAGIC.len() => {
                            tracing::warn!(path = %path.display(), "ignoring an object log whose name record is unreadable (its creation never completed, or it is damaged: then inspect it and move it away)");
                        }
                        None => {}
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("read", &path)(e)),
            }
        }
        names.sort();
        Ok(names)
    }

    fn stats(&self, name: &ObjectName) -> Option<LogStats> {
        self.stats.get(name).copied()
    }
}
