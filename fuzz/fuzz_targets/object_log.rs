//! Feeds arbitrary bytes after a valid header to the object store as an object's log, then
//! restores the object: torn, corrupt or hostile records must be errors or dropped records,
//! never a panic, and a restored document must read.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use state_sync::automerge::ActorId;
use state_sync::{FileStore, ObjectName, SimStore, store};

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temp dir"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(name) = ObjectName::new("fuzz", "obj") else { return };
    // A valid header (as the store writes it) followed by the input, half of the time; the
    // input alone otherwise (the first byte decides).
    let mut bytes = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 0) {
        bytes.extend_from_slice(b"LQOBJ\0\0\x01");
        let n = name.as_str().as_bytes();
        let mut rec = (n.len() as u32).to_le_bytes().to_vec();
        rec.push(1);
        rec.extend_from_slice(n);
        let crc = crc32fast::hash(&rec);
        bytes.extend_from_slice(&rec);
        bytes.extend_from_slice(&crc.to_le_bytes());
    }
    bytes.extend_from_slice(data.get(1..).unwrap_or_default());
    let actor = ActorId::from(&b"fuzz-actor"[..]);
    // The file store (one input in 16: fsyncs make it slow) and the simulator's store share
    // the decoder, salvage and restore; the file store adds the files kept aside.
    if data.first().is_some_and(|b| b & 0x1e == 0) {
        let Ok(mut s) = FileStore::open(dir().path()) else { return };
        let path = s.path(&name);
        if std::fs::write(&path, &bytes).is_err() {
            return;
        }
        if let Ok(Some(r)) = store::restore(&mut s, &name, actor) {
            let _ = r.doc.value();
        }
        // Remove the log and every copy kept aside: left behind, they pile up by the
        // thousand and every later `FileStore::open` lists them (what made this target slow).
        if let Ok(entries) = std::fs::read_dir(dir().path()) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let _ = path;
    } else {
        let mut s = SimStore::new();
        s.put_image(&name, bytes);
        if let Ok(Some(r)) = store::restore(&mut s, &name, actor) {
            let _ = r.doc.value();
        }
    }
});
