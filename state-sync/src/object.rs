//! Object names (`namespace/key`) and paths into a document (`stats.count`, `items.0`).
//!
//! Both are validated on construction, so code that holds an [`ObjectName`] or a [`Path`]
//! never re-checks it. Both (de)serialize as their string form and refuse invalid strings.
//!
//! # Names
//! - **namespace**: 1–[`NAMESPACE_BYTES_MAX`] bytes of `a-z 0-9 _ -`, starting with a letter or
//!   digit. Lowercase only: namespaces carry configuration (replication factor) and must not
//!   differ by case alone.
//! - **key**: 1–[`KEY_BYTES_MAX`] bytes of `A-Z a-z 0-9 . _ - :`, not starting with `.`
//!   (so a key is never `.` or `..` in a URL or a file name).
//!
//! # Paths
//! Dot-separated segments: `stats.count`. A segment that indexes a list is a decimal number
//! without leading zeros (`items.0`, `items.12`); in a map the same segment is an ordinary key.
//! Segments cannot contain `.` or control characters; there are at most [`PATH_DEPTH_MAX`] of
//! them, each at most [`SEGMENT_BYTES_MAX`] bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest namespace, in bytes.
pub const NAMESPACE_BYTES_MAX: usize = 64;
/// The longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 200;
/// The most segments in a path.
pub const PATH_DEPTH_MAX: usize = 32;
/// The longest path segment, in bytes.
pub const SEGMENT_BYTES_MAX: usize = 256;

/// Why a string is not an object name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// No `/` between namespace and key.
    #[error("object name {name:?} has no '/': write it as NAMESPACE/KEY, e.g. app/users")]
    MissingSlash {
        /// The refused name.
        name: String,
    },
    /// The namespace is empty, too long or has a character outside `a-z 0-9 _ -`.
    #[error(
        "invalid namespace {namespace:?}: use 1-{NAMESPACE_BYTES_MAX} bytes of a-z, 0-9, '_' or '-', starting with a letter or digit"
    )]
    Namespace {
        /// The refused namespace.
        namespace: String,
    },
    /// The key is empty, too long, starts with `.` or has a character outside `A-Z a-z 0-9 . _ - :`.
    #[error(
        "invalid key {key:?}: use 1-{KEY_BYTES_MAX} bytes of A-Z, a-z, 0-9, '.', '_', '-' or ':', not starting with '.'"
    )]
    Key {
        /// The refused key.
        key: String,
    },
}

/// The name of an object: `namespace/key`, validated.
///
/// It compares, orders and hashes as its `namespace/key` string (the slash's position
/// follows from the string, as namespaces hold no slash), so maps keyed by names can be
/// looked up and ranged over by `&str`, e.g. to list a page of names after a cursor.
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectName {
    full: String,
    slash: usize,
}

impl PartialEq for ObjectName {
    fn eq(&self, other: &Self) -> bool {
        self.full == other.full
    }
}

impl Eq for ObjectName {}

impl PartialOrd for ObjectName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ObjectName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.full.cmp(&other.full)
    }
}

impl std::hash::Hash for ObjectName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.full.hash(state);
    }
}

impl std::borrow::Borrow<str> for ObjectName {
    fn borrow(&self) -> &str {
        &self.full
    }
}

impl ObjectName {
    /// Builds a name from its two parts, validating both.
    pub fn new(namespace: &str, key: &str) -> Result<Self, NameError> {
        if !valid_namespace(namespace) {
            return Err(NameError::Namespace { namespace: namespace.to_owned() });
        }
        if !valid_key(key) {
            return Err(NameError::Key { key: key.to_owned() });
        }
        Ok(ObjectName { full: format!("{namespace}/{key}"), slash: namespace.len() })
    }

    /// Parses `namespace/key`.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        let (namespace, key) = name.split_once('/').ok_or_else(|| NameError::MissingSlash { name: name.to_owned() })?;
        Self::new(namespace, key)
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.full[..self.slash]
    }

    /// The key within the namespace.
    pub fn key(&self) -> &str {
        &self.full[self.slash + 1..]
    }

    /// The whole name, `namespace/key`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

fn valid_namespace(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= NAMESPACE_BYTES_MAX
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

fn valid_key(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= KEY_BYTES_MAX
        && b[0] != b'.'
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b':'))
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectName({})", self.full)
    }
}

impl std::str::FromStr for ObjectName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ObjectName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

impl From<ObjectName> for String {
    fn from(n: ObjectName) -> String {
        n.full
    }
}

/// Why a string is not a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is the empty string.
    #[error("empty path: name a key, e.g. stats.count")]
    Empty,
    /// Two dots in a row, or a leading or trailing dot.
    #[error("path {path:?} has an empty segment at position {position} (a leading, trailing or doubled '.')")]
    EmptySegment {
        /// The refused path.
        path: String,
        /// Which segment (from 0) is empty.
        position: usize,
    },
    /// More than [`PATH_DEPTH_MAX`] segments.
    #[error("path {path:?} has {depth} segments; at most {PATH_DEPTH_MAX} are allowed")]
    TooDeep {
        /// The refused path.
        path: String,
        /// Its number of segments.
        depth: usize,
    },
    /// A segment longer than [`SEGMENT_BYTES_MAX`].
    #[error("path segment {position} is {len} bytes long; at most {SEGMENT_BYTES_MAX} are allowed")]
    SegmentTooLong {
        /// Which segment (from 0).
        position: usize,
        /// Its length in bytes.
        len: usize,
    },
    /// A control character (a newline, a tab…) in a segment.
    #[error("path {path:?} contains a control character")]
    ControlCharacter {
        /// The refused path.
        path: String,
    },
}

/// A validated, non-empty dot-separated path into a document.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Path {
    segments: Vec<String>,
}

impl Path {
    /// Parses `a.b.0.c`.
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        if path.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter { path: path.to_owned() });
        }
        let mut segments = Vec::new();
        for (position, segment) in path.split('.').enumerate() {
            if segment.is_empty() {
                return Err(PathError::EmptySegment { path: path.to_owned(), position });
            }
            if segment.len() > SEGMENT_BYTES_MAX {
                return Err(PathError::SegmentTooLong { position, len: segment.len() });
            }
            if position >= PATH_DEPTH_MAX {
                let depth = path.split('.').count();
                return Err(PathError::TooDeep { path: path.to_owned(), depth });
            }
            segments.push(segment.to_owned());
        }
        Ok(Path { segments })
    }

    /// The segments, outermost first. Never empty.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The path of the first `n` segments, for error messages (`n` is clamped to `1..=len`).
    pub fn prefix(&self, n: usize) -> Path {
        let n = n.clamp(1, self.segments.len());
        Path { segments: self.segments[..n].to_vec() }
    }
}

/// Reads a segment as a list index: a decimal number without leading zeros that fits `usize`.
pub fn segment_index(segment: &str) -> Option<usize> {
    let canonical = segment == "0" || (!segment.starts_with('0') && segment.bytes().all(|b| b.is_ascii_digit()));
    if canonical { segment.parse().ok() } else { None }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("."))
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Path({self})")
    }
}

impl std::str::FromStr for Path {
    type Err = PathError;
    fn from_str(s: &str) -> Result<Self, PathError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Path {
    type Error = PathError;
    fn try_from(s: String) -> Result<Self, PathError> {
        Self::parse(&s)
    }
}

impl From<Path> for String {
    fn from(p: Path) -> String {
        p.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_display() {
        let n = ObjectName::parse("app/user:42.v1").unwrap();
        assert_eq!((n.namespace(), n.key(), n.as_str()), ("app", "user:42.v1", "app/user:42.v1"));
        assert_eq!(n.to_string(), "app/user:42.v1");
        assert_eq!(ObjectName::new("app", "user:42.v1").unwrap(), n);
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"app/user:42.v1\"");
        assert_eq!(serde_json::from_str::<ObjectName>(&json).unwrap(), n);
    }

    #[test]
    fn names_refuse_bad_input() {
        assert!(matches!(ObjectName::parse("nokey"), Err(NameError::MissingSlash { .. })));
        for ns in ["", "App", "-x", "a b", "a/b", &"a".repeat(NAMESPACE_BYTES_MAX + 1)] {
            assert!(matches!(ObjectName::new(ns, "k"), Err(NameError::Namespace { .. })), "{ns:?}");
        }
        for key in ["", ".", "..", ".hidden", "a/b", "a b", "é", &"k".repeat(KEY_BYTES_MAX + 1)] {
            assert!(matches!(ObjectName::new("ns", key), Err(NameError::Key { .. })), "{key:?}");
        }
        assert!(ObjectName::parse("ns/a/b").is_err(), "a second slash belongs to the key, which refuses it");
        assert!(serde_json::from_str::<ObjectName>("\"bad\"").is_err());
        assert!(ObjectName::new(&"a".repeat(NAMESPACE_BYTES_MAX), &"k".repeat(KEY_BYTES_MAX)).is_ok());
    }

    #[test]
    fn paths_parse() {
        let p = Path::parse("stats.count").unwrap();
        assert_eq!(p.segments(), ["stats", "count"]);
        assert_eq!(p.to_string(), "stats.count");
        assert_eq!(p.prefix(1).to_string(), "stats");
        assert_eq!(p.prefix(9).to_string(), "stats.count");
        assert_eq!(Path::parse("items.0.name").unwrap().segments().len(), 3);
        assert_eq!(Path::parse("ünï code").unwrap().segments(), ["ünï code"]);
        assert_eq!(serde_json::from_str::<Path>("\"a.b\"").unwrap(), Path::parse("a.b").unwrap());
    }

    #[test]
    fn paths_refuse_bad_input() {
        assert_eq!(Path::parse(""), Err(PathError::Empty));
        assert_eq!(Path::parse("a..b"), Err(PathError::EmptySegment { path: "a..b".into(), position: 1 }));
        assert!(matches!(Path::parse(".a"), Err(PathError::EmptySegment { position: 0, .. })));
        assert!(matches!(Path::parse("a."), Err(PathError::EmptySegment { position: 1, .. })));
        assert!(matches!(Path::parse("a\nb"), Err(PathError::ControlCharacter { .. })));
        let deep = vec!["x"; PATH_DEPTH_MAX + 1].join(".");
        assert!(matches!(Path::parse(&deep), Err(PathError::TooDeep { depth, .. }) if depth == PATH_DEPTH_MAX + 1));
        assert!(Path::parse(&vec!["x"; PATH_DEPTH_MAX].join(".")).is_ok());
        let long = "y".repeat(SEGMENT_BYTES_MAX + 1);
        assert!(matches!(Path::parse(&long), Err(PathError::SegmentTooLong { position: 0, .. })));
        let err = Path::parse("a..b").unwrap_err().to_string();
        assert!(err.contains("empty segment") && err.contains("a..b"), "{err}");
    }

    #[test]
    fn indexes_are_canonical_numbers() {
        assert_eq!(segment_index("0"), Some(0));
        assert_eq!(segment_index("12"), Some(12));
        for s in ["", "01", "-1", "1a", "+1", "99999999999999999999999"] {
            assert_eq!(segment_index(s), None, "{s:?}");
        }
    }
}
