//! [`SimStore`]: an in-memory store with a simulated disk, for the simulator and tests.
//!
//! It keeps two images of every log, in the same byte format as the files of
//! [`FileStore`](super::FileStore): the *live* image (what reads see) and the *durable* one
//! (what survives a crash). `append` changes the live image; `sync` copies it to the durable
//! one; `compact` and `remove` change both at once, as their file versions are durable when
//! they return. [`SimStore::crash`] throws the live images away, losing exactly the writes
//! not synced; [`SimStore::crash_torn`] also keeps a prefix of each unsynced tail, like a
//! disk that wrote part of an append, so recovery has torn tails to drop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::log::{self, Parsed};
use super::{Log, LogStats, Store, StoreError};
use crate::object::ObjectName;

/// An in-memory store whose crash loses what was not synced.
#[derive(Debug, Default, Clone)]
pub struct SimStore {
    live: BTreeMap<ObjectName, Vec<u8>>,
    durable: BTreeMap<ObjectName, Vec<u8>>,
    dirty: BTreeSet<ObjectName>,
    stats: BTreeMap<ObjectName, LogStats>,
    syncs: u64,
    kept: BTreeMap<PathBuf, Vec<u8>>,
}

impl SimStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates a crash: every write not synced is lost, and the in-memory bookkeeping of
    /// the crashed process is forgotten.
    pub fn crash(&mut self) {
        self.crash_torn(|_, _| 0);
    }

    /// Simulates a crash in the middle of writing: for each log with unsynced bytes, `keep`
    /// (given the name and the number of unsynced bytes) says how many of them reached the
    /// disk anyway (clamped). Drive it from the simulator's seeded RNG.
    pub fn crash_torn(&mut self, mut keep: impl FnMut(&ObjectName, usize) -> usize) {
        for name in std::mem::take(&mut self.dirty) {
            let Some(live) = self.live.get(&name) else { continue };
            let synced = self.durable.get(&name).map_or(0, Vec::len);
            let unsynced = live.len().saturating_sub(synced);
            let kept = keep(&name, unsynced).min(unsynced);
            if kept > 0 {
                let image = live[..synced + kept].to_vec();
                self.durable.insert(name, image);
            }
        }
        self.live = self.durable.clone();
        self.stats.clear();
    }

    /// How many times [`Store::sync`] was called.
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    /// The total size of the durable images, in bytes.
    pub fn durable_bytes(&self) -> u64 {
        self.durable.values().map(|v| v.len() as u64).sum()
    }

    /// The durable image of one log, in the on-disk format (for tests and fault injection).
    pub fn durable_image(&self, name: &ObjectName) -> Option<&[u8]> {
        self.durable.get(name).map(Vec::as_slice)
    }

    /// Overwrites byte `offset` of `name`'s log, in both images (a disk that damaged durable
    /// bytes); `false` if there is no such byte.
    pub fn damage(&mut self, name: &ObjectName, offset: usize, byte: u8) -> bool {
        let mut hit = false;
        for image in [self.live.get_mut(name), self.durable.get_mut(name)].into_iter().flatten() {
            if let Some(b) = image.get_mut(offset) {
                *b = byte;
                hit = true;
            }
        }
        self.stats.remove(name);
        hit
    }

    /// Installs `image` as `name`'s whole log, durable, whatever its bytes (a disk that holds
    /// anything at all: for fuzzing the decoder at memory speed, and for tests).
    pub fn put_image(&mut self, name: &ObjectName, image: Vec<u8>) {
        self.live.insert(name.clone(), image.clone());
        self.durable.insert(name.clone(), image);
        self.dirty.remove(name);
        self.stats.remove(name);
    }

    /// The document in `name`'s live log as a restore would read it (intact records only),
    /// without changing the store: for checkers that look at a node's cold objects.
    pub fn read(&self, name: &ObjectName, actor: automerge::ActorId) -> Option<crate::Document> {
        let bytes = self.live.get(name)?;
        let Ok(Parsed::Log { log, .. }) = log::parse(bytes, name, &Self::path(name)) else { return None };
        crate::Document::load(actor, log.chunks.iter().map(Vec::as_slice)).ok()
    }

    /// The copies of damaged logs kept aside, by path.
    pub fn kept(&self) -> &BTreeMap<PathBuf, Vec<u8>> {
        &self.kept
    }

    fn path(name: &ObjectName) -> PathBuf {
        PathBuf::from(format!("sim:{name}"))
    }
}

impl Store for SimStore {
    fn append(&mut self, name: &ObjectName, changes: &[u8]) -> Result<(), StoreError> {
        let mut rec = Vec::with_capacity(changes.len() + log::OVERHEAD);
        log::record(log::CHANGES, changes, &mut rec)?;
        if !self.stats.contains_key(name) && self.load(name)?.is_none() {
            let header = log::header(name);
            let len = header.len() as u64;
            self.live.insert(name.clone(), header);
            self.stats.insert(name.clone(), LogStats { bytes: len, base_bytes: len, records: 1 });
        }
        let image = self.live.entry(name.clone()).or_default();
        image.extend_from_slice(&rec);
        let stats = self.stats.entry(name.clone()).or_default();
        stats.bytes = image.len() as u64;
        stats.records += 1;
        self.dirty.insert(name.clone());
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.syncs += 1;
        for name in std::mem::take(&mut self.dirty) {
            if let Some(image) = self.live.get(&name) {
                self.durable.insert(name, image.clone());
            }
        }
        Ok(())
    }

    fn compact(&mut self, name: &ObjectName, snapshot: &[u8]) -> Result<(), StoreError> {
        let image = log::image(name, snapshot)?;
        let len = image.len() as u64;
        self.live.insert(name.clone(), image.clone());
        self.durable.insert(name.clone(), image);
        self.dirty.remove(name);
        self.stats.insert(name.clone(), LogStats { bytes: len, base_bytes: len, records: 2 });
        Ok(())
    }

    fn load(&mut self, name: &ObjectName) -> Result<Option<Log>, StoreError> {
        let Some(bytes) = self.live.get(name) else {
            self.stats.remove(name);
            return Ok(None);
        };
        let bytes = bytes.clone();
        match log::parse(&bytes, name, &Self::path(name))? {
            Parsed::Unborn => {
                self.live.remove(name);
                self.durable.remove(name);
                self.dirty.remove(name);
                self.stats.remove(name);
                Ok(None)
            }
            Parsed::Log { mut log, valid_len, spans } => {
                if let Some(damage) = &mut log.damage {
                    // Like the file store: keep the damaged image, rewrite the log (durably).
                    let kept = PathBuf::from(format!("sim:{name}.corrupt-{}", self.kept.len()));
                    self.kept.insert(kept.clone(), bytes.clone());
                    damage.kept = kept;
                    let image = log::salvaged(name, &bytes, &spans);
                    self.live.insert(name.clone(), image.clone());
                    self.durable.insert(name.clone(), image);
                    self.dirty.remove(name);
                } else if valid_len < bytes.len() {
                    // Cutting the tail is durable at once, like the file store's truncate + fsync.
                    for image in [self.live.get_mut(name), self.durable.get_mut(name)].into_iter().flatten() {
                        image.truncate(valid_len);
                    }
                }
                self.stats.insert(name.clone(), log.stats);
                Ok(Some(log))
            }
        }
    }

    fn remove(&mut self, name: &ObjectName) -> Result<(), StoreError> {
        self.live.remove(name);
        self.durable.remove(name);
        self.dirty.remove(name);
        self.stats.remove(name);
        Ok(())
    }

    fn list(&mut self) -> Result<Vec<ObjectName>, StoreError> {
        let readable = |n: &ObjectName, image: &[u8]| {
            log::name(image).as_ref() == Some(n) || log::name_candidates(image).any(|c| c == *n)
        };
        Ok(self.live.iter().filter(|(n, image)| readable(n, image)).map(|(n, _)| n.clone()).collect())
    }

    fn stats(&self, name: &ObjectName) -> Option<LogStats> {
        self.stats.get(name).copied()
    }
}
