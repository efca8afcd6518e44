//! Snapshots of an actor's instance: its state between calls, written to a stream and read
//! back into a fresh instance of the same module, on this node or another (orthogonal
//! persistence: the guest does nothing to be saved).
//!
//! Assumptions first. Between calls an actor's whole state is its linear memory plus its
//! *exported* mutable globals: every call returns fully, so non-exported globals such as
//! `__stack_pointer` are back at their initial value, and the Liquid ABI provides no imported
//! globals. Tables are taken to be as instantiation left them (compilers for the Liquid ABI
//! do not grow or rewrite tables at run time). A poisoned actor (one whose call trapped
//! midway) is refused: its memory may be half-updated.
//!
//! The format, integers little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `LQSNAP1\0` |
//! | 4 | format version, `1` |
//! | 32 | the module's [`ModuleHash`] |
//! | 8 | memory size, bytes (a whole number of Wasm pages) |
//! | 4 | number of exported mutable globals (at most [`GLOBALS_MAX`]) |
//! | per global | name length (2), UTF-8 name (at most [`GLOBAL_NAME_MAX`]), type (1: 0 = i32, 1 = i64, 2 = f32, 3 = f64), value bits (8) |
//! | rest | one zstd frame (level 1) holding the memory, then a 32-byte BLAKE3 checksum (key derived from `liquid actor snapshot v1`) of the header bytes and the memory |
//!
//! Memory is streamed in chunks from the instance through the compressor, and on restore
//! from the decompressor straight into the new instance's memory: no second copy of memory
//! is ever held. Zero pages, the common case, compress to almost nothing. The checksum sits
//! inside the compressed frame, so a torn, truncated or altered snapshot is refused, and a
//! restore never returns an actor built from one.

use std::io::{self, Read, Write};

use crate::manifest::ModuleHash;
use crate::outcome::InvokeError;

/// The first bytes of every snapshot.
pub const MAGIC: [u8; 8] = *b"LQSNAP1\0";
/// The format version this build writes and reads.
pub const VERSION: u32 = 1;
/// The most exported mutable globals a snapshot may hold; a module with more is refused.
pub const GLOBALS_MAX: usize = 4096;
/// The longest global export name a snapshot may hold, bytes.
pub const GLOBAL_NAME_MAX: usize = 1024;

/// Memory moves through the compressor in pieces this large.
const CHUNK: usize = 1 << 20;
/// zstd level 1: fast, and zero pages shrink to nothing anyway.
const LEVEL: i32 = 1;
/// The largest zstd window a restore accepts (8 MiB), so a hostile frame cannot make the
/// decompressor allocate more. Level 1 writes windows far below it.
const WINDOW_LOG_MAX: u32 = 23;
/// The BLAKE3 key context of the checksum.
const CHECKSUM_CONTEXT: &str = "liquid actor snapshot v1";

/// What a written snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The actor's memory, bytes (uncompressed).
    pub memory_bytes: u64,
    /// The exported mutable globals saved.
    pub globals: usize,
    /// Bytes written to the stream, header and trailer included.
    pub written_bytes: u64,
}

/// Why a snapshot could not be written or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The actor's last call failed midway; its memory may be half-updated. Activate it
    /// again (or restore an earlier snapshot) instead.
    #[error("the actor's instance failed earlier and may be half-updated, so it is not saved: {0}")]
    Poisoned(String),
    /// The stream does not start with the snapshot magic.
    #[error("not an actor snapshot (bad magic bytes)")]
    NotASnapshot,
    /// Written by another format version.
    #[error("snapshot format version {found}; this node reads version {supported}")]
    Version {
        /// The version in the snapshot.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// A snapshot of another module: it cannot restore this one (deploy the module it was
    /// taken from, or activate this one afresh).
    #[error("the snapshot is of module {snapshot}, not of {module}")]
    WrongModule {
        /// The module the snapshot was taken from.
        snapshot: ModuleHash,
        /// The module asked to restore it.
        module: ModuleHash,
    },
    /// The snapshot's memory is larger than this function may have here.
    #[error("the snapshot holds {bytes} bytes of memory; the limit here is {limit} (limits.memory_mib)")]
    MemoryTooLarge {
        /// Memory claimed by the snapshot, bytes.
        bytes: u64,
        /// The limit, bytes.
        limit: u64,
    },
    /// The snapshot ends early: torn by a crash or cut short in transit.
    #[error("the snapshot is truncated: {0}")]
    Truncated(String),
    /// The snapshot is damaged or inconsistent with its module (checksum mismatch, a bad
    /// compressed stream, a malformed header…).
    #[error("the snapshot is corrupt: {0}")]
    Corrupt(String),
    /// The actor holds state the format cannot carry (a reference or vector global).
    #[error("the actor cannot be snapshotted: {0}")]
    Unsupported(String),
    /// Reading or writing the underlying stream failed.
    #[error("snapshot I/O: {0}")]
    Io(#[source] io::Error),
    /// The new instance could not be created.
    #[error("instantiating the restored actor: {0}")]
    Instance(InvokeError),
}

impl From<io::Error> for SnapshotError {
    fn from(e: io::Error) -> Self {
        SnapshotError::Io(e)
    }
}

/// An exported mutable global's value, as bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GlobalValue {
    /// An i32.
    I32(i32),
    /// An i64.
    I64(i64),
    /// An f32's bits.
    F32(u32),
    /// An f64's bits.
    F64(u64),
}

impl GlobalValue {
    fn tag_bits(self) -> (u8, u64) {
        match self {
            GlobalValue::I32(v) => (0, u64::from(v as u32)),
            GlobalValue::I64(v) => (1, v as u64),
            GlobalValue::F32(v) => (2, u64::from(v)),
            GlobalValue::F64(v) => (3, v),
        }
    }

    fn from_tag_bits(tag: u8, bits: u64) -> Result<Self, SnapshotError> {
        let narrow = || u32::try_from(bits).map_err(|_| SnapshotError::Corrupt("a 32-bit global holds 64 bits".into()));
        Ok(match tag {
            0 => GlobalValue::I32(narrow()? as i32),
            1 => GlobalValue::I64(bits as i64),
            2 => GlobalValue::F32(narrow()?),
            3 => GlobalValue::F64(bits),
            t => return Err(SnapshotError::Corrupt(format!("unknown global type tag {t}"))),
        })
    }
}

/// The header: everything before the compressed memory.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub hash: ModuleHash,
    pub memory_bytes: u64,
    pub globals: Vec<(String, GlobalValue)>,
}

impl Header {
    fn encode(&self) -> Result<Vec<u8>, SnapshotError> {
        if self.globals.len() > GLOBALS_MAX {
            return Err(SnapshotError::Unsupported(format!(
                "{} exported mutable globals; a snapshot holds at most {GLOBALS_MAX}",
                self.globals.len()
            )));
        }
        let mut out = Vec::with_capacity(64 + self.globals.len() * 24);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.hash.0);
        out.extend_from_slice(&self.memory_bytes.to_le_bytes());
        out.extend_from_slice(&(self.globals.len() as u32).to_le_bytes());
        for (name, value) in &self.globals {
            if name.len() > GLOBAL_NAME_MAX {
                return Err(SnapshotError::Unsupported(format!(
                    "global export name of {} bytes; at most {GLOBAL_NAME_MAX}",
                    name.len()
                )));
            }
            let (tag, bits) = value.tag_bits();
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.push(tag);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        Ok(out)
    }
}

/// Writes a snapshot: `header`, then `memory` (the live instance's, borrowed, never copied
/// whole) through the compressor, then the checksum.
pub(crate) fn write(w: &mut impl Write, header: &Header, memory: &[u8]) -> Result<SnapshotInfo, SnapshotError> {
    let head = header.encode()?;
    let mut hasher = blake3::Hasher::new_derive_key(CHECKSUM_CONTEXT);
    hasher.update(&head);
    let mut out = Counting { inner: w, written: 0 };
    out.write_all(&head).map_err(SnapshotError::Io)?;
    let mut z = zstd::stream::write::Encoder::new(&mut out, LEVEL).map_err(SnapshotError::Io)?;
    // The content size goes into the frame and lets zstd pick its window for this input.
    z.set_pledged_src_size(Some(memory.len() as u64 + 32)).map_err(SnapshotError::Io)?;
    for chunk in memory.chunks(CHUNK) {
        hasher.update(chunk);
        z.write_all(chunk).map_err(SnapshotError::Io)?;
    }
    z.write_all(hasher.finalize().as_bytes()).map_err(SnapshotError::Io)?;
    z.finish().map_err(SnapshotError::Io)?;
    out.flush().map_err(SnapshotError::Io)?;
    Ok(SnapshotInfo { memory_bytes: memory.len() as u64, globals: header.globals.len(), written_bytes: out.written })
}

/// Checks a whole snapshot without a runtime: its header, a memory size of at most
/// `memory_limit` bytes, the compressed memory and the checksum. Returns the module it was
/// taken from and its memory size. Memory is decompressed into a scratch buffer of the
/// claimed size (allocated only after the claim passed the limit).
pub fn verify(r: impl Read, memory_limit: u64) -> Result<(ModuleHash, u64), SnapshotError> {
    let mut reader = Reader::new(r);
    let header = reader.header()?;
    if header.memory_bytes > memory_limit {
        return Err(SnapshotError::MemoryTooLarge { bytes: header.memory_bytes, limit: memory_limit });
    }
    let len = usize::try_from(header.memory_bytes)
        .map_err(|_| SnapshotError::MemoryTooLarge { bytes: header.memory_bytes, limit: memory_limit })?;
    let mut scratch = vec![0u8; len];
    reader.memory(&mut scratch)?;
    Ok((header.hash, header.memory_bytes))
}

/// Reads a snapshot in two steps: [`Reader::header`], then, once the caller has checked it
/// and sized the new memory, [`Reader::memory`].
pub(crate) struct Reader<R> {
    source: Source<R>,
    hasher: blake3::Hasher,
}

impl<R: Read> Reader<R> {
    /// A reader of a snapshot at the start of `r`.
    pub fn new(r: R) -> Self {
        Reader { source: Source { inner: r, failed: false }, hasher: blake3::Hasher::new_derive_key(CHECKSUM_CONTEXT) }
    }

    fn exact<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut buf = [0u8; N];
        self.source.read_exact(&mut buf).map_err(|e| self.source.error(e, "the header"))?;
        self.hasher.update(&buf);
        Ok(buf)
    }

    /// Reads and validates the header. Sizes in it are bounded before anything is allocated
    /// on their account; the caller still checks the memory size against its limit.
    pub fn header(&mut self) -> Result<Header, SnapshotError> {
        if self.exact::<8>()? != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let version = u32::from_le_bytes(self.exact()?);
        if version != VERSION {
            return Err(SnapshotError::Version { found: version, supported: VERSION });
        }
        let hash = ModuleHash(self.exact()?);
        let memory_bytes = u64::from_le_bytes(self.exact()?);
        let count = u32::from_le_bytes(self.exact()?) as usize;
        if count > GLOBALS_MAX {
            return Err(SnapshotError::Corrupt(format!("{count} globals claimed; at most {GLOBALS_MAX}")));
        }
        let mut globals = Vec::with_capacity(count);
        for _ in 0..count {
            let len = u16::from_le_bytes(self.exact()?) as usize;
            if len > GLOBAL_NAME_MAX {
                return Err(SnapshotError::Corrupt(format!("a global name of {len} bytes; at most {GLOBAL_NAME_MAX}")));
            }
            let mut name = vec![0u8; len];
            self.source.read_exact(&mut name).map_err(|e| self.source.error(e, "the header"))?;
            self.hasher.update(&name);
            let name =
                String::from_utf8(name).map_err(|_| SnapshotError::Corrupt("a global name is not UTF-8".into()))?;
            let [tag] = self.exact::<1>()?;
            let value = GlobalValue::from_tag_bits(tag, u64::from_le_bytes(self.exact()?))?;
            globals.push((name, value));
        }
        Ok(Header { hash, memory_bytes, globals })
    }

    /// Decompresses the memory into `dst` (exactly the header's memory size, already
    /// checked), then verifies the checksum and that the frame ends there.
    pub fn memory(mut self, dst: &mut [u8]) -> Result<(), SnapshotError> {
        let mut z = zstd::stream::read::Decoder::new(&mut self.source).map_err(SnapshotError::Io)?.single_frame();
        z.window_log_max(WINDOW_LOG_MAX).map_err(SnapshotError::Io)?;
        let mut result = Ok(());
        for chunk in dst.chunks_mut(CHUNK) {
            if let Err(e) = z.read_exact(chunk) {
                result = Err(e);
                break;
            }
            self.hasher.update(chunk);
        }
        let mut sum = [0u8; 32];
        let mut end = [0u8; 1];
        let result = result
            .and_then(|()| z.read_exact(&mut sum))
            .and_then(|()| z.read(&mut end))
            .map_err(|e| (e, "the compressed memory"));
        drop(z);
        match result {
            Err((e, what)) => Err(self.source.error(e, what)),
            Ok(0) if sum == *self.hasher.finalize().as_bytes() => Ok(()),
            Ok(0) => Err(SnapshotError::Corrupt("checksum mismatch: the header or the memory was altered".into())),
            Ok(_) => Err(SnapshotError::Corrupt("data past the checksum in the compressed frame".into())),
        }
    }
}

/// The caller's stream, remembering whether an error came from it (an I/O error) rather
/// than from the decompressor (a corrupt snapshot).
struct Source<R> {
    inner: R,
    failed: bool,
}

impl<R> Source<R> {
    fn error(&mut self, e: io::Error, what: &str) -> SnapshotError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            SnapshotError::Truncated(format!("it ends inside {what}"))
        } else if std::mem::take(&mut self.failed) {
            SnapshotError::Io(e)
        } else {
            SnapshotError::Corrupt(format!("{what}: {e}"))
        }
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| self.failed = e.kind() != io::ErrorKind::Interrupted)
    }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The first bytes of every delta.
pub const DELTA_MAGIC: [u8; 8] = *b"LQDELTA\x01";
/// The BLAKE3 key context of a delta's checksum.
const DELTA_CONTEXT: &str = "liquid actor delta v1";
/// The smallest and largest page size a delta may count in (host pages: 4 KiB on x86, up
/// to 64 KiB on some ARM kernels).
const DELTA_PAGE_MIN: usize = 1 << 10;
const DELTA_PAGE_MAX: usize = 1 << 20;

/// Where a delta belongs: the base snapshot it applies to (an identifier its store chooses,
/// such as a hash of the base's bytes) and its place in the chain after that base (1 for
/// the first delta).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Link {
    /// The base's identifier.
    pub base: [u8; 32],
    /// The delta's sequence number after the base, from 1.
    pub seq: u64,
}

/// What a written or applied delta holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaInfo {
    /// Pages carried.
    pub pages: usize,
    /// Their size, bytes (the writer's host page size).
    pub page_size: usize,
    /// The memory's size after the delta, bytes.
    pub memory_bytes: u64,
    /// The delta's encoded size, bytes.
    pub written_bytes: u64,
}

/// A decoded, verified delta.
pub(crate) struct Delta {
    pub link: Link,
    pub page: usize,
    pub indices: Vec<u32>,
    pub header: Header,
    /// The pages' bytes, `indices.len() × page`, in index order.
    pub data: Vec<u8>,
}

/// Encodes a delta: the pages of `memory` named by `indices` (ascending, in units of `page`
/// bytes) plus `header` (the module, the memory's size and every exported mutable global).
///
/// Layout, integers little-endian: [`DELTA_MAGIC`] (8) | base (32) | seq (8) | page size (4)
/// | page count (4) | page indices (4 each, ascending) | the snapshot header (as in a
/// snapshot: magic, version, module, memory size, globals) | one zstd frame (level 1) of the
/// pages' bytes | a 32-byte BLAKE3 checksum (key derived from `liquid actor delta v1`) of
/// every byte before it. The checksum covers the compressed bytes, so a damaged delta is
/// refused before anything is decompressed.
pub(crate) fn encode_delta(
    link: &Link,
    header: &Header,
    page: usize,
    memory: &[u8],
    indices: &[u32],
) -> Result<Vec<u8>, SnapshotError> {
    let head = header.encode()?;
    let page32 = u32::try_from(page).map_err(|_| SnapshotError::Unsupported(format!("a page of {page} bytes")))?;
    let count = u32::try_from(indices.len()).map_err(|_| SnapshotError::Unsupported("too many pages".into()))?;
    let mut out = Vec::with_capacity(64 + indices.len() * 4 + head.len() + indices.len() * 64);
    out.extend_from_slice(&DELTA_MAGIC);
    out.extend_from_slice(&link.base);
    out.extend_from_slice(&link.seq.to_le_bytes());
    out.extend_from_slice(&page32.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for i in indices {
        out.extend_from_slice(&i.to_le_bytes());
    }
    out.extend_from_slice(&head);
    let mut z = zstd::stream::write::Encoder::new(&mut out, LEVEL).map_err(SnapshotError::Io)?;
    z.set_pledged_src_size(Some((indices.len() * page) as u64)).map_err(SnapshotError::Io)?;
    for &i in indices {
        let start = i as usize * page;
        let bytes = memory
            .get(start..start + page)
            .ok_or_else(|| SnapshotError::Corrupt(format!("page {i} lies past the memory's {} bytes", memory.len())))?;
        z.write_all(bytes).map_err(SnapshotError::Io)?;
    }
    z.finish().map_err(SnapshotError::Io)?;
    let sum = delta_checksum(&out);
    out.extend_from_slice(&sum);
    Ok(out)
}

/// The checksum a delta ends with, over every byte before it. Public for fuzzing (a fuzzer
/// seals arbitrary bodies with it to reach the parser behind the checksum).
#[doc(hidden)]
pub fn delta_checksum(body: &[u8]) -> [u8; 32] {
    *blake3::Hasher::new_derive_key(DELTA_CONTEXT).update(body).finalize().as_bytes()
}

/// Decodes and verifies a delta whose memory may be at most `memory_limit` bytes: the
/// checksum first, then every size against the others before anything is allocated on their
/// account.
pub(crate) fn decode_delta(bytes: &[u8], memory_limit: u64) -> Result<Delta, SnapshotError> {
    const FIXED: usize = 8 + 32 + 8 + 4 + 4;
    if bytes.len() < FIXED + 32 {
        return Err(SnapshotError::Truncated(format!("a delta of {} bytes", bytes.len())));
    }
    if bytes[..8] != DELTA_MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if delta_checksum(body) != sum {
        return Err(SnapshotError::Corrupt("the delta's checksum does not match: it was altered or cut short".into()));
    }
    let u32_at = |o: usize| u32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]]);
    let mut base = [0u8; 32];
    base.copy_from_slice(&body[8..40]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&body[40..48]);
    let link = Link { base, seq: u64::from_le_bytes(seq) };
    let page = u32_at(48) as usize;
    if !page.is_power_of_two() || !(DELTA_PAGE_MIN..=DELTA_PAGE_MAX).contains(&page) {
        return Err(SnapshotError::Corrupt(format!("a page size of {page} bytes")));
    }
    let count = u32_at(52) as usize;
    let indices_end = FIXED
        .checked_add(count.checked_mul(4).ok_or_else(|| SnapshotError::Corrupt("page count".into()))?)
        .filter(|e| *e <= body.len())
        .ok_or_else(|| SnapshotError::Corrupt(format!("{count} pages claimed in a delta of {} bytes", bytes.len())))?;
    let indices: Vec<u32> = (FIXED..indices_end).step_by(4).map(u32_at).collect();
    let mut rest = &body[indices_end..];
    let header = Reader::new(&mut rest).header()?;
    if header.memory_bytes > memory_limit {
        return Err(SnapshotError::MemoryTooLarge { bytes: header.memory_bytes, limit: memory_limit });
    }
    let pages_in_memory = header.memory_bytes / page as u64;
    if indices.windows(2).any(|w| w[0] >= w[1]) || indices.last().is_some_and(|&l| u64::from(l) >= pages_in_memory) {
        return Err(SnapshotError::Corrupt("page indices out of order or past the memory's end".into()));
    }
    // count × page ≤ memory_bytes ≤ memory_limit now, so this allocation is bounded.
    let mut data = vec![0u8; count * page];
    let mut z = zstd::stream::read::Decoder::with_buffer(rest).map_err(SnapshotError::Io)?.single_frame();
    z.window_log_max(WINDOW_LOG_MAX).map_err(SnapshotError::Io)?;
    z.read_exact(&mut data).map_err(|e| SnapshotError::Corrupt(format!("the delta's pages: {e}")))?;
    let mut end = [0u8; 1];
    if z.read(&mut end).map_err(|e| SnapshotError::Corrupt(format!("the delta's pages: {e}")))? != 0 {
        return Err(SnapshotError::Corrupt("more page bytes than pages".into()));
    }
    Ok(Delta { link, page, indices, header, data })
}

/// Checks a delta without a runtime: checksum, sizes within `memory_limit`, page indices and
/// the compressed pages. Returns the module it belongs to, its link and its memory size.
pub fn verify_delta(bytes: &[u8], memory_limit: u64) -> Result<(ModuleHash, Link, u64), SnapshotError> {
    let d = decode_delta(bytes, memory_limit)?;
    Ok((d.header.hash, d.link, d.header.memory_bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn header(memory_bytes: u64) -> Header {
        Header {
            hash: ModuleHash([9; 32]),
            memory_bytes,
            globals: vec![
                ("a".into(), GlobalValue::I32(-5)),
                ("b".into(), GlobalValue::I64(i64::MIN)),
                ("c".into(), GlobalValue::F32(1.5f32.to_bits())),
                ("d".into(), GlobalValue::F64((-2.25f64).to_bits())),
            ],
        }
    }

    #[test]
    fn round_trips_header_and_memory() {
        let mut mem = vec![0u8; 3 * CHUNK + 17];
        mem[5] = 1;
        mem[CHUNK * 2 + 3] = 0xff;
        let mut buf = Vec::new();
        let info = write(&mut buf, &header(mem.len() as u64), &mem).unwrap();
        assert_eq!(info.written_bytes, buf.len() as u64);
        assert!(buf.len() < 4096, "{} bytes", buf.len());
        let mut r = Reader::new(buf.as_slice());
        let h = r.header().unwrap();
        assert_eq!(h.globals, header(0).globals);
        let mut back = vec![0u8; h.memory_bytes as usize];
        r.memory(&mut back).unwrap();
        assert_eq!(back, mem);
    }

    #[test]
    fn every_flipped_header_byte_is_refused() {
        let mem = vec![3u8; 100];
        let mut buf = Vec::new();
        write(&mut buf, &header(100), &mem).unwrap();
        let head_len = header(100).encode().unwrap().len();
        for i in 0..head_len {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            let mut r = Reader::new(bad.as_slice());
            let ok = r.header().and_then(|h| {
                let mut back = vec![0u8; usize::try_from(h.memory_bytes).unwrap_or(usize::MAX).min(1 << 20)];
                r.memory(&mut back)
            });
            assert!(ok.is_err(), "flipping header byte {i} went unnoticed");
        }
    }

    #[test]
    fn an_io_error_is_not_called_corruption() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        assert!(matches!(Reader::new(Broken).header(), Err(SnapshotError::Io(_))));
    }
}
