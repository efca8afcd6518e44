//! Durable actor checkpoints, incremental: per activation epoch, a base snapshot
//! `DATA_DIR/actors/<name>/<epoch>.snap` ([`wasm_host::snapshot`]) and a log of deltas after
//! it, `<epoch>.log` — one delta per call, holding the pages the call wrote (see
//! `wasm-host/src/dirty.rs`). A call is answered only once its delta is appended and
//! fdatasync'ed, so an acknowledged update survives kill -9.
//!
//! # When a full snapshot is written instead of a delta
//! - the first checkpoint of an epoch (a new activation, a restore from an older epoch);
//! - when write tracking is off (every page counts as written);
//! - when the log would grow past `max(base size, LOG_MIN_BYTES)` (compaction): a restore
//!   then replays at most about one base's worth of deltas.
//!
//! A new base is written to a temporary file, fsynced and renamed over the old one; then a
//! fresh, empty log replaces the old log the same way. A crash in between leaves a log whose
//! header names the *old* base: its deltas are already in the new base, and it is ignored.
//!
//! # Log format
//! ```text
//! magic   8 bytes "LQCKLOG2"
//! base    32 bytes: BLAKE3 of the base snapshot's bytes (the deltas' Link::base)
//! n_base  u64 LE: the base's checkpoint number in its epoch (1 for an epoch's first)
//! check   8 bytes: BLAKE3 of the 48 bytes before, truncated (a flipped bit in `n_base`
//!         must not pass for a position)
//! record* len: u32 LE | a delta (self-checksummed, numbered 1, 2, … after the base)
//! ```
//! (`LQCKLOG1` logs, without `n_base`, are still read, as `n_base = 1`.)
//!
//! Every checkpoint has a **position** `(epoch, n)`: delta `k` after a base numbered `n_base`
//! is `n_base + k`, and a compaction's base takes the next number. Positions only grow, on the
//! home and on every copy, across restarts and compactions; the actor's group compares them
//! to let only a member holding the newest acknowledged checkpoint take over.
//! On restore, a bad record with nothing intact after it is a **torn tail** (a crash during
//! an append that was never acknowledged): it is cut off. A bad record *followed* by an
//! intact one is **damage** (durable bytes changed): the restore is refused with the file
//! named, because applying the deltas around a hole would build a state that never existed.
//!
//! A migration streams the base and the log; the target stores both under the new epoch.
//!
//! # Standby copies
//! The actor's standbys hold the same two files, sent by the home after its calls
//! (`executor/replica.rs`): the whole pair when the standby's copy is of another epoch or
//! base ([`Checkpoints::store_copy`]), else only the log's new records
//! ([`Checkpoints::append_copy`]). A standby checks every byte it is sent without a runtime —
//! the base's snapshot checksum, its BLAKE3 against the log's header, each delta's checksum,
//! module and place in the chain — so a peer's garbage or lies never become a checkpoint.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasm_host::Manifest;
use wasm_host::runtime::{Actor, Compiled, Invocation, Runtime};
use wasm_host::snapshot::{DELTA_MAGIC, Link, SnapshotError};

/// The first bytes of a delta log.
pub const LOG_MAGIC: [u8; 8] = *b"LQCKLOG2";
/// The first bytes of a delta log written before positions (no `n_base`).
const LOG_MAGIC_V1: [u8; 8] = *b"LQCKLOG1";
/// A log's header: magic, base id, the base's checkpoint number and a check.
const LOG_HEADER: usize = 8 + 32 + 8 + 8;
const LOG_HEADER_V1: usize = 8 + 32;

/// A log's header, parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LogHeader {
    base: [u8; 32],
    n_base: u64,
    len: usize,
}

fn parse_header(bytes: &[u8]) -> Option<LogHeader> {
    let magic = bytes.get(..8)?;
    let base: [u8; 32] = bytes.get(8..40)?.try_into().ok()?;
    if magic == LOG_MAGIC {
        let n_base = u64::from_le_bytes(bytes.get(40..48)?.try_into().ok()?);
        if bytes.get(48..56)? != header_check(&bytes[..48]) {
            return None;
        }
        Some(LogHeader { base, n_base, len: LOG_HEADER })
    } else if magic == LOG_MAGIC_V1 {
        Some(LogHeader { base, n_base: 1, len: LOG_HEADER_V1 })
    } else {
        None
    }
}

fn header_check(first: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&blake3::hash(first).as_bytes()[..8]);
    out
}

/// The number of whole records in `bytes` from `off`, and where the first cut one starts.
fn count_records(bytes: &[u8], mut off: usize) -> (u64, usize) {
    let mut n = 0;
    while let Some((_, end)) = record_at(bytes, off) {
        n += 1;
        off = end;
    }
    (n, off)
}
/// Logs are compacted once they would exceed the larger of this and their base's size.
pub const LOG_MIN_BYTES: u64 = 1 << 20;

/// The checkpoints of every actor on this node.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    root: PathBuf,
    /// Logs are compacted once they would exceed the larger of this and their base's size.
    log_min_bytes: u64,
    /// Per actor, the chain its next delta extends (absent: the next checkpoint is a base).
    chains: Arc<Mutex<HashMap<String, Chain>>>,
    /// Per actor, the position of its newest checkpoint here: (epoch, n).
    last: Arc<Mutex<HashMap<String, (u64, u64)>>>,
    /// Per actor, the end of this node's standby copy, so that appending a tail (once per
    /// call at the home) does not read the whole log to count its records.
    copies: Arc<Mutex<HashMap<String, CopyTip>>>,
}

/// The end of a standby's copy: its epoch, base, log length and numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CopyTip {
    epoch: u64,
    base: [u8; 32],
    len: u64,
    n_base: u64,
    seq: u64,
}

/// The open end of an actor's checkpoint chain.
#[derive(Debug)]
struct Chain {
    epoch: u64,
    base: [u8; 32],
    base_bytes: u64,
    /// The base's checkpoint number in its epoch.
    n_base: u64,
    seq: u64,
    log_bytes: u64,
    log: File,
}

/// What one checkpoint wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saved {
    /// Bytes written (the delta record, or the base snapshot and its new log's header).
    pub bytes: u64,
    /// Whether it was a full snapshot (a new base).
    pub full: bool,
    /// Pages in the delta (0 for a base).
    pub pages: usize,
    /// The whole checkpoint now: the base and its log, bytes (what a migration moves, and
    /// the state size the placement policy weighs).
    pub total_bytes: u64,
    /// The base the log now extends (BLAKE3 of the base file).
    pub base: [u8; 32],
    /// The log's length now, header included: a whole number of records (what a standby's
    /// copy is brought up to).
    pub log_bytes: u64,
    /// The checkpoint's number in its epoch (its position is `(epoch, n)`).
    pub n: u64,
}

/// Why a standby refused a copy.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The copy does not extend what this node holds (another base, a gap): send the whole
    /// checkpoint.
    #[error("behind: {0}")]
    Behind(String),
    /// The bytes are not a valid checkpoint of that module and base.
    #[error("refused: {0}")]
    Invalid(String),
    /// This node holds a newer epoch of the actor (the sender is a stale home).
    #[error("stale: this node holds epoch {0} of the actor")]
    Stale(u64),
    /// The disk.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The most memory a copy's snapshot or delta may claim (the largest any manifest may ask).
const COPY_MEMORY_MAX: u64 = (wasm_host::manifest::Limits::MAX.memory_mib as u64) << 20;

/// Checks `records` (whole delta records) as the deltas after number `seq` of base `base` of
/// module `hash`; returns how many there are.
fn verify_records(records: &[u8], hash: &wasm_host::ModuleHash, base: &[u8; 32], seq: u64) -> Result<u64, CopyError> {
    let mut off = 0;
    let mut n = 0u64;
    while off < records.len() {
        let (delta, end) =
            record_at(records, off).ok_or_else(|| CopyError::Invalid(format!("a cut record at byte {off}")))?;
        let (h, link, _) = wasm_host::snapshot::verify_delta(delta, COPY_MEMORY_MAX)
            .map_err(|e| CopyError::Invalid(format!("delta {}: {e}", seq + n + 1)))?;
        if h != *hash {
            return Err(CopyError::Invalid("a delta of another module".into()));
        }
        if link.base != *base || link.seq != seq + n + 1 {
            return Err(CopyError::Behind(format!(
                "delta {} of another chain, or out of sequence (expected number {})",
                link.seq,
                seq + n + 1
            )));
        }
        n += 1;
        off = end;
    }
    Ok(n)
}

/// Why a checkpoint could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The snapshot or delta itself (poisoned actor, refused bytes…).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The disk.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A delta log whose middle is damaged.
    #[error(
        "the delta log {path} is damaged at byte {offset} (intact deltas follow the bad bytes, so this is not a torn write): \
         refusing to build a state that never existed. Move the file away to restore the actor's older base state \
         ({deltas} deltas before the damage are intact)"
    )]
    Damaged {
        /// The log.
        path: PathBuf,
        /// Where the bad bytes start.
        offset: u64,
        /// Intact deltas before them.
        deltas: u64,
    },
}

impl Checkpoints {
    /// Checkpoints under `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Checkpoints> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(Checkpoints {
            root,
            log_min_bytes: LOG_MIN_BYTES,
            chains: Arc::default(),
            last: Arc::default(),
            copies: Arc::default(),
        })
    }

    /// Sets the log size below which no compaction happens (default [`LOG_MIN_BYTES`]).
    #[cfg(test)]
    pub fn with_log_min_bytes(mut self, bytes: u64) -> Checkpoints {
        self.log_min_bytes = bytes;
        self
    }

    fn dir(&self, actor: &str) -> PathBuf {
        self.root.join(actor)
    }

    /// The base snapshot of `actor` at `epoch`.
    pub fn path(&self, actor: &str, epoch: u64) -> PathBuf {
        self.dir(actor).join(format!("{epoch}.snap"))
    }

    /// The delta log of `actor` at `epoch`.
    pub fn log_path(&self, actor: &str, epoch: u64) -> PathBuf {
        self.dir(actor).join(format!("{epoch}.log"))
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

    fn chains(&self) -> std::sync::MutexGuard<'_, HashMap<String, Chain>> {
        // A panic while holding this lock leaves at worst a stale chain, which the next
        // save's checks (epoch, sizes) replace by a base.
        self.chains.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checkpoints `actor` after a call at `epoch`: a delta appended to the log and
    /// fdatasync'ed, or a new base (see the module docs for when). Durable when it returns.
    /// On an error the chain is dropped, so the next checkpoint is a base.
    pub fn save(&self, name: &str, epoch: u64, actor: &mut Actor) -> Result<Saved, CheckpointError> {
        let mut chains = self.chains();
        let delta_ok = match (chains.get(name), actor.written_bytes()) {
            (Some(c), Some(written)) if c.epoch == epoch => {
                // Pages compress, so the delta is at most about this (plus a header).
                c.log_bytes + written <= c.base_bytes.max(self.log_min_bytes)
            }
            _ => false,
        };
        if delta_ok && let Some(chain) = chains.get_mut(name) {
            let link = Link { base: chain.base, seq: chain.seq + 1 };
            let mut record = vec![0u8; 4];
            let appended = actor.write_delta(&mut record, &link).map_err(CheckpointError::from).and_then(|info| {
                let len = u32::try_from(record.len() - 4).map_err(|_| io::Error::other("a delta over 4 GiB"))?;
                record[..4].copy_from_slice(&len.to_le_bytes());
                chain.log.write_all(&record)?;
                chain.log.sync_data()?;
                Ok(info)
            });
            match appended {
                Ok(info) => {
                    chain.seq += 1;
                    chain.log_bytes += record.len() as u64;
                    let n = chain.n_base + chain.seq;
                    self.note_position(name, epoch, n);
                    return Ok(Saved {
                        n,
                        bytes: record.len() as u64,
                        full: false,
                        pages: info.pages,
                        total_bytes: chain.base_bytes + chain.log_bytes,
                        base: chain.base,
                        log_bytes: chain.log_bytes,
                    });
                }
                Err(e) => {
                    chains.remove(name);
                    return Err(e);
                }
            }
        }
        chains.remove(name);
        let n_base = self.position(name).filter(|(e, _)| *e == epoch).map_or(1, |(_, n)| n + 1);
        let (base_bytes, base) = self.write_with(name, epoch, |w| {
            let mut h = Hashing { inner: w, hasher: blake3::Hasher::new(), bytes: 0 };
            actor.write_snapshot(&mut h)?;
            Ok::<_, CheckpointError>((h.bytes, *h.hasher.finalize().as_bytes()))
        })?;
        actor.mark_base();
        let log = self.new_log(name, epoch, &base, n_base)?;
        chains.insert(
            name.to_string(),
            Chain { epoch, base, base_bytes, n_base, seq: 0, log_bytes: LOG_HEADER as u64, log },
        );
        drop(chains);
        self.note_position(name, epoch, n_base);
        self.prune(name, epoch);
        let total_bytes = base_bytes + LOG_HEADER as u64;
        Ok(Saved {
            bytes: total_bytes,
            full: true,
            pages: 0,
            total_bytes,
            base,
            log_bytes: LOG_HEADER as u64,
            n: n_base,
        })
    }

    /// The position of `name`'s newest checkpoint here, as (epoch, n).
    pub fn position(&self, name: &str) -> Option<(u64, u64)> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).get(name).copied()
    }

    fn note_position(&self, name: &str, epoch: u64, n: u64) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string(), (epoch, n));
    }

    /// Replaces `name`'s log at `epoch` by an empty one for `base`, durably; returns it open
    /// for appending.
    fn new_log(&self, name: &str, epoch: u64, base: &[u8; 32], n_base: u64) -> io::Result<File> {
        let path = self.log_path(name, epoch);
        let tmp = path.with_extension("log.tmp");
        let mut f = File::create(&tmp)?;
        let mut header = Vec::with_capacity(LOG_HEADER);
        header.extend_from_slice(&LOG_MAGIC);
        header.extend_from_slice(base);
        header.extend_from_slice(&n_base.to_le_bytes());
        let check = header_check(&header);
        header.extend_from_slice(&check);
        f.write_all(&header)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)?;
        sync_dir(&self.dir(name))?;
        OpenOptions::new().append(true).open(&path)
    }

    /// Writes a base of `epoch` through `fill`, atomically and durably.
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

    /// Restores actor `name` from its checkpoint at `epoch` (base, then every delta), and
    /// makes it the chain the next save at `epoch` extends. A torn tail of the log is cut
    /// off; a damaged log is refused (see the module docs).
    pub fn restore(
        &self,
        rt: &Runtime,
        compiled: &Compiled,
        manifest: &Manifest,
        inv: Invocation,
        name: &str,
        epoch: u64,
    ) -> Result<(Actor, Restored), CheckpointError> {
        let (actor, restored, chain) =
            restore_files(rt, compiled, manifest, inv, &self.path(name, epoch), &self.log_path(name, epoch))?;
        self.note_position(name, epoch, restored.n);
        self.set_chain(name, epoch, chain);
        Ok((actor, restored))
    }

    /// Makes `chain` (from [`restore_files`]) the one the next save of `name` at `epoch`
    /// extends; `None`: the next save writes a base.
    pub fn set_chain(&self, name: &str, epoch: u64, chain: Option<ChainHandle>) {
        let mut chains = self.chains();
        match chain {
            Some(ChainHandle(mut c)) => {
                c.epoch = epoch;
                self.note_position(name, epoch, c.n_base + c.seq);
                chains.insert(name.to_string(), c);
            }
            None => {
                chains.remove(name);
            }
        }
    }

    /// Forgets the open chain of `name` (its instance was dropped, or it moved away).
    pub fn forget(&self, name: &str) {
        self.chains().remove(name);
    }

    /// Every actor with a checkpoint here, with the position (epoch, n) of its newest
    /// (read at boot: a standby knows what it may take over).
    pub fn actors(&self) -> Vec<(String, u64, u64)> {
        let Ok(rd) = fs::read_dir(&self.root) else { return Vec::new() };
        rd.flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let epoch = *self.epochs(&name).last()?;
                let n = fs::read(self.log_path(&name, epoch))
                    .ok()
                    .and_then(|log| parse_header(&log).map(|h| h.n_base + count_records(&log, h.len).0))
                    .unwrap_or(1);
                self.note_position(&name, epoch, n);
                Some((name, epoch, n))
            })
            .collect()
    }

    /// Installs a standby's copy of `name` at `epoch`, received into `base_tmp` and `log_tmp`
    /// (the log may be absent): checks both whole, then renames them into place durably and
    /// drops older epochs. Refused when this node holds a newer epoch.
    pub fn store_copy(
        &self,
        name: &str,
        epoch: u64,
        hash: &wasm_host::ModuleHash,
        base_tmp: &Path,
        log_tmp: &Path,
    ) -> Result<u64, CopyError> {
        let result = (|| {
            if let Some(newest) = self.epochs(name).last().copied().filter(|e| *e > epoch) {
                return Err(CopyError::Stale(newest));
            }
            fs::create_dir_all(self.dir(name))?;
            let mut r = HashingReader {
                inner: io::BufReader::new(File::open(base_tmp)?),
                hasher: blake3::Hasher::new(),
                bytes: 0,
            };
            let (h, _) = wasm_host::snapshot::verify(&mut r, COPY_MEMORY_MAX)
                .map_err(|e| CopyError::Invalid(format!("the base: {e}")))?;
            io::copy(&mut r, &mut io::sink())?;
            if h != *hash {
                return Err(CopyError::Invalid("a base of another module".into()));
            }
            let base = *r.hasher.finalize().as_bytes();
            let log = fs::read(log_tmp)?;
            let header = parse_header(&log)
                .filter(|h| h.base == base)
                .ok_or_else(|| CopyError::Invalid("the log does not belong to the base sent with it".into()))?;
            let seq = verify_records(&log[header.len..], hash, &base, 0)?;
            let n = header.n_base + seq;
            let tip = CopyTip { epoch, base, len: log.len() as u64, n_base: header.n_base, seq };
            File::open(log_tmp)?.sync_all()?;
            fs::rename(log_tmp, self.log_path(name, epoch))?;
            File::open(base_tmp)?.sync_all()?;
            fs::rename(base_tmp, self.path(name, epoch))?;
            sync_dir(&self.dir(name))?;
            Ok((n, tip))
        })();
        let _ = fs::remove_file(base_tmp);
        let _ = fs::remove_file(log_tmp);
        let (n, tip) = result?;
        self.copy_tips().insert(name.to_string(), tip);
        // A chain open here belonged to this node's own activation, which has ended.
        self.forget(name);
        self.note_position(name, epoch, n);
        self.prune(name, epoch);
        Ok(n)
    }

    /// Appends `records` (whole delta records) to a standby's copy of `name` at `epoch`,
    /// whose log must extend base `base` and be exactly `offset` bytes long; fdatasync'ed.
    pub fn append_copy(
        &self,
        name: &str,
        epoch: u64,
        hash: &wasm_host::ModuleHash,
        base: &[u8; 32],
        offset: u64,
        records: &[u8],
    ) -> Result<u64, CopyError> {
        if let Some(newest) = self.epochs(name).last().copied().filter(|e| *e > epoch) {
            return Err(CopyError::Stale(newest));
        }
        let path = self.log_path(name, epoch);
        self.promote(name, epoch, base, offset)?;
        // The file's length guards the cached end against anything that changed it since.
        let cached = self.copy_tips().get(name).copied().filter(|t| {
            t.epoch == epoch
                && t.base == *base
                && t.len == offset
                && fs::metadata(&path).is_ok_and(|m| m.len() == offset)
        });
        let (n_base, seq) = match cached {
            Some(t) => (t.n_base, t.seq),
            None => {
                let log = match fs::read(&path) {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(CopyError::Behind(format!("no copy of epoch {epoch} here")));
                    }
                    Err(e) => return Err(e.into()),
                };
                let header = parse_header(&log)
                    .filter(|h| h.base == *base)
                    .ok_or_else(|| CopyError::Behind("this node's copy has another base".into()))?;
                if log.len() as u64 != offset {
                    return Err(CopyError::Behind(format!(
                        "this node's copy is {} bytes long, not {offset}",
                        log.len()
                    )));
                }
                // Records already here are trusted (they were checked on arrival): count them.
                let (seq, end) = count_records(&log, header.len);
                if end != log.len() {
                    return Err(CopyError::Behind("this node's copy ends in a cut record".into()));
                }
                (header.n_base, seq)
            }
        };
        let added = verify_records(records, hash, base, seq)?;
        let mut f = OpenOptions::new().append(true).open(&path)?;
        f.write_all(records)?;
        f.sync_data()?;
        let tip = CopyTip { epoch, base: *base, len: offset + records.len() as u64, n_base, seq: seq + added };
        self.copy_tips().insert(name.to_string(), tip);
        let n = n_base + seq + added;
        self.note_position(name, epoch, n);
        Ok(n)
    }

    fn copy_tips(&self) -> std::sync::MutexGuard<'_, HashMap<String, CopyTip>> {
        self.copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A tail for `epoch` whose base this node holds under its newest older epoch, exactly
    /// `offset` bytes of log long (a move: the new home's chain is the old one, renamed):
    /// renames that copy to `epoch`, so the tail extends it instead of a whole transfer.
    fn promote(&self, name: &str, epoch: u64, base: &[u8; 32], offset: u64) -> io::Result<()> {
        let epochs = self.epochs(name);
        if epochs.contains(&epoch) {
            return Ok(());
        }
        let Some(older) = epochs.iter().rev().copied().find(|e| *e < epoch) else { return Ok(()) };
        let Ok(log) = fs::read(self.log_path(name, older)) else { return Ok(()) };
        if parse_header(&log).is_none_or(|h| h.base != *base) || log.len() as u64 != offset {
            return Ok(());
        }
        fs::rename(self.log_path(name, older), self.log_path(name, epoch))?;
        fs::rename(self.path(name, older), self.path(name, epoch))?;
        sync_dir(&self.dir(name))?;
        self.forget(name);
        Ok(())
    }

    /// The base id and length of `name`'s log at `epoch`, if it is whole and readable.
    pub fn log_tip(&self, name: &str, epoch: u64) -> Option<([u8; 32], u64)> {
        let log = fs::read(self.log_path(name, epoch)).ok()?;
        let h = parse_header(&log)?;
        let (_, end) = count_records(&log, h.len);
        (end == log.len()).then_some((h.base, log.len() as u64))
    }

    /// Removes checkpoints older than `epoch`.
    pub fn prune(&self, name: &str, epoch: u64) {
        for e in self.epochs(name).into_iter().filter(|e| *e < epoch) {
            let _ = fs::remove_file(self.path(name, e));
            let _ = fs::remove_file(self.log_path(name, e));
        }
    }
}

/// What a restore found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Deltas applied after the base.
    pub deltas: u64,
    /// Bytes of a torn tail cut off the log (a crash during an unacknowledged append).
    pub torn_bytes: u64,
    /// Whether the log belonged to an older base (a crash during compaction) and was ignored.
    pub stale_log: bool,
    /// The restored state's checkpoint number in its epoch.
    pub n: u64,
}

/// Restores from a base file and a log file (absent: no deltas). A torn tail is cut off the
/// log file, which is returned open for appending as the chain the next delta extends
/// (`None` when there is no log for this base: the next checkpoint writes a base).
pub fn restore_files(
    rt: &Runtime,
    compiled: &Compiled,
    manifest: &Manifest,
    inv: Invocation,
    base_path: &Path,
    log_path: &Path,
) -> Result<(Actor, Restored, Option<ChainHandle>), CheckpointError> {
    let file =
        File::open(base_path).map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", base_path.display())))?;
    let mut r =
        HashingReader { inner: io::BufReader::with_capacity(1 << 20, file), hasher: blake3::Hasher::new(), bytes: 0 };
    let mut actor = rt.restore(compiled, manifest, inv, &mut r)?;
    // The snapshot reader stops at the end of its frame; hash anything after it too, so the
    // id is of the whole file.
    io::copy(&mut r, &mut io::sink())?;
    let base = *r.hasher.finalize().as_bytes();
    let base_bytes = r.bytes;
    let mut restored = Restored { n: 1, ..Restored::default() };
    let bytes = match fs::read(log_path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((actor, restored, None));
        }
        Err(e) => return Err(io::Error::new(e.kind(), format!("reading {}: {e}", log_path.display())).into()),
    };
    let header = match parse_header(&bytes) {
        Some(h) if h.base == base => h,
        other => {
            // A log from before the last compaction (or one whose header never became
            // durable): everything in it is in the base already, which a compaction numbers
            // one past the log's last delta.
            restored.stale_log = true;
            if let Some(h) = other {
                restored.n = h.n_base + count_records(&bytes, h.len).0 + 1;
            }
            return Ok((actor, restored, None));
        }
    };
    let limit = u64::from(manifest.limits.memory_mib) << 20;
    let mut off = header.len;
    let mut seq = 0u64;
    while off < bytes.len() {
        // Apply first (it verifies the delta whole before changing anything); only when that
        // fails, tell a bad record (torn tail or damage) from an intact one that does not
        // follow — verifying every delta twice made restores of long logs slow.
        let applied = match record_at(&bytes, off) {
            Some((delta, end)) => match actor.apply_delta(delta, &Link { base, seq: seq + 1 }, limit) {
                Ok(_) => Ok(end),
                Err(e) if wasm_host::snapshot::verify_delta(delta, limit).is_ok() => {
                    // An intact delta that does not apply (out of sequence, another module) is
                    // not a crash's doing: refuse rather than guess.
                    return Err(e.into());
                }
                Err(_) => Err(()),
            },
            None => Err(()),
        };
        match applied {
            Ok(end) => {
                seq += 1;
                off = end;
            }
            Err(()) => {
                if intact_after(&bytes, off) {
                    return Err(CheckpointError::Damaged {
                        path: log_path.to_owned(),
                        offset: off as u64,
                        deltas: seq,
                    });
                }
                restored.torn_bytes = (bytes.len() - off) as u64;
                tracing::warn!(log = %log_path.display(), offset = off, dropped_bytes = restored.torn_bytes, "cut a torn tail off an actor's delta log (a crash during a call that was never answered)");
                break;
            }
        }
    }
    restored.deltas = seq;
    restored.n = header.n_base + seq;
    // The restored state is what the next delta is relative to.
    actor.mark_base();
    let log = OpenOptions::new().append(true).open(log_path)?;
    if restored.torn_bytes > 0 {
        log.set_len(off as u64)?;
        log.sync_all()?;
    }
    let chain = Chain { epoch: 0, base, base_bytes, n_base: header.n_base, seq, log_bytes: off as u64, log };
    Ok((actor, restored, Some(ChainHandle(chain))))
}

/// An open chain returned by [`restore_files`].
#[derive(Debug)]
pub struct ChainHandle(Chain);

/// The delta record at `off`: its bytes and where the next record starts, if whole.
fn record_at(bytes: &[u8], off: usize) -> Option<(&[u8], usize)> {
    let len = u32::from_le_bytes(bytes.get(off..off + 4)?.try_into().ok()?) as usize;
    let end = off.checked_add(4)?.checked_add(len)?;
    Some((bytes.get(off + 4..end)?, end))
}

/// Whether an intact delta starts anywhere after a bad record at `off` (damage, not a torn
/// tail). A candidate must carry the delta magic and verify its own checksum.
fn intact_after(bytes: &[u8], off: usize) -> bool {
    let from = off + 1;
    let Some(rest) = bytes.get(from..) else { return false };
    rest.windows(DELTA_MAGIC.len()).enumerate().any(|(i, w)| {
        w == DELTA_MAGIC
            && (from + i).checked_sub(4).is_some_and(|start| {
                start > off
                    && record_at(bytes, start)
                        .is_some_and(|(d, _)| wasm_host::snapshot::verify_delta(d, u64::MAX).is_ok())
            })
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Hashes and counts what is written through it.
struct Hashing<'a, W> {
    inner: &'a mut W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes and counts what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use wasm_host::Kind;
    use wasm_host::abi::{AbiError, Level, ObjCall};
    use wasm_host::runtime::{Host, RuntimeConfig};

    /// Input: u32 words; each names a 4 KiB page whose counter (at byte 64 of it) goes up by
    /// one. 4 MiB of memory. Output: the sum of the counters bumped.
    const PAGES: &str = r#"
    (module
      (import "liquid" "input_read" (func $input_read (param i32 i32) (result i32)))
      (import "liquid" "output" (func $output (param i32 i32) (result i32)))
      (memory (export "memory") 64)
      (global $calls (export "calls") (mut i64) (i64.const 0))
      (func (export "liquid_call") (result i32)
        (local $n i32) (local $i i32) (local $addr i32) (local $sum i32)
        (local.set $n (call $input_read (i32.const 0) (i32.const 4096)))
        (global.set $calls (i64.add (global.get $calls) (i64.const 1)))
        (block $done
          (loop $word
            (br_if $done (i32.ge_u (i32.add (local.get $i) (i32.const 3)) (local.get $n)))
            (local.set $addr (i32.add (i32.shl (i32.load (local.get $i)) (i32.const 12)) (i32.const 64)))
            (i32.store (local.get $addr) (i32.add (i32.load (local.get $addr)) (i32.const 1)))
            (local.set $sum (i32.add (local.get $sum) (i32.load (local.get $addr))))
            (local.set $i (i32.add (local.get $i) (i32.const 4)))
            (br $word)))
        (i32.store (i32.const 4096) (local.get $sum))
        (drop (call $output (i32.const 4096) (i32.const 4)))
        (i32.const 0)))
    "#;

    struct NoHost;
    impl Host for NoHost {
        fn object(&mut self, _: ObjCall) -> Result<serde_json::Value, AbiError> {
            Err(AbiError::new(wasm_host::abi::ERR_NOT_FOUND, "none"))
        }
        fn invoke(&mut self, _: &str, _: Vec<u8>, _: u32) -> Result<Vec<u8>, AbiError> {
            Err(AbiError::new(wasm_host::abi::ERR_NOT_FOUND, "none"))
        }
        fn log(&mut self, _: Level, _: &str) {}
    }

    struct Fixture {
        _tmp: tempfile::TempDir,
        c: Checkpoints,
        rt: Runtime,
        compiled: Compiled,
        m: Manifest,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let c = Checkpoints::open(tmp.path()).unwrap();
        let rt =
            Runtime::new(RuntimeConfig { pool_instances: 8, memory_max_mib: 16, ..RuntimeConfig::default() }).unwrap();
        let mut m = Manifest::for_module("pages");
        m.kind = Kind::Actor;
        m.limits.memory_mib = 8;
        m.limits.fuel = 10_000_000;
        m.limits.wall_ms = 2_000;
        let compiled = rt.compile(PAGES.as_bytes(), &m).unwrap();
        Fixture { _tmp: tmp, c, rt, compiled, m }
    }

    fn inv(pages: &[u32]) -> Invocation {
        Invocation { input: pages.iter().flat_map(|p| p.to_le_bytes()).collect(), now_ms: 0, seed: 0, depth: 0 }
    }

    impl Fixture {
        fn call(&self, a: &mut Actor, pages: &[u32]) -> i32 {
            let out = self.rt.invoke_actor(a, &self.m, inv(pages), Box::new(NoHost)).result.unwrap();
            i32::from_le_bytes(out[..4].try_into().unwrap())
        }
        fn restore(&self, epoch: u64) -> Result<(Actor, Restored), CheckpointError> {
            self.c.restore(&self.rt, &self.compiled, &self.m, inv(&[]), "a", epoch)
        }
        fn state(&self, a: &mut Actor) -> Vec<u8> {
            let mut v = Vec::new();
            a.write_snapshot(&mut v).unwrap();
            v
        }
    }

    #[test]
    fn calls_append_deltas_and_a_restore_replays_them() {
        let f = fixture();
        let mut a = f.rt.activate(&f.compiled, &f.m, inv(&[])).unwrap();
        f.call(&mut a, &[1]);
        let first = f.c.save("a", 1, &mut a).unwrap();
        assert!(first.full, "the first checkpoint of an epoch is a base");
        for _ in 0..5 {
            f.call(&mut a, &[1, 700]);
            let s = f.c.save("a", 1, &mut a).unwrap();
            if a.tracking_writes() {
                assert!(!s.full && s.pages <= 4 && s.bytes < 2048, "{s:?}");
                assert!(s.total_bytes >= first.total_bytes + s.bytes, "the state size is base + log: {s:?}");
            }
        }
        let want = f.call(&mut a, &[1]);
        f.c.forget("a");
        drop(a);
        let (mut back, r) = f.restore(1).unwrap();
        assert_eq!(r.deltas, if wasm_host_tracks() { 5 } else { r.deltas });
        assert_eq!(f.call(&mut back, &[1]), want, "the state of the last saved call, then one more");
        // The chain goes on from the restored log.
        let s = f.c.save("a", 1, &mut back).unwrap();
        assert!(!s.full || !wasm_host_tracks());
        let st = f.state(&mut back);
        drop(back);
        let (mut again, _) = f.restore(1).unwrap();
        assert_eq!(f.state(&mut again), st);
    }

    /// A standby's copies: the home's files install and extend; a peer's garbage, lies and
    /// gaps are refused and change nothing; positions only grow.
    #[test]
    fn standby_copies_install_extend_and_refuse_hostile_bytes() {
        let home = fixture();
        let standby = Checkpoints::open(home._tmp.path().join("standby")).unwrap();
        let tmp = home._tmp.path().join("in");
        fs::create_dir_all(&tmp).unwrap();
        let hash = home.compiled.hash();
        let mut a = home.rt.activate(&home.compiled, &home.m, inv(&[])).unwrap();
        home.call(&mut a, &[1]);
        let first = home.c.save("a", 1, &mut a).unwrap();
        let (base, log) = (fs::read(home.c.path("a", 1)).unwrap(), fs::read(home.c.log_path("a", 1)).unwrap());
        let whole = |b: &[u8], l: &[u8]| {
            fs::write(tmp.join("b"), b).unwrap();
            fs::write(tmp.join("l"), l).unwrap();
            standby.store_copy("a", 1, &hash, &tmp.join("b"), &tmp.join("l"))
        };
        // Garbage, a flipped byte in the base, a log of another base, another module.
        assert!(whole(b"not a snapshot", &log).is_err());
        let mut bad = base.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        assert!(whole(&bad, &log).is_err(), "a flipped byte in the base");
        let mut other_log = log.clone();
        other_log[20] ^= 1;
        assert!(whole(&base, &other_log).is_err(), "a log naming another base");
        fs::write(tmp.join("b"), &base).unwrap();
        fs::write(tmp.join("l"), &log).unwrap();
        let other = wasm_host::ModuleHash::of(b"another module");
        assert!(standby.store_copy("a", 1, &other, &tmp.join("b"), &tmp.join("l")).is_err());
        assert!(standby.epochs("a").is_empty(), "nothing installed by refused copies");
        // The real thing.
        assert_eq!(whole(&base, &log).unwrap(), first.n);
        // Deltas extend it; a gap, a repeat, or a delta of another base is "behind".
        let mut deltas = Vec::new();
        for _ in 0..3 {
            home.call(&mut a, &[1, 9]);
            let s = home.c.save("a", 1, &mut a).unwrap();
            if s.full {
                return; // no write tracking on this platform: every checkpoint is a base
            }
            let l = fs::read(home.c.log_path("a", 1)).unwrap();
            deltas.push((s, l));
        }
        let (s1, l1) = &deltas[0];
        let (s2, l2) = &deltas[1];
        let rec1 = &l1[log.len()..];
        let rec2 = &l2[l1.len()..];
        let id = s1.base;
        assert!(matches!(standby.append_copy("a", 1, &hash, &id, l1.len() as u64, rec2), Err(CopyError::Behind(_))));
        assert!(
            matches!(standby.append_copy("a", 1, &hash, &id, log.len() as u64, rec2), Err(CopyError::Behind(_))),
            "a gap"
        );
        let mut flipped = rec1.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(standby.append_copy("a", 1, &hash, &id, log.len() as u64, &flipped).is_err(), "a damaged delta");
        assert!(
            standby.append_copy("a", 1, &hash, &id, log.len() as u64, &rec1[..rec1.len() - 3]).is_err(),
            "a cut record"
        );
        assert_eq!(standby.append_copy("a", 1, &hash, &id, log.len() as u64, rec1).unwrap(), s1.n);
        assert_eq!(standby.append_copy("a", 1, &hash, &id, l1.len() as u64, rec2).unwrap(), s2.n);
        assert!(standby.append_copy("a", 1, &hash, &id, l1.len() as u64, rec2).is_err(), "a repeat");
        assert_eq!(fs::read(standby.log_path("a", 1)).unwrap(), *l2, "the copy is the home's log");
        // The copy restores to the home's state.
        let (mut back, r) = standby.restore(&home.rt, &home.compiled, &home.m, inv(&[]), "a", 1).unwrap();
        assert_eq!(r.n, s2.n);
        // Page 1 was bumped by the first call and the two copied ones: the next call finds 3.
        assert_eq!(home.call(&mut back, &[1]), 4, "the state of the last copied call");
        // A copy of an older epoch never replaces a newer one.
        fs::write(tmp.join("b"), &base).unwrap();
        fs::write(tmp.join("l"), &log).unwrap();
        fs::copy(standby.path("a", 1), standby.path("a", 2)).unwrap();
        assert!(matches!(standby.store_copy("a", 1, &hash, &tmp.join("b"), &tmp.join("l")), Err(CopyError::Stale(2))));
    }

    /// After a move, the new home's chain is the old one renamed to the next epoch: a standby
    /// holding it under the old epoch takes the tail on top of it.
    #[test]
    fn a_tail_after_a_move_extends_the_copy_of_the_previous_epoch() {
        let home = fixture();
        let standby = Checkpoints::open(home._tmp.path().join("standby")).unwrap();
        let tmp = home._tmp.path().join("in");
        fs::create_dir_all(&tmp).unwrap();
        let hash = home.compiled.hash();
        let mut a = home.rt.activate(&home.compiled, &home.m, inv(&[])).unwrap();
        home.call(&mut a, &[1]);
        home.c.save("a", 1, &mut a).unwrap();
        fs::write(tmp.join("b"), fs::read(home.c.path("a", 1)).unwrap()).unwrap();
        fs::write(tmp.join("l"), fs::read(home.c.log_path("a", 1)).unwrap()).unwrap();
        standby.store_copy("a", 1, &hash, &tmp.join("b"), &tmp.join("l")).unwrap();
        let (base, len) = home.c.log_tip("a", 1).unwrap();
        // The move: the same files under epoch 2, and a call there appends a delta.
        fs::rename(home.c.path("a", 1), home.c.path("a", 2)).unwrap();
        fs::rename(home.c.log_path("a", 1), home.c.log_path("a", 2)).unwrap();
        home.c.forget("a");
        let (mut b, _) = home.restore(2).unwrap();
        home.call(&mut b, &[1]);
        let s = home.c.save("a", 2, &mut b).unwrap();
        if s.full {
            return; // no write tracking here
        }
        let log2 = fs::read(home.c.log_path("a", 2)).unwrap();
        assert!(matches!(
            standby.append_copy("a", 2, &hash, &[7; 32], len, &log2[len as usize..]),
            Err(CopyError::Behind(_))
        ));
        assert_eq!(standby.epochs("a"), vec![1], "a tail of another base promotes nothing");
        assert_eq!(standby.append_copy("a", 2, &hash, &base, len, &log2[len as usize..]).unwrap(), s.n);
        assert_eq!(standby.epochs("a"), vec![2]);
        assert_eq!(fs::read(standby.log_path("a", 2)).unwrap(), log2);
    }

    fn wasm_host_tracks() -> bool {
        let f = fixture();
        f.rt.activate(&f.compiled, &f.m, inv(&[])).unwrap().tracking_writes()
    }

    #[test]
    fn a_growing_log_is_compacted_into_a_new_base() {
        let mut f = fixture();
        f.c = f.c.clone().with_log_min_bytes(64 << 10);
        let mut a = f.rt.activate(&f.compiled, &f.m, inv(&[])).unwrap();
        f.c.save("a", 1, &mut a).unwrap();
        // 20 pages (80 KiB before compression) a call: past 64 KiB, every call is a base;
        // 5 pages a call: deltas until the log passes 64 KiB.
        let heavy: Vec<u32> = (10..30).collect();
        f.call(&mut a, &heavy);
        assert!(f.c.save("a", 1, &mut a).unwrap().full, "a delta larger than the log may grow is a base");
        let (mut fulls, mut deltas) = (0, 0);
        for i in 0..400u32 {
            f.call(&mut a, &[(i * 5) % 1000, (i * 5 + 1) % 1000, (i * 5 + 2) % 1000]);
            let s = f.c.save("a", 1, &mut a).unwrap();
            if s.full { fulls += 1 } else { deltas += 1 }
        }
        if a.tracking_writes() {
            assert!(fulls >= 1 && deltas > fulls * 10, "{fulls} bases, {deltas} deltas");
        }
        let len = fs::metadata(f.c.log_path("a", 1)).unwrap().len();
        assert!(len <= (64 << 10) + 4096 * 8, "log of {len} bytes");
        let want = f.state(&mut a);
        drop(a);
        f.c.forget("a");
        let (mut back, _) = f.restore(1).unwrap();
        assert_eq!(f.state(&mut back), want);
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_chain_goes_on() {
        let f = fixture();
        if !wasm_host_tracks() {
            return;
        }
        let mut a = f.rt.activate(&f.compiled, &f.m, inv(&[])).unwrap();
        f.c.save("a", 1, &mut a).unwrap();
        f.call(&mut a, &[3]);
        f.c.save("a", 1, &mut a).unwrap();
        let kept = f.state(&mut a);
        f.call(&mut a, &[3]);
        f.c.save("a", 1, &mut a).unwrap();
        drop(a);
        f.c.forget("a");
        // A crash in the middle of the last append (never acknowledged).
        let log = f.c.log_path("a", 1);
        let full = fs::read(&log).unwrap();
        let (_, first_end) = record_at(&full, LOG_HEADER).unwrap();
        let last_len = full.len() - first_end;
        for cut in [full.len() - 1, full.len() - last_len / 2, first_end + 2, first_end + 9] {
            let mut bytes = full.clone();
            bytes.truncate(cut);
            fs::write(&log, &bytes).unwrap();
            let (mut back, r) = f.restore(1).unwrap();
            assert_eq!(r.deltas, 1);
            assert!(r.torn_bytes > 0);
            assert_eq!(
                fs::metadata(&log).unwrap().len() as usize,
                bytes.len() - r.torn_bytes as usize,
                "cut off the file"
            );
            assert_eq!(f.state(&mut back), kept);
            // A later call appends after the cut, and a restore sees it.
            assert_eq!(f.call(&mut back, &[3]), 2);
            f.c.save("a", 1, &mut back).unwrap();
            drop(back);
            f.c.forget("a");
            let (mut again, r) = f.restore(1).unwrap();
            assert_eq!((r.deltas, r.torn_bytes), (2, 0));
            assert_eq!(f.call(&mut again, &[3]), 3);
            drop(again);
            f.c.forget("a");
        }
    }

    #[test]
    fn damage_in_the_middle_of_the_log_is_refused_with_the_file_named() {
        let f = fixture();
        if !wasm_host_tracks() {
            return;
        }
        let mut a = f.rt.activate(&f.compiled, &f.m, inv(&[])).unwrap();
        f.c.save("a", 1, &mut a).unwrap();
        for p in [5, 6, 7] {
            f.call(&mut a, &[p]);
            f.c.save("a", 1, &mut a).unwrap();
        }
        drop(a);
        f.c.forget("a");
        let log = f.c.log_path("a", 1);
        let good = fs::read(&log).unwrap();
        // Every byte of the first two records (and of the header): flipped, refused or, in
        // the header, the log no longer belongs to the base (then ignored, as after a
        // compaction crash). Never a silently different state.
        let (_, first_end) = record_at(&good, LOG_HEADER).unwrap();
        let (_, second_end) = record_at(&good, first_end).unwrap();
        for i in 0..second_end {
            let mut bad = good.clone();
            bad[i] ^= 0x04;
            fs::write(&log, &bad).unwrap();
            match f.restore(1) {
                Err(CheckpointError::Damaged { path, .. }) => assert_eq!(path, log),
                Err(e) => panic!("byte {i}: {e}"),
                Ok((_, r)) => assert!(i < LOG_HEADER && r.stale_log, "byte {i} went unnoticed: {r:?}"),
            }
            f.c.forget("a");
        }
    }

    /// A full disk (ENOSPC on the append) fails the checkpoint with the OS's error, and the
    /// chain is dropped: the caller drops the instance (the call is not acknowledged), the
    /// next restore has the state of the last acknowledged call, and the next checkpoint,
    /// once there is room, is a new base.
    #[test]
    fn a_full_disk_fails_the_checkpoint_and_loses_nothing_acknowledged() {
        let f = fixture();
        if !wasm_host_tracks() {
            return;
        }
        let mut a = f.rt.activate(&f.compiled, &f.m, inv(&[])).unwrap();
        f.c.save("a", 1, &mut a).unwrap();
        f.call(&mut a, &[4]);
        f.c.save("a", 1, &mut a).unwrap();
        let acknowledged = f.state(&mut a);
        f.call(&mut a, &[4]);
        // /dev/full answers every write with ENOSPC.
        f.c.chains().get_mut("a").unwrap().log = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let err = f.c.save("a", 1, &mut a).unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
        assert!(f.c.chains().get("a").is_none(), "the chain is dropped");
        drop(a);
        let (mut back, r) = f.restore(1).unwrap();
        assert_eq!((r.deltas, r.torn_bytes), (1, 0));
        assert_eq!(f.state(&mut back), acknowledged);
        assert_eq!(f.call(&mut back, &[4]), 2, "the unacknowledged call is not there");
        // The chain restored from disk goes on.
        assert!(!f.c.save("a", 1, &mut back).unwrap().full);
    }

    #[test]
    fn a_log_of_an_older_base_is_ignored() {
        let f = fixture();
        let mut a = f.rt.activate(&f.compiled, &f.m, inv(&[])).unwrap();
        f.c.save("a", 1, &mut a).unwrap();
        f.call(&mut a, &[9]);
        f.c.save("a", 1, &mut a).unwrap();
        let old_log = fs::read(f.c.log_path("a", 1)).unwrap();
        f.call(&mut a, &[9]);
        f.c.forget("a");
        f.c.save("a", 1, &mut a).unwrap(); // a new base (no chain)
        let want = f.state(&mut a);
        drop(a);
        // A crash after the base's rename, before the new log's: the old log is back.
        fs::write(f.c.log_path("a", 1), &old_log).unwrap();
        f.c.forget("a");
        let (mut back, r) = f.restore(1).unwrap();
        assert!(r.stale_log);
        assert_eq!(f.state(&mut back), want);
    }

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
