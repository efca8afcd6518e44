//! The manifest (`liquid.toml`) and the module hash that names a function's code.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A module's BLAKE3 hash: the name of its code everywhere in the mesh.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModuleHash(pub [u8; 32]);

impl ModuleHash {
    /// The hash of these module bytes.
    pub fn of(bytes: &[u8]) -> Self {
        ModuleHash(*blake3::hash(bytes).as_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModuleHash({})", self.short())
    }
}

impl std::str::FromStr for ModuleHash {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| ManifestError::Invalid(format!("{s:?} is not a module hash")))?;
        Ok(ModuleHash(out))
    }
}

impl TryFrom<String> for ModuleHash {
    type Error = ManifestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ModuleHash> for String {
    fn from(h: ModuleHash) -> String {
        h.to_hex()
    }
}

/// Whether instances are per call or long-lived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A fresh instance per call; may serve from several nodes at once.
    #[default]
    Stateless,
    /// One long-lived activation whose memory and globals persist between calls.
    Actor,
}

impl Kind {
    /// `"stateless"` or `"actor"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Stateless => "stateless",
            Kind::Actor => "actor",
        }
    }
}

/// Per-call and per-node limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Fuel (≈ Wasm instructions) per call.
    pub fuel: u64,
    /// Wall-clock time per call, in milliseconds (the real driver only; the simulator
    /// bounds calls by fuel).
    pub wall_ms: u64,
    /// Linear memory cap, MiB.
    pub memory_mib: u32,
    /// Concurrent instances on one node; calls beyond it wait briefly, then are refused as
    /// overloaded.
    pub instances: u32,
    /// Output cap, KiB.
    pub output_kib: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { fuel: 1_000_000_000, wall_ms: 5_000, memory_mib: 64, instances: 16, output_kib: 1024 }
    }
}

impl Limits {
    /// The most any manifest may ask for; a node's operator cannot be made to give more.
    pub const MAX: Limits =
        Limits { fuel: 100_000_000_000, wall_ms: 300_000, memory_mib: 1024, instances: 256, output_kib: 16 * 1024 };
}

/// Which object namespaces a function may touch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObjectAccess {
    /// Namespaces it may read.
    pub read: Vec<String>,
    /// Namespaces it may read and write.
    pub write: Vec<String>,
}

impl ObjectAccess {
    /// May the function read objects in `ns`?
    pub fn may_read(&self, ns: &str) -> bool {
        self.read.iter().chain(&self.write).any(|n| n == ns)
    }

    /// May the function write objects in `ns`?
    pub fn may_write(&self, ns: &str) -> bool {
        self.write.iter().any(|n| n == ns)
    }
}

/// Where the function may run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Placement {
    /// Only nodes of this tier (`edge`, `fog` or `cloud`).
    pub tier: Option<String>,
    /// Only nodes with all these labels.
    pub labels: BTreeMap<String, String>,
    /// Only this node (a peer id).
    pub node: Option<String>,
}

/// The function's latency objective.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Slo {
    /// The latency callers should see, ms.
    pub latency_ms: Option<u64>,
}

/// A function's manifest: `liquid.toml`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The function's name: `a-z 0-9 -`, 1–63 characters, starting with a letter.
    pub name: String,
    /// Free-form version, for humans.
    #[serde(default = "default_version")]
    pub version: String,
    /// Stateless or actor.
    #[serde(default)]
    pub kind: Kind,
    /// The module file, relative to the manifest (only read by `liquid fn deploy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Object namespaces.
    #[serde(default)]
    pub objects: ObjectAccess,
    /// Placement constraints.
    #[serde(default)]
    pub placement: Placement,
    /// Latency objective.
    #[serde(default)]
    pub slo: Slo,
    /// Actor options (ignored for stateless functions).
    #[serde(default, skip_serializing_if = "ActorOptions::is_default")]
    pub actor: ActorOptions,
}

/// `[actor]`: how an actor's state is kept.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActorOptions {
    /// When a call is answered, relative to its checkpoint reaching the actor's group.
    pub durability: Durability,
}

impl ActorOptions {
    fn is_default(&self) -> bool {
        *self == ActorOptions::default()
    }
}

/// When an actor's call is answered (docs/functions.md, "Failover").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Once a majority of the actor's group (its home and standbys) holds the call's
    /// checkpoint durably: an acknowledged call survives the loss of the home.
    #[default]
    Group,
    /// Once the home fsynced it: survives kill -9 and a restart of the home, not its loss
    /// (copies reach the standbys after the answer).
    Local,
}

fn default_version() -> String {
    "0.0.0".into()
}

/// What is wrong with a manifest or module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The TOML does not parse or has unknown keys.
    #[error("liquid.toml: {0}")]
    Toml(String),
    /// A value is out of range or malformed.
    #[error("{0}")]
    Invalid(String),
}

impl Manifest {
    /// The manifest a bare module gets: defaults everywhere.
    pub fn for_module(name: &str) -> Manifest {
        Manifest {
            name: name.to_string(),
            version: default_version(),
            kind: Kind::Stateless,
            module: None,
            limits: Limits::default(),
            objects: ObjectAccess::default(),
            placement: Placement::default(),
            slo: Slo::default(),
            actor: ActorOptions::default(),
        }
    }

    /// Parses and validates `liquid.toml`.
    pub fn from_toml(text: &str) -> Result<Manifest, ManifestError> {
        let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Toml(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks every field; the error names the field and what is allowed.
    pub fn validate(&self) -> Result<(), ManifestError> {
        validate_name(&self.name)?;
        if self.version.is_empty() || self.version.len() > 64 {
            return Err(ManifestError::Invalid("version must be 1-64 characters".into()));
        }
        let l = &self.limits;
        let max = Limits::MAX;
        let check = |what: &str, v: u64, max: u64| {
            if v == 0 || v > max {
                Err(ManifestError::Invalid(format!("limits.{what} = {v} is out of range (1..={max})")))
            } else {
                Ok(())
            }
        };
        check("fuel", l.fuel, max.fuel)?;
        check("wall_ms", l.wall_ms, max.wall_ms)?;
        check("memory_mib", l.memory_mib.into(), max.memory_mib.into())?;
        check("instances", l.instances.into(), max.instances.into())?;
        check("output_kib", l.output_kib.into(), max.output_kib.into())?;
        for ns in self.objects.read.iter().chain(&self.objects.write) {
            if state_sync::ObjectName::parse(&format!("{ns}/x")).is_err() || ns.starts_with("liquid-") {
                return Err(ManifestError::Invalid(format!(
                    "objects: {ns:?} is not a namespace a function may use (a-z 0-9 _ -; liquid-* is reserved)"
                )));
            }
        }
        if let Some(t) = &self.placement.tier
            && !matches!(t.as_str(), "edge" | "fog" | "cloud")
        {
            return Err(ManifestError::Invalid(format!("placement.tier = {t:?}: expected edge, fog or cloud")));
        }
        Ok(())
    }
}

/// Checks a function name: `a-z 0-9 -`, 1–63 characters, starting with a letter.
pub fn validate_name(name: &str) -> Result<(), ManifestError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ManifestError::Invalid(format!(
            "function name {name:?} is not valid: use 1-63 of a-z 0-9 -, starting with a letter"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_manifest_parses() {
        let m = Manifest::from_toml(
            r#"
            name = "counter"
            version = "0.1.0"
            kind = "actor"
            module = "counter.wasm"
            [limits]
            fuel = 1000
            memory_mib = 16
            [objects]
            read = ["sensors"]
            write = ["demo"]
            [placement]
            tier = "edge"
            labels = { site = "site-1" }
            [slo]
            latency_ms = 50
            "#,
        )
        .unwrap();
        assert_eq!(m.kind, Kind::Actor);
        assert_eq!(m.limits.fuel, 1000);
        assert_eq!(m.limits.wall_ms, Limits::default().wall_ms);
        assert!(m.objects.may_read("sensors") && m.objects.may_read("demo"));
        assert!(m.objects.may_write("demo") && !m.objects.may_write("sensors"));
        assert_eq!(m.placement.labels["site"], "site-1");
    }

    #[test]
    fn bad_manifests_name_the_problem() {
        for (text, needle) in [
            ("name = \"Bad_Name\"", "function name"),
            ("name = \"a\"\nkind = \"daemon\"", "kind"),
            ("name = \"a\"\n[limits]\nfuel = 0", "limits.fuel"),
            ("name = \"a\"\n[limits]\nmemory_mib = 100000", "limits.memory_mib"),
            ("name = \"a\"\n[objects]\nwrite = [\"liquid-fn\"]", "namespace"),
            ("name = \"a\"\n[placement]\ntier = \"moon\"", "placement.tier"),
            ("name = \"a\"\nsurprise = 1", "surprise"),
        ] {
            let err = Manifest::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn hash_round_trips_through_hex() {
        let h = ModuleHash::of(b"\0asm");
        assert_eq!(h.to_hex().parse::<ModuleHash>().unwrap(), h);
        assert!("zz".parse::<ModuleHash>().is_err());
        assert_eq!(h.short().len(), 12);
    }
}
