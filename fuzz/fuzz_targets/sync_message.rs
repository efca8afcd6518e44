//! Feeds arbitrary bytes to a replica as a sync message from a peer: it must refuse them or
//! apply them, never panic; a document that took them must still read, and still answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use state_sync::automerge::ActorId;
use state_sync::{Document, Replica, replica::Config};

fuzz_target!(|data: &[u8]| {
    let mut r: Replica<&'static str> = Replica::new(Document::new(ActorId::from(&b"fuzz-actor"[..])), Config::default());
    if r.receive(&"peer", data).is_ok() {
        let _ = r.doc().value();
        let _ = r.generate(&"peer");
    }
});
