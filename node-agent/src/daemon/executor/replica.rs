//! Standby copies of actor checkpoints (issue 18): the home's side sends each call's
//! checkpoint to the actor's standbys in the background; a standby's side checks and stores
//! it ([`store_copy`], [`append_copy`]) and tells its core, which may then take the actor
//! over when the home goes down (`liquid_core::functions::actors::failover`).
//!
//! [`store_copy`]: crate::daemon::checkpoint::Checkpoints::store_copy
//! [`append_copy`]: crate::daemon::checkpoint::Checkpoints::append_copy
//!
//! One task per (actor, standby) sends, in order; it only ever needs the newest checkpoint,
//! so it waits on a `watch` channel, not a queue: calls faster than the link coalesce into
//! one transfer of the log's new records. When the standby's copy is of another epoch or base
//! (or unknown: first contact, an error, a compaction at the home), the whole base and log
//! go instead. A standby that cannot be reached is retried with backoff.
//!
//! A standby acknowledges a copy only once it is durable there *and* its core accepted it
//! (a node that promised a later epoch to another activation refuses: the sender is a home
//! that epoch replaced). With `group` durability the call's thread waits, after its own
//! fdatasync, until enough standbys acknowledged the call's checkpoint
//! ([`Executor::await_quorum`]); with `local` it does not wait.
//!
//! # Stream (bulk kind [`BULK_REPLICA`])
//! ```text
//! name_len u16 | name | epoch u64 | module 32 | module size u64 | base id 32 | mode u8
//! mode 0 (whole): base_len u64 | base | log_len u64 | log
//! mode 1 (tail):  offset u64 | len u64 | records
//! answer: BULK_OK, or BULK_MISSING then why (UTF-8); "behind:" asks for the whole copy
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt};
use liquid_core::NodeId;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use wasm_host::ModuleHash;

use super::{BULK_MISSING, BULK_OK, Executor, SNAPSHOT_MAX, SNAPSHOT_TIMEOUT, receive_file, stream_file};
use crate::daemon::checkpoint::{CopyError, Saved};
use crate::daemon::inbox::DriverMsg;
use liquid_core::functions::actors::lease::Pos;

/// A standby's copy of an actor checkpoint.
pub(super) const BULK_REPLICA: u8 = 3;

const MODE_WHOLE: u8 = 0;
const MODE_TAIL: u8 = 1;

/// Backoff between attempts to reach a standby that failed.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long a call with `group` durability waits for its standbys' acknowledgements.
pub(super) const QUORUM_WAIT: Duration = Duration::from_secs(5);

/// The newest checkpoint of an actor at its home: what its standbys are brought up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Note {
    hash: ModuleHash,
    size: u64,
    epoch: u64,
    base: [u8; 32],
    log_bytes: u64,
    n: u64,
}

/// What a standby is known to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mirror {
    epoch: u64,
    base: [u8; 32],
    log_bytes: u64,
}

pub(super) type Senders = std::sync::Mutex<std::collections::HashMap<(String, NodeId), watch::Sender<Option<Note>>>>;

/// Per (actor, standby), the newest checkpoint the standby acknowledged; calls waiting for a
/// quorum sleep on the condition variable.
#[derive(Default)]
pub(super) struct Acks {
    acked: std::sync::Mutex<std::collections::HashMap<(String, NodeId), Pos>>,
    changed: std::sync::Condvar,
}

impl Executor {
    /// After a checkpoint of actor `name` at `epoch`: brings each of `standbys` up to it, in
    /// the background; forgets standbys no longer named.
    pub(super) fn replicate(
        self: &Arc<Self>,
        name: &str,
        (hash, size): (ModuleHash, u64),
        epoch: u64,
        standbys: &[NodeId],
        saved: &Saved,
    ) {
        let note = Note { hash, size, epoch, base: saved.base, log_bytes: saved.log_bytes, n: saved.n };
        let Ok(mut senders) = self.replicas.lock() else { return };
        senders.retain(|(n, peer), _| n != name || standbys.contains(peer));
        for peer in standbys {
            let key = (name.to_string(), *peer);
            if let Some(tx) = senders.get(&key)
                && tx.send(Some(note)).is_ok()
            {
                continue;
            }
            let (tx, rx) = watch::channel(Some(note));
            senders.insert(key, tx);
            let me = self.clone();
            let (name, peer) = (name.to_string(), *peer);
            tokio::spawn(async move { me.replica_sender(name, peer, rx).await });
        }
    }

    /// Keeps standby `peer`'s copy of `name` up to the newest note, until the home forgets
    /// the standby (the channel closes).
    async fn replica_sender(self: Arc<Self>, name: String, peer: NodeId, mut rx: watch::Receiver<Option<Note>>) {
        let mut mirror: Option<Mirror> = None;
        // After a move the chain is the old home's, renamed: the old group's members hold it
        // already, so the first transfer of an epoch tries the tail on top of it (a wrong
        // guess answers "behind", and the whole checkpoint follows). The epoch last guessed:
        let mut guessed: Option<u64> = None;
        let mut backoff = RETRY_MIN;
        loop {
            let Some(note) = *rx.borrow_and_update() else { return };
            if mirror.is_some_and(|m| m.epoch == note.epoch && m.base == note.base && m.log_bytes >= note.log_bytes) {
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let same = |m: &Mirror| m.epoch == note.epoch && m.base == note.base && m.log_bytes <= note.log_bytes;
            let mut tail = mirror.filter(same);
            if tail.is_none() && guessed != Some(note.epoch) {
                tail = self.adopted_tip(&name).filter(same);
                guessed = Some(note.epoch);
            }
            let sent = tokio::time::timeout(SNAPSHOT_TIMEOUT, self.send_copy(&name, peer, note, tail)).await;
            let sent = sent.unwrap_or_else(|_| Err(format!("took over {} s", SNAPSHOT_TIMEOUT.as_secs())));
            let outcome = match &sent {
                Ok(_) => "ok",
                Err(e) if e.starts_with("behind:") => "behind",
                Err(_) => "failed",
            };
            self.metrics.replica_copies.get_or_create(&vec![("outcome".into(), outcome.into())]).inc();
            match sent {
                Ok(bytes) => {
                    self.metrics.replica_bytes.inc_by(bytes);
                    mirror = Some(Mirror { epoch: note.epoch, base: note.base, log_bytes: note.log_bytes });
                    backoff = RETRY_MIN;
                    self.acked(&name, peer, Pos { epoch: note.epoch, n: note.n });
                }
                Err(e) if e.starts_with("behind:") && tail.is_some() => {
                    // Its copy is not what this node thought: send the whole checkpoint now.
                    debug!(actor = %name, standby = %peer.short(), "standby's copy is behind: {e}");
                    mirror = None;
                }
                Err(e) => {
                    warn!(actor = %name, standby = %peer.short(), error = %e, retry_in_ms = backoff.as_millis() as u64, "could not copy the actor's checkpoint to a standby");
                    mirror = None;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// One transfer: the log's records after `tail.log_bytes`, or (no `tail`) the whole base
    /// and log. Bytes sent.
    async fn send_copy(&self, name: &str, peer: NodeId, note: Note, tail: Option<Mirror>) -> Result<u64, String> {
        let log_path = self.checkpoints.log_path(name, note.epoch);
        let mut log =
            tokio::fs::File::open(&log_path).await.map_err(|e| format!("opening {}: {e}", log_path.display()))?;
        // The log open here is the one whose header names the note's base (a compaction
        // since renames a new one over the path; this handle keeps the old file).
        let mut header = [0u8; 40];
        log.read_exact(&mut header).await.map_err(|e| format!("reading the log's header: {e}"))?;
        if header[8..] != note.base {
            return Err("the checkpoint was compacted meanwhile (a newer note follows)".into());
        }
        let pid = mesh::peer_id(&peer).ok_or("not a peer id")?;
        let mut s = self.mesh.open_bulk(pid).await.map_err(|e| e.to_string())?;
        let name_b = name.as_bytes();
        let mut head = vec![BULK_REPLICA];
        head.extend_from_slice(&u16::try_from(name_b.len()).map_err(|_| "name too long")?.to_be_bytes());
        head.extend_from_slice(name_b);
        head.extend_from_slice(&note.epoch.to_be_bytes());
        head.extend_from_slice(&note.hash.0);
        head.extend_from_slice(&note.size.to_be_bytes());
        head.extend_from_slice(&note.base);
        let mut buf = vec![0u8; 256 << 10];
        let sent = match tail {
            Some(m) => {
                let len = note.log_bytes - m.log_bytes;
                head.push(MODE_TAIL);
                head.extend_from_slice(&m.log_bytes.to_be_bytes());
                head.extend_from_slice(&len.to_be_bytes());
                s.write_all(&head).await.map_err(|e| e.to_string())?;
                log.seek(std::io::SeekFrom::Start(m.log_bytes)).await.map_err(|e| e.to_string())?;
                stream_file(&mut s, &mut log, len, &mut buf).await?;
                len
            }
            None => {
                let base_path = self.checkpoints.path(name, note.epoch);
                let mut base = tokio::fs::File::open(&base_path)
                    .await
                    .map_err(|e| format!("opening {}: {e}", base_path.display()))?;
                let base_len = base.metadata().await.map_err(|e| e.to_string())?.len();
                head.push(MODE_WHOLE);
                head.extend_from_slice(&base_len.to_be_bytes());
                s.write_all(&head).await.map_err(|e| e.to_string())?;
                stream_file(&mut s, &mut base, base_len, &mut buf).await?;
                s.write_all(&note.log_bytes.to_be_bytes()).await.map_err(|e| e.to_string())?;
                log.seek(std::io::SeekFrom::Start(0)).await.map_err(|e| e.to_string())?;
                stream_file(&mut s, &mut log, note.log_bytes, &mut buf).await?;
                base_len + note.log_bytes
            }
        };
        s.flush().await.map_err(|e| e.to_string())?;
        let mut status = [0u8; 1];
        s.read_exact(&mut status).await.map_err(|e| format!("no acknowledgement from the standby: {e}"))?;
        if status[0] != BULK_OK {
            let mut why = String::new();
            let _ = s.read_to_string(&mut why).await;
            return Err(why.trim().to_string());
        }
        Ok(sent)
    }

    /// A standby's side (after the kind byte): stores the copy, answers, tells the core.
    pub(super) async fn receive_copy(self: &Arc<Self>, from: libp2p::PeerId, mut s: libp2p::Stream) {
        let got = tokio::time::timeout(SNAPSHOT_TIMEOUT, self.store_received(&mut s)).await;
        let got = got.unwrap_or_else(|_| Err(CopyError::Invalid("the transfer took too long".into())));
        match got {
            Ok((name, pos, module)) => {
                // Durable here; acknowledged only if the core still accepts copies of that
                // epoch (it promised no later one meanwhile).
                let (tx, rx) = tokio::sync::oneshot::channel();
                let asked = self.driver.send(DriverMsg::ReplicaStored { name: name.clone(), pos, reply: tx }).await;
                let accepted = asked.is_ok() && rx.await.unwrap_or(false);
                let _ = async {
                    if accepted {
                        s.write_all(&[BULK_OK]).await?;
                    } else {
                        s.write_all(&[BULK_MISSING]).await?;
                        s.write_all(b"stale: this node promised a later epoch of the actor to another activation")
                            .await?;
                    }
                    s.flush().await?;
                    s.close().await
                }
                .await;
                debug!(%from, actor = %name, epoch = pos.epoch, n = pos.n, accepted, "stored a standby copy");
                // A standby that takes over must not depend on the home for the module: fetch
                // it now, from the home, while the home is there.
                if accepted
                    && let (Some((hash, size)), Some(home)) = (module, mesh::node_id(&from))
                    && !self.store.has(&hash)
                {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = me.ensure(&name, hash, size, &[home]).await {
                            warn!(actor = %name, error = %e, "a standby could not fetch the actor's module");
                        }
                    });
                }
            }
            Err(e) => {
                match &e {
                    CopyError::Behind(_) => debug!(%from, error = %e, "a standby copy does not extend ours"),
                    _ => warn!(%from, error = %e, "refused a standby copy"),
                }
                let _ = async {
                    s.write_all(&[BULK_MISSING]).await?;
                    s.write_all(e.to_string().as_bytes()).await?;
                    s.close().await
                }
                .await;
            }
        }
    }

    async fn store_received(
        self: &Arc<Self>,
        s: &mut libp2p::Stream,
    ) -> Result<(String, Pos, Option<(ModuleHash, u64)>), CopyError> {
        let broke = |e: std::io::Error| CopyError::Invalid(format!("the transfer broke: {e}"));
        let mut len2 = [0u8; 2];
        s.read_exact(&mut len2).await.map_err(broke)?;
        let mut name = vec![0u8; usize::from(u16::from_be_bytes(len2))];
        s.read_exact(&mut name).await.map_err(broke)?;
        let name = String::from_utf8(name).map_err(|_| CopyError::Invalid("the actor's name is not UTF-8".into()))?;
        wasm_host::manifest::validate_name(&name).map_err(|e| CopyError::Invalid(e.to_string()))?;
        let mut head = [0u8; 8 + 32 + 8 + 32 + 1];
        s.read_exact(&mut head).await.map_err(broke)?;
        let (epoch_b, rest) = head.split_at(8);
        let (hash_b, rest) = rest.split_at(32);
        let (size_b, rest) = rest.split_at(8);
        let size = u64::from_be_bytes(size_b.try_into().map_err(|_| CopyError::Invalid("header".into()))?);
        let (base_b, mode) = rest.split_at(32);
        let epoch = u64::from_be_bytes(epoch_b.try_into().map_err(|_| CopyError::Invalid("header".into()))?);
        let hash = ModuleHash(hash_b.try_into().map_err(|_| CopyError::Invalid("header".into()))?);
        let base: [u8; 32] = base_b.try_into().map_err(|_| CopyError::Invalid("header".into()))?;
        let mut len8 = [0u8; 8];
        match mode[0] {
            MODE_TAIL => {
                s.read_exact(&mut len8).await.map_err(broke)?;
                let offset = u64::from_be_bytes(len8);
                s.read_exact(&mut len8).await.map_err(broke)?;
                let len = u64::from_be_bytes(len8);
                if len > SNAPSHOT_MAX {
                    return Err(CopyError::Invalid(format!("{len} bytes of deltas is over the limit")));
                }
                let mut records = vec![0u8; usize::try_from(len).map_err(|_| CopyError::Invalid("too long".into()))?];
                s.read_exact(&mut records).await.map_err(broke)?;
                let me = self.clone();
                let nm = name.clone();
                let n = tokio::task::spawn_blocking(move || {
                    me.with_actor_idle(&nm, epoch, || {
                        me.checkpoints.append_copy(&nm, epoch, &hash, &base, offset, &records)
                    })
                })
                .await
                .map_err(|e| CopyError::Invalid(e.to_string()))??;
                Ok((name, Pos { epoch, n }, Some((hash, size))))
            }
            MODE_WHOLE => {
                let tmp = self.checkpoints.path(&name, epoch).with_extension("copy");
                let tmp_log = self.checkpoints.log_path(&name, epoch).with_extension("log.copy");
                if let Some(dir) = tmp.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                let mut buf = vec![0u8; 256 << 10];
                s.read_exact(&mut len8).await.map_err(broke)?;
                let base_len = u64::from_be_bytes(len8);
                if base_len > SNAPSHOT_MAX {
                    return Err(CopyError::Invalid(format!("a base of {base_len} bytes is over the limit")));
                }
                receive_file(s, &tmp, base_len, &mut buf).await.map_err(CopyError::Invalid)?;
                s.read_exact(&mut len8).await.map_err(broke)?;
                let log_len = u64::from_be_bytes(len8);
                if log_len > SNAPSHOT_MAX {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(CopyError::Invalid(format!("a log of {log_len} bytes is over the limit")));
                }
                if let Err(e) = receive_file(s, &tmp_log, log_len, &mut buf).await {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    return Err(CopyError::Invalid(e));
                }
                let me = self.clone();
                let nm = name.clone();
                let n = tokio::task::spawn_blocking(move || {
                    me.with_actor_idle(&nm, epoch, || me.checkpoints.store_copy(&nm, epoch, &hash, &tmp, &tmp_log))
                })
                .await
                .map_err(|e| CopyError::Invalid(e.to_string()))??;
                info!(actor = %name, epoch, n, bytes = base_len + log_len, "stored a whole standby copy");
                Ok((name, Pos { epoch, n }, Some((hash, size))))
            }
            other => Err(CopyError::Invalid(format!("unknown copy mode {other}"))),
        }
    }

    /// Runs `store` holding actor `name`'s slot (so no call of it runs here meanwhile),
    /// unless this node serves the actor itself at `epoch` or later: a copy never overwrites
    /// a live home's checkpoint.
    fn with_actor_idle(
        &self,
        name: &str,
        epoch: u64,
        store: impl FnOnce() -> Result<u64, CopyError>,
    ) -> Result<u64, CopyError> {
        let slot = self.slot(name).map_err(|e| CopyError::Invalid(e.to_string()))?;
        let g = slot.lock().map_err(|_| CopyError::Invalid("the actor's lock was poisoned".into()))?;
        if let Some(live) = g.as_ref().map(|l| l.epoch)
            && live >= epoch
        {
            return Err(CopyError::Stale(live));
        }
        let out = store();
        drop(g);
        out
    }

    /// The chain `name` arrived with when it moved here, as a guess of what the old group's
    /// members hold (see `replica_sender`).
    fn adopted_tip(&self, name: &str) -> Option<Mirror> {
        let (epoch, base, log_bytes) = self.adopted.lock().ok()?.get(name).copied()?;
        Some(Mirror { epoch, base, log_bytes })
    }

    /// Standby `peer` acknowledged `name`'s checkpoint at `pos`.
    fn acked(&self, name: &str, peer: NodeId, pos: Pos) {
        let mut acked = self.acks.acked.lock().unwrap_or_else(|p| p.into_inner());
        let e = acked.entry((name.to_string(), peer)).or_default();
        *e = (*e).max(pos);
        drop(acked);
        self.acks.changed.notify_all();
    }

    /// Blocks (on a call's thread) until `quorum` of `standbys` acknowledged `name`'s
    /// checkpoint at `pos` or later, at most [`QUORUM_WAIT`]. `Err` says how many did.
    pub(super) fn await_quorum(&self, name: &str, standbys: &[NodeId], quorum: usize, pos: Pos) -> Result<(), String> {
        let deadline = std::time::Instant::now() + QUORUM_WAIT;
        let mut acked = self.acks.acked.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let have = standbys
                .iter()
                .filter(|peer| acked.get(&(name.to_string(), **peer)).is_some_and(|p| *p >= pos))
                .count();
            if have >= quorum {
                return Ok(());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(format!(
                    "{have} of the {quorum} standby acknowledgements `group` durability needs arrived within {} s",
                    QUORUM_WAIT.as_secs()
                ));
            }
            acked = self.acks.changed.wait_timeout(acked, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
}
