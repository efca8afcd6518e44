//! Durable local storage of documents: an append-only, checksummed log per object.
//!
//! # Why a log of automerge saves (and not redb or fjall)
//! Automerge already produces the two things a store needs: *incremental saves* (the changes
//! since the last save, a few hundred bytes per write) and *full saves* (the whole document,
//! compressed). Appending the former and occasionally replacing the log by the latter is all
//! the storage an object needs; a B-tree or LSM engine would store the same bytes with a
//! second log and a second compaction underneath. The log is ~300 lines we can read, test at
//! every byte offset, and simulate exactly.
//!
//! # Semantics
//! - [`Store::append`] adds a record to the live image. **It is not durable** until
//!   [`Store::sync`] returns `Ok`; only then may the writes it covers be acknowledged. One
//!   `sync` covers every object appended to since the last one (group commit).
//! - [`Store::compact`] replaces an object's log by one full save, atomically (temp file,
//!   fsync, rename, directory fsync) and durably when it returns.
//! - [`Store::load`] returns every intact record; it never panics. A record whose length or
//!   checksum fails starts a bad stretch, which is one of two things:
//!   - a **torn tail** (a crash in the middle of an append) if no intact record follows it:
//!     it is **dropped, cut off the file**, and reported in [`Log::torn`]. Only unsynced
//!     bytes can be torn, so nothing acknowledged is lost.
//!   - **damage** (durable bytes changed: a failing disk) if an intact record follows it.
//!     Nothing is cut: the damaged file is kept aside (`<file>.corrupt-<unix seconds>`,
//!     fsynced), the log is rewritten from every record that verifies, before and after the
//!     bad stretches, and the damage is reported in [`Log::damage`]. [`restore`] logs it as an
//!     error; [`Restored::incomplete`] says whether changes that survived depend on changes
//!     that did not (the node must then refuse to serve the object until sync brings them).
//!
//!   The scan for an intact record after a bad one checks headers before checksums; random
//!   bytes pass as a record with a probability far below 2^-39 per offset, so a torn tail is
//!   taken for damage only if the torn record's own bytes contain a whole valid record.
//!   A damaged name record is damage too when records follow it (the name is known from the
//!   file name's hash, and [`Store::list`] still finds the log unless the name's own bytes
//!   changed; then the file store logs a warning naming the file, and the log is only found
//!   when its object is loaded by name); damaged magic bytes or an unknown record kind are
//!   [`StoreError::Corrupt`].
//! - A `sync` error means the appends since the last good sync may be lost (the kernel may
//!   have dropped the dirty pages): stop acknowledging, and reload from disk before writing
//!   again.
//!
//! # On-disk format (version 1), one file per object
//! File name: the first 16 bytes of BLAKE3(`namespace/key`) in hex, plus `.log`. Contents:
//! ```text
//! magic   8 bytes  "LQOBJ\0\0\x01" (format version 1 in the last byte)
//! record* len: u32 LE | kind: u8 | payload: len bytes | crc: u32 LE
//!         crc = CRC-32 (IEEE) of len, kind and payload
//! kinds   1 = name (the first record, always: `namespace/key` in UTF-8)
//!         2 = changes (Automerge::save_after output: the changes since the previous record)
//!         3 = snapshot (Automerge::save output: the whole document)
//! ```
//! A document is rebuilt by loading every record after the name, in order.
//!
//! # Implementations
//! [`FileStore`] (a directory) and [`SimStore`] (memory, with a live and a durable image and
//! a `crash` that loses unsynced writes, for the simulator and for tests).

mod file;
mod log;
mod sim;

use std::path::PathBuf;

use automerge::ActorId;

use crate::doc::{Document, Heads, LoadError};
use crate::object::ObjectName;

pub use file::FileStore;
pub use sim::SimStore;

/// The largest record accepted, in bytes; a length field above it marks a bad record.
pub const RECORD_BYTES_MAX: usize = 1 << 30;

/// A small synchronous storage backend for object logs.
pub trait Store {
    /// Appends an incremental save to `name`'s log, creating the log if needed. Not durable
    /// until [`Store::sync`] returns.
    fn append(&mut self, name: &ObjectName, changes: &[u8]) -> Result<(), StoreError>;
    /// Makes every append so far durable.
    fn sync(&mut self) -> Result<(), StoreError>;
    /// Replaces `name`'s log by one full save (which must contain everything appended
    /// before), atomically and durably.
    fn compact(&mut self, name: &ObjectName, snapshot: &[u8]) -> Result<(), StoreError>;
    /// Reads `name`'s log; `None` if there is none. Cuts off a torn tail; keeps a damaged
    /// log aside and rewrites it from its intact records (see the module docs).
    fn load(&mut self, name: &ObjectName) -> Result<Option<Log>, StoreError>;
    /// Deletes `name`'s log, durably.
    fn remove(&mut self, name: &ObjectName) -> Result<(), StoreError>;
    /// Every object with a log, sorted.
    fn list(&mut self) -> Result<Vec<ObjectName>, StoreError>;
    /// The sizes of `name`'s log, once this store has loaded or written it.
    fn stats(&self, name: &ObjectName) -> Option<LogStats>;
}

/// An object's log as loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Log {
    /// The payloads of the change and snapshot records, in order.
    pub chunks: Vec<Vec<u8>>,
    /// The torn tail that was dropped, if any.
    pub torn: Option<TornTail>,
    /// Damage found (bad bytes with intact records after them), if any. The store kept the
    /// damaged file aside and rewrote the log from the intact records.
    pub damage: Option<Damage>,
    /// The log's sizes after loading.
    pub stats: LogStats,
}

/// Bad bytes in the middle of a log: the disk (or something else) changed bytes that were
/// durable, so records that were acknowledged may be lost. Unlike a torn tail, this is never
/// cut off: the damaged file is kept aside, as [`Damage::kept`], and the log is rewritten
/// from every record that still verifies, before and after the bad stretches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The bad stretches, in order.
    pub gaps: Vec<Gap>,
    /// Where the damaged file was kept (in the store's directory, named
    /// `<log file>.corrupt-<unix seconds>`; `sim:<object>.corrupt-<n>` in a [`SimStore`]).
    pub kept: PathBuf,
    /// How many intact records were found after the first bad stretch (and kept).
    pub records_after: u64,
}

impl Damage {
    /// Where the first bad stretch starts.
    pub fn offset(&self) -> u64 {
        self.gaps.first().map_or(0, |g| g.offset)
    }

    /// The bytes lost in every bad stretch together.
    pub fn lost_bytes(&self) -> u64 {
        self.gaps.iter().map(|g| g.bytes).sum()
    }
}

/// One bad stretch of a log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// Its first byte's offset in the damaged file.
    pub offset: u64,
    /// Its length: the next intact record starts at `offset + bytes`.
    pub bytes: u64,
}

/// A dropped torn tail: where it started and how long it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The byte offset the log was cut at.
    pub offset: u64,
    /// How many bytes were dropped.
    pub dropped_bytes: u64,
}

/// The sizes of one log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// The log's length in bytes.
    pub bytes: u64,
    /// Its length right after its last snapshot record (the header alone if none).
    pub base_bytes: u64,
    /// Its number of records, the name included.
    pub records: u64,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The operating system refused an operation.
    #[error("{op} {path}: {source} (check the data dir's permissions and free space)")]
    Io {
        /// What was being done (`append to`, `fsync`…).
        op: &'static str,
        /// On which file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A log that is damaged in a way a crash cannot explain (wrong magic, unknown record
    /// kind, another object's name). Nothing is dropped automatically: move the file away.
    #[error("object log {path} is damaged at byte {offset}: {reason}; move it away to start that object afresh")]
    Corrupt {
        /// The file (or the object name, in memory).
        path: PathBuf,
        /// Where.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record larger than [`RECORD_BYTES_MAX`].
    #[error("a record of {len} bytes exceeds the limit of {RECORD_BYTES_MAX}")]
    RecordTooLarge {
        /// Its length.
        len: usize,
    },
}

/// When to compact: once the changes appended since the last snapshot exceed both
/// `tail_bytes_min` and the snapshot's own size. Disk use per object therefore stays below
/// about twice its full save plus `tail_bytes_min`.
#[derive(Clone, Debug)]
pub struct Compaction {
    /// The smallest tail worth compacting.
    pub tail_bytes_min: u64,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction { tail_bytes_min: 64 * 1024 }
    }
}

impl Compaction {
    /// Whether a log of these sizes should be compacted.
    pub fn due(&self, stats: &LogStats) -> bool {
        let tail = stats.bytes.saturating_sub(stats.base_bytes);
        tail > self.tail_bytes_min && tail > stats.base_bytes
    }
}

/// Appends `doc`'s unsaved changes to `name`'s log (compacting it when due) and marks them
/// saved. Returns the heads that are durable once the next [`Store::sync`] returns `Ok` —
/// acknowledge the writes up to them then — or `None` if there was nothing to write.
///
/// If the append or the sync fails, durability of these changes is unknown: stop
/// acknowledging, and reload the object from the store before writing again.
pub fn persist<S: Store + ?Sized>(
    store: &mut S,
    name: &ObjectName,
    doc: &mut Document,
    compaction: &Compaction,
) -> Result<Option<Heads>, StoreError> {
    let Some(unsaved) = doc.unsaved() else { return Ok(None) };
    store.append(name, &unsaved.bytes)?;
    doc.mark_saved(&unsaved.heads);
    if store.stats(name).is_some_and(|s| compaction.due(&s)) {
        store.compact(name, &doc.save())?;
    }
    Ok(Some(unsaved.heads))
}

/// A document read back from a store.
#[derive(Debug)]
pub struct Restored {
    /// The document, everything in it marked saved.
    pub doc: Document,
    /// The torn tail dropped on the way, if any (already logged as a warning).
    pub torn: Option<TornTail>,
    /// The damage found in the log, if any (already logged as an error).
    pub damage: Option<Damage>,
}

impl Restored {
    /// Whether the document is known to lack changes it had: its log holds changes that
    /// depend on changes it does not hold ([`Document::missing_deps`]), which only damage
    /// (found now, or at an earlier start: the rewritten log keeps the orphaned changes)
    /// explains. Such a document is older than what was acknowledged; it is whole again
    /// once sync brings the missing changes from a replica. (Damage with nothing depending
    /// on the lost records cannot be told from a shorter log.)
    pub fn incomplete(&self) -> bool {
        !self.doc.missing_deps().is_empty()
    }
}

/// Why a document could not be restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log's records are intact but automerge refuses them.
    #[error("object {name}: stored changes do not load: {source}")]
    Load {
        /// The object.
        name: ObjectName,
        /// Automerge's error.
        source: LoadError,
    },
}

/// Loads `name` from `store` as a document whose new changes `actor` makes; `None` if the
/// store has no log for it.
pub fn restore<S: Store + ?Sized>(
    store: &mut S,
    name: &ObjectName,
    actor: ActorId,
) -> Result<Option<Restored>, RestoreError> {
    let Some(log) = store.load(name)? else { return Ok(None) };
    if let Some(t) = log.torn {
        tracing::warn!(object = %name, offset = t.offset, dropped_bytes = t.dropped_bytes, "dropped a torn tail of an object log (a crash during an unacknowledged write)");
    }
    let doc = Document::load(actor, log.chunks.iter().map(Vec::as_slice))
        .map_err(|source| RestoreError::Load { name: name.clone(), source })?;
    if let Some(d) = &log.damage {
        let missing = doc.missing_deps().len();
        tracing::error!(
            object = %name,
            kept = %d.kept.display(),
            offset = d.offset(),
            lost_bytes = d.lost_bytes(),
            records_after = d.records_after,
            missing_changes = missing,
            "an object log is damaged (bytes that were durable changed): kept the damaged file, rewrote the log from the records that verify; {}",
            if missing > 0 { "the object lacks acknowledged changes until a replica sends them" } else { "no kept change depends on the lost bytes" },
        );
    }
    let restored = Restored { doc, torn: log.torn, damage: log.damage };
    if restored.damage.is_none() && restored.incomplete() {
        tracing::error!(object = %name, missing_changes = restored.doc.missing_deps().len(), "an object's log lacks changes that others depend on (damage found at an earlier start): the object lacks acknowledged changes until a replica sends them");
    }
    Ok(Some(restored))
}

#[cfg(test)]
mod tests;
