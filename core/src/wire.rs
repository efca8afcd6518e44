//! The wire format: a versioned CBOR envelope around every message between nodes.
//!
//! An envelope is the CBOR array `[version, message]`. Decoding reads the version first and
//! refuses any version it does not speak *before* interpreting the body, so a future agent's
//! messages are rejected with [`WireError::UnsupportedVersion`], never misread. Every decoding
//! failure is an error value: peers' bytes can never panic a node.

use serde::{Deserialize, Serialize};

use crate::{membership, objects};

/// The envelope version this build speaks.
pub const VERSION: u16 = 1;

/// The largest control message a node accepts or sends, in bytes. Bulk data (packages,
/// snapshots) travels on streams, not in messages. A full membership state of 10,000 members
/// is about 2 MiB.
pub const MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Everything nodes say to each other, by subsystem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Membership, liveness and RTT probing.
    Membership(membership::Message),
    /// Object replication.
    Objects(objects::Message),
    /// Forwarded invocations. Boxed: they are rare next to membership traffic and twice its
    /// size, and every message and output is moved through queues several times.
    Functions(Box<crate::functions::Message>),
}

impl Message {
    /// A short, stable name of the message kind, for metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Membership(m) => m.kind(),
            Message::Objects(m) => m.kind(),
            Message::Functions(m) => m.kind(),
        }
    }
}

/// Why bytes from a peer were not a message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The envelope names a version this agent does not speak. Upgrade the older agent.
    #[error("unsupported envelope version {got} (this agent speaks {VERSION})")]
    UnsupportedVersion {
        /// The version the peer sent.
        got: u16,
    },
    /// The message exceeds [`MESSAGE_BYTES_MAX`].
    #[error("message of {len} bytes exceeds the limit of {MESSAGE_BYTES_MAX}")]
    TooLarge {
        /// The message's length.
        len: usize,
    },
    /// The bytes are not a well-formed envelope.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Encodes a message in the current envelope version.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    // Writing into a Vec cannot fail, and every message type is plain serde data.
    if let Err(e) = ciborium::into_writer(&(VERSION, msg), &mut out) {
        tracing::error!(error = %e, "encoding a message failed");
        out.clear();
    }
    out
}

/// The length of `msg`'s encoding, without keeping the bytes (the simulator's byte counts).
pub fn encoded_len(msg: &Message) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0 += data.len();
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match ciborium::into_writer(&(VERSION, msg), &mut count) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}

/// Decodes an envelope, checking its size and version first.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MESSAGE_BYTES_MAX {
        return Err(WireError::TooLarge { len: bytes.len() });
    }
    let (version, _): (u16, serde::de::IgnoredAny) =
        ciborium::from_reader(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion { got: version });
    }
    let (_, msg): (u16, Message) = ciborium::from_reader(bytes).map_err(|e| WireError::Malformed(e.to_string()))?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Message as M;

    #[test]
    fn round_trip() {
        let msg = Message::Membership(M::Ping { seq: 42, gossip: vec![] });
        let bytes = encode(&msg);
        assert_eq!(bytes.len(), encoded_len(&msg));
        assert_eq!(decode(&bytes), Ok(msg));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut bytes = Vec::new();
        ciborium::into_writer(&(7u16, "from the future"), &mut bytes).unwrap();
        assert_eq!(decode(&bytes), Err(WireError::UnsupportedVersion { got: 7 }));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\xff\xff\xff", b"\x82\x01\xa1", b"\x9f\x01"] {
            assert!(matches!(decode(bytes), Err(WireError::Malformed(_))), "{bytes:?}");
        }
        let big = vec![0u8; MESSAGE_BYTES_MAX + 1];
        assert!(matches!(decode(&big), Err(WireError::TooLarge { .. })));
    }
}
