//! The log's byte format (see [`crate::store`] for the layout): encoding, and a parser that
//! tells a torn tail (bad bytes with nothing intact after them) from damage (bad bytes with
//! intact records after them).

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::{Damage, Gap, Log, LogStats, RECORD_BYTES_MAX, StoreError, TornTail};
use crate::object::ObjectName;

/// The first bytes of every log; the last one is the format version.
pub(crate) const MAGIC: [u8; 8] = *b"LQOBJ\0\0\x01";
/// Record kind: the object's name (always the first record).
pub(crate) const NAME: u8 = 1;
/// Record kind: an incremental save.
pub(crate) const CHANGES: u8 = 2;
/// Record kind: a full save.
pub(crate) const SNAPSHOT: u8 = 3;
/// Bytes around a payload: length, kind, checksum.
pub(crate) const OVERHEAD: usize = 4 + 1 + 4;

/// Appends one record to `out`.
pub(crate) fn record(kind: u8, payload: &[u8], out: &mut Vec<u8>) -> Result<(), StoreError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|_| payload.len() <= RECORD_BYTES_MAX)
        .ok_or(StoreError::RecordTooLarge { len: payload.len() })?;
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A new log: the magic and the name record.
pub(crate) fn header(name: &ObjectName) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    // A name is at most a few hundred bytes: it always fits a record.
    let _ = record(NAME, name.as_str().as_bytes(), &mut out);
    out
}

/// A compacted log: the header and one snapshot record.
pub(crate) fn image(name: &ObjectName, snapshot: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = header(name);
    record(SNAPSHOT, snapshot, &mut out)?;
    Ok(out)
}

/// What a log's bytes hold.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// Not even a whole header: the log was being created when its node stopped, and was
    /// never durable. The caller deletes it.
    Unborn,
    /// The intact records, and where the intact part ends.
    Log {
        /// The records.
        log: Log,
        /// The length to cut the file to (equal to its length if nothing is torn). Only
        /// meaningful when `log.damage` is `None`: a damaged log is rewritten from `spans`.
        valid_len: usize,
        /// The byte ranges of the intact change and snapshot records, in order.
        spans: Vec<Range<usize>>,
    },
}

/// The record at `off`: (kind, payload, end), or `None` if it is short or its checksum fails.
fn next(bytes: &[u8], off: usize) -> Option<(u8, &[u8], usize)> {
    let rest = bytes.get(off..)?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if len > RECORD_BYTES_MAX {
        return None;
    }
    let body = rest.get(..5 + len)?;
    let crc = u32::from_le_bytes(rest.get(5 + len..OVERHEAD + len)?.try_into().ok()?);
    (crc32fast::hash(body) == crc).then(|| (body[4], &body[5..], off + OVERHEAD + len))
}

/// Whether a change or snapshot record could start at `off`, judging by its header alone
/// (its kind, and a length that fits the file); no checksum is computed.
fn plausible(bytes: &[u8], off: usize) -> bool {
    let Some(head) = bytes.get(off..off + 5) else { return false };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    matches!(head[4], CHANGES | SNAPSHOT) && len <= bytes.len().saturating_sub(off + OVERHEAD)
}

/// The first offset at or after `from` where an intact change or snapshot record starts,
/// if any: the end of a damaged stretch. `None` means nothing intact follows, so the bad
/// bytes are a torn tail.
///
/// A candidate must have a plausible header, be followed by the end of the file or by
/// another record's kind byte (or by fewer bytes than a header: a torn one), and pass its
/// checksum. Random bytes pass all of that at one offset with a probability far below
/// 2^-39 (two kind bytes, a length that fits, a CRC-32), so a torn tail is taken for
/// damage only if the bytes of the torn record themselves contain a whole, valid record.
/// The header checks come first so that a scan of a large log computes few checksums.
fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len()).find(|&p| {
        if !plausible(bytes, p) {
            return false;
        }
        let len = u32::from_le_bytes([bytes[p], bytes[p + 1], bytes[p + 2], bytes[p + 3]]) as usize;
        let end = p + OVERHEAD + len;
        let followed = end == bytes.len() || bytes.get(end + 4).is_none_or(|k| matches!(*k, CHANGES | SNAPSHOT));
        followed && next(bytes, p).is_some_and(|(kind, _, _)| matches!(kind, CHANGES | SNAPSHOT))
    })
}

/// Reads the name in a log's header, if the header is whole.
pub(crate) fn name(bytes: &[u8]) -> Option<ObjectName> {
    if bytes.get(..MAGIC.len())? != MAGIC {
        return None;
    }
    match next(bytes, MAGIC.len())? {
        (NAME, payload, _) => ObjectName::parse(std::str::from_utf8(payload).ok()?).ok(),
        _ => None,
    }
}

/// The names a log's header could hold if its name record is damaged (its length, kind or
/// checksum): every valid name its payload bytes start with, shortest first. The caller
/// picks the one its file is named after (by hash), which no damage can fake.
pub(crate) fn name_candidates(bytes: &[u8]) -> impl Iterator<Item = ObjectName> + '_ {
    let start = MAGIC.len() + 5;
    let magic = bytes.get(..MAGIC.len()) == Some(&MAGIC[..]);
    let payload = if magic { bytes.get(start..).unwrap_or_default() } else { &[] };
    (1..=payload.len())
        .filter_map(move |len| std::str::from_utf8(&payload[..len]).ok().and_then(|s| ObjectName::parse(s).ok()))
}

/// A new log holding `name`'s header and the records of `bytes` at `spans` (a salvage).
pub(crate) fn salvaged(name: &ObjectName, bytes: &[u8], spans: &[Range<usize>]) -> Vec<u8> {
    let mut out = header(name);
    for span in spans {
        out.extend_from_slice(&bytes[span.clone()]);
    }
    out
}

/// Parses the log of `expect`, stored at `path` (for error messages).
///
/// A record whose length or checksum fails starts a bad stretch. If an intact record
/// follows it (see [`resync`]), the stretch is *damage* (the disk or something else changed
/// bytes that were durable): it is recorded in [`Log::damage`] and parsing goes on after
/// it. Otherwise it is a torn tail, reported in [`Log::torn`].
pub(crate) fn parse(bytes: &[u8], expect: &ObjectName, path: &Path) -> Result<Parsed, StoreError> {
    let corrupt =
        |offset: usize, reason: String| StoreError::Corrupt { path: path.to_owned(), offset: offset as u64, reason };
    if bytes.len() < MAGIC.len() {
        return if MAGIC.starts_with(bytes) { Ok(Parsed::Unborn) } else { Err(corrupt(0, "not an object log".into())) };
    }
    if bytes[..MAGIC.len()] != MAGIC {
        let reason = if bytes[..7] == MAGIC[..7] {
            format!("format version {} is unknown to this build (it reads version {})", bytes[7], MAGIC[7])
        } else {
            "not an object log (wrong magic bytes)".to_owned()
        };
        return Err(corrupt(0, reason));
    }
    let mut gaps = Vec::new();
    let mut off = match next(bytes, MAGIC.len()) {
        Some((kind, payload, end)) => {
            if kind != NAME || payload != expect.as_str().as_bytes() {
                let found = String::from_utf8_lossy(payload);
                return Err(corrupt(
                    MAGIC.len(),
                    format!("expected the name record of {expect}, found kind {kind} {found:?}"),
                ));
            }
            end
        }
        None => match resync(bytes, MAGIC.len() + 1) {
            // The name record is damaged but records follow: the caller knows the name.
            Some(p) => {
                gaps.push(Gap { offset: MAGIC.len() as u64, bytes: (p - MAGIC.len()) as u64 });
                p
            }
            // A header that never became whole: the log was never durable.
            None => return Ok(Parsed::Unborn),
        },
    };
    let mut stats = LogStats { bytes: 0, base_bytes: 0, records: 1 };
    let mut chunks = Vec::new();
    let mut spans = Vec::new();
    let mut records_after = 0;
    loop {
        while let Some((kind, payload, end)) = next(bytes, off) {
            match kind {
                CHANGES | SNAPSHOT => {}
                other => return Err(corrupt(off, format!("unknown record kind {other}"))),
            }
            chunks.push(payload.to_vec());
            spans.push(off..end);
            stats.records += 1;
            records_after += u64::from(!gaps.is_empty());
            off = end;
        }
        if off >= bytes.len() {
            break;
        }
        match resync(bytes, off + 1) {
            Some(p) => {
                gaps.push(Gap { offset: off as u64, bytes: (p - off) as u64 });
                off = p;
            }
            None => break,
        }
    }
    // The sizes are those of the log as it is kept: cut after the last intact record, and
    // rewritten without the bad stretches if there are any.
    let header_len = header(expect).len() as u64;
    stats.base_bytes = header_len;
    stats.bytes = header_len;
    for (span, chunk_kind) in spans.iter().map(|s| (s, bytes[s.start + 4])) {
        stats.bytes += span.len() as u64;
        if chunk_kind == SNAPSHOT {
            stats.base_bytes = stats.bytes;
        }
    }
    let torn = (off < bytes.len()).then(|| TornTail { offset: off as u64, dropped_bytes: (bytes.len() - off) as u64 });
    let damage = (!gaps.is_empty()).then(|| Damage { gaps, kept: PathBuf::new(), records_after });
    Ok(Parsed::Log { log: Log { chunks, torn, damage, stats }, valid_len: off, spans })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> ObjectName {
        ObjectName::parse("ns/k").unwrap()
    }

    fn parsed(bytes: &[u8]) -> Log {
        match parse(bytes, &name(), Path::new("x")).unwrap() {
            Parsed::Log { log, .. } => log,
            Parsed::Unborn => panic!("unborn"),
        }
    }

    #[test]
    fn records_round_trip() {
        let mut b = header(&name());
        record(CHANGES, b"one", &mut b).unwrap();
        record(SNAPSHOT, b"", &mut b).unwrap();
        record(CHANGES, b"three", &mut b).unwrap();
        let log = parsed(&b);
        assert_eq!(log.chunks, [b"one".to_vec(), vec![], b"three".to_vec()]);
        assert_eq!(log.torn, None);
        assert_eq!(log.stats.bytes, b.len() as u64);
        assert_eq!(log.stats.records, 4);
        assert_eq!(log.stats.base_bytes, (b.len() - OVERHEAD - 5) as u64);
        assert_eq!(super::name(&b), Some(name()));
    }

    #[test]
    fn a_flipped_bit_ends_the_log_there() {
        let mut b = header(&name());
        let keep = b.len();
        record(CHANGES, b"one", &mut b).unwrap();
        let second = b.len();
        record(CHANGES, b"two", &mut b).unwrap();
        b[second + 6] ^= 1;
        let log = parsed(&b);
        assert_eq!(log.chunks, [b"one".to_vec()]);
        assert_eq!(log.torn, Some(TornTail { offset: second as u64, dropped_bytes: (b.len() - second) as u64 }));
        assert!(keep < second);
    }

    #[test]
    fn headers_are_checked() {
        for short in 0..MAGIC.len() {
            assert!(matches!(parse(&MAGIC[..short], &name(), Path::new("x")), Ok(Parsed::Unborn)));
        }
        let h = header(&name());
        for cut in MAGIC.len()..h.len() {
            assert!(matches!(parse(&h[..cut], &name(), Path::new("x")), Ok(Parsed::Unborn)), "cut at {cut}");
        }
        let other = header(&ObjectName::parse("ns/other").unwrap());
        assert!(matches!(parse(&other, &name(), Path::new("x")), Err(StoreError::Corrupt { .. })));
        let mut v2 = h.clone();
        v2[7] = 2;
        let err = parse(&v2, &name(), Path::new("x")).unwrap_err().to_string();
        assert!(err.contains("version 2"), "{err}");
        assert!(parse(b"garbage!!", &name(), Path::new("x")).is_err());
        let mut unknown = h;
        record(9, b"?", &mut unknown).unwrap();
        assert!(matches!(parse(&unknown, &name(), Path::new("x")), Err(StoreError::Corrupt { .. })));
    }
}
