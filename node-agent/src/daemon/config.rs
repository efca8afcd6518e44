//! The agent's settings: a TOML file, overridden by `LIQUID_*` environment variables,
//! overridden by flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use liquid_core::Tier;
use serde::Deserialize;

/// The default API address (loopback only: the API is for local operators and tools).
pub const DEFAULT_API: &str = "127.0.0.1:7070";
/// The default mesh port (UDP for QUIC, TCP for the fallback).
pub const DEFAULT_PORT: u16 = 7400;

/// `liquid agent` flags. Every flag can also come from the environment (`LIQUID_…`) or the
/// config file; flags win over the environment, which wins over the file.
#[derive(Args, Debug, Default, Clone)]
pub struct AgentArgs {
    /// Where the agent keeps its identity, keys, API token and state.
    #[arg(long, env = "LIQUID_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A mesh address to listen on; repeatable. Default: QUIC and TCP on port 7400, all
    /// interfaces. Port 0 picks a free port.
    #[arg(long, env = "LIQUID_LISTEN", value_name = "MULTIADDR", value_delimiter = ',')]
    pub listen: Vec<String>,
    /// Where the HTTP API listens (port 0 picks a free port).
    #[arg(long = "api", env = "LIQUID_API_ADDR", value_name = "HOST:PORT")]
    pub api: Option<String>,
    /// A peer to join through, e.g. /ip4/10.0.0.5/udp/7400/quic-v1/p2p/12D3Koo…; repeatable.
    #[arg(long, env = "LIQUID_BOOTSTRAP", value_name = "MULTIADDR", value_delimiter = ',')]
    pub bootstrap: Vec<String>,
    /// This node's name (default: the host name).
    #[arg(long, env = "LIQUID_NAME")]
    pub name: Option<String>,
    /// Where this node sits in the continuum.
    #[arg(long, env = "LIQUID_TIER", value_name = "edge|fog|cloud")]
    pub tier: Option<String>,
    /// A label, K=V; repeatable.
    #[arg(long = "label", env = "LIQUID_LABELS", value_name = "K=V", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// The cluster secret file (from `liquid cluster init`). Required unless --dev.
    #[arg(long, env = "LIQUID_CLUSTER_KEY", value_name = "FILE")]
    pub cluster_key: Option<PathBuf>,
    /// Do not discover peers on the local network with mDNS.
    #[arg(long, env = "LIQUID_NO_MDNS")]
    pub no_mdns: bool,
    /// A TOML config file with any of these settings.
    #[arg(long, env = "LIQUID_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Development mode: without --cluster-key, create one in the data dir.
    #[arg(long, env = "LIQUID_DEV")]
    pub dev: bool,
    /// Replicas per object of a namespace, NS=N (default 3 for every namespace); repeatable.
    /// Every agent of a mesh must be given the same values.
    #[arg(long, env = "LIQUID_REPLICATION", value_name = "NS=N", value_delimiter = ',')]
    pub replication: Vec<String>,
    /// How often the home of each actor weighs moving it (docs/placement.md), seconds; 0
    /// turns automatic placement off on this node. The policy's knobs are in the config
    /// file's `[placement]` table.
    #[arg(long, env = "LIQUID_PLACEMENT_EVERY", value_name = "SECS")]
    pub placement_every: Option<f64>,
    /// Refuse function packages that are not signed by a trusted publisher, at deploy and
    /// before running them (give every agent of the mesh the same setting and publishers).
    #[arg(long, env = "LIQUID_REQUIRE_SIGNED")]
    pub require_signed: bool,
    /// A publisher's public key (hex, from `liquid publisher init`) whose packages this node
    /// runs; repeatable.
    #[arg(long = "trust-publisher", env = "LIQUID_TRUST_PUBLISHERS", value_name = "HEX", value_delimiter = ',')]
    pub trust_publishers: Vec<String>,
    /// The API's TLS certificate (PEM; with --api-key). An API on a non-loopback address is
    /// always served over TLS: without these, with a self-signed certificate the agent makes
    /// and keeps in its data dir. The CLI pins the certificate's fingerprint (api.fingerprint).
    #[arg(long, env = "LIQUID_API_CERT", value_name = "FILE", requires = "api_key")]
    pub api_cert: Option<PathBuf>,
    /// The API certificate's private key (PEM).
    #[arg(long, env = "LIQUID_API_KEY", value_name = "FILE", requires = "api_cert")]
    pub api_key: Option<PathBuf>,
    /// Serve a non-loopback API in plain HTTP anyway: the bearer token crosses the network in
    /// the clear. Only for a private test network.
    #[arg(long, env = "LIQUID_API_INSECURE_PLAINTEXT")]
    pub api_insecure_plaintext: bool,
    /// The most objects this node holds, replicas included (default 100,000). Writes that
    /// would create more are refused with 507.
    #[arg(long, env = "LIQUID_OBJECTS_MAX", value_name = "N")]
    pub objects_max: Option<usize>,
    /// The most objects of one namespace that writes may create on this node (default
    /// 50,000): a flood of creations in one namespace is refused with 403 before it crowds
    /// out the others. Replicas arriving from peers are not refused by it.
    #[arg(long, env = "LIQUID_NAMESPACE_OBJECTS_MAX", value_name = "N")]
    pub namespace_objects_max: Option<usize>,
    /// The most bytes of object logs on this node (e.g. `200MiB`, `2GB`; default: no budget,
    /// only the disk's size). Past it, writes are refused with 507 until room is made;
    /// changes from replicas are still taken in.
    #[arg(long, env = "LIQUID_STORAGE_MAX", value_name = "SIZE")]
    pub storage_max: Option<String>,
    /// Memory for object documents (e.g. `64MiB`, the default). Past it, documents that are
    /// durable and idle are dropped from memory, least recently used first, and read back
    /// from disk when next needed: a node holds far more objects than fit in memory.
    #[arg(long, env = "LIQUID_OBJECT_CACHE", value_name = "SIZE")]
    pub object_cache: Option<String>,
}

/// The config file's format; every key is optional.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<Vec<String>>,
    api: Option<String>,
    bootstrap: Option<Vec<String>>,
    name: Option<String>,
    tier: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    cluster_key: Option<PathBuf>,
    mdns: Option<bool>,
    dev: Option<bool>,
    replication: Option<BTreeMap<String, usize>>,
    placement_every: Option<f64>,
    placement: Option<liquid_core::placement::Params>,
    require_signed: Option<bool>,
    trusted_publishers: Option<Vec<String>>,
    api_cert: Option<PathBuf>,
    api_key: Option<PathBuf>,
    api_insecure_plaintext: Option<bool>,
    objects_max: Option<usize>,
    namespace_objects_max: Option<usize>,
    storage_max: Option<String>,
    object_cache: Option<String>,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The data dir.
    pub data_dir: PathBuf,
    /// Mesh listen addresses.
    pub listen: Vec<libp2p::Multiaddr>,
    /// API address.
    pub api: SocketAddr,
    /// Bootstrap peers.
    pub bootstrap: Vec<libp2p::Multiaddr>,
    /// Node name.
    pub name: String,
    /// Tier.
    pub tier: Tier,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Cluster key file, if given.
    pub cluster_key: Option<PathBuf>,
    /// mDNS discovery on.
    pub mdns: bool,
    /// Development mode.
    pub dev: bool,
    /// Replicas per object, by namespace.
    pub replication: BTreeMap<String, usize>,
    /// How often the placement policy runs; `None`: never.
    pub placement_every: Option<std::time::Duration>,
    /// The placement policy's knobs.
    pub placement: liquid_core::placement::Params,
    /// Which function packages this node accepts.
    pub trust: crate::signing::Trust,
    /// How the API is served.
    pub api_tls: ApiTls,
    /// Object limits: `objects_max`, `namespace_objects_max`, `storage_bytes_max`.
    pub object_limits: ObjectLimits,
}

/// How many objects, and how many bytes of them, this node holds at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLimits {
    /// Objects in all.
    pub objects_max: usize,
    /// Objects per namespace created by writes here.
    pub namespace_objects_max: usize,
    /// Bytes of object logs.
    pub storage_bytes_max: u64,
    /// Bytes of documents in memory.
    pub cache_bytes: u64,
}

/// How the API is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiTls {
    /// Plain HTTP (a loopback address, or `--api-insecure-plaintext`).
    Plain,
    /// TLS with the agent's own self-signed certificate.
    SelfSigned,
    /// TLS with the operator's certificate and key.
    Operator {
        /// The certificate (PEM).
        cert: PathBuf,
        /// The key (PEM).
        key: PathBuf,
    },
}

/// The default data dir: `$LIQUID_HOME`, else `$XDG_DATA_HOME/liquid`, else `~/.local/share/liquid`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("liquid");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/liquid"),
        None => PathBuf::from("liquid-data"),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "liquid-node".to_string())
}

fn parse_addrs(what: &str, list: &[String]) -> Result<Vec<libp2p::Multiaddr>> {
    list.iter()
        .map(|s| {
            s.parse().with_context(|| format!("{what} {s:?} is not a multiaddr (e.g. /ip4/10.0.0.5/udp/7400/quic-v1)"))
        })
        .collect()
}

impl AgentArgs {
    /// Merges flags/environment over the config file over the defaults.
    pub fn resolve(&self) -> Result<Settings> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let pick = |flag: &Vec<String>, file: Option<Vec<String>>| {
            if flag.is_empty() { file.unwrap_or_default() } else { flag.clone() }
        };
        let mut listen = pick(&self.listen, file.listen);
        if listen.is_empty() {
            listen =
                vec![format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"), format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}")];
        }
        let api = self.api.clone().or(file.api).unwrap_or_else(|| DEFAULT_API.to_string());
        let api: SocketAddr =
            api.parse().with_context(|| format!("--api {api:?} is not HOST:PORT (e.g. 127.0.0.1:7070)"))?;
        let tier = self.tier.clone().or(file.tier).unwrap_or_else(|| "edge".into());
        let mut labels = file.labels.unwrap_or_default();
        for kv in &self.labels {
            let (k, v) = kv.split_once('=').with_context(|| format!("--label {kv:?} is not K=V"))?;
            if k.is_empty() {
                bail!("--label {kv:?} has an empty key");
            }
            labels.insert(k.to_string(), v.to_string());
        }
        let mut replication = file.replication.unwrap_or_default();
        for kv in &self.replication {
            let parsed = kv.split_once('=').and_then(|(ns, n)| Some((ns, n.trim().parse::<usize>().ok()?)));
            let Some((ns, n)) = parsed else { bail!("--replication {kv:?} is not NS=N (e.g. sensors=5)") };
            replication.insert(ns.to_string(), n);
        }
        if let Some((ns, _)) = replication.iter().find(|(_, n)| **n == 0) {
            bail!("replication of namespace {ns:?} is 0: every object needs at least one replica");
        }
        let every = self.placement_every.or(file.placement_every).unwrap_or(10.0);
        if !(every.is_finite() && every >= 0.0) {
            bail!("--placement-every {every} is not a number of seconds (0 turns automatic placement off)");
        }
        let mut publishers = std::collections::BTreeSet::new();
        for p in self.trust_publishers.iter().chain(file.trusted_publishers.iter().flatten()) {
            let p = p.trim().to_ascii_lowercase();
            if p.len() != 64 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("trusted publisher {p:?} is not a public key: 64 hex digits, as `liquid publisher init` prints");
            }
            publishers.insert(p);
        }
        let required = self.require_signed || file.require_signed.unwrap_or(false);
        if required && publishers.is_empty() {
            bail!("--require-signed needs at least one --trust-publisher KEY (from `liquid publisher init`)");
        }
        let cert = self.api_cert.clone().or(file.api_cert);
        let key = self.api_key.clone().or(file.api_key);
        let plaintext = self.api_insecure_plaintext || file.api_insecure_plaintext.unwrap_or(false);
        let api_tls = match (cert, key) {
            (Some(cert), Some(key)) => ApiTls::Operator { cert, key },
            (Some(_), None) | (None, Some(_)) => bail!("the API's TLS needs both api_cert and api_key"),
            (None, None) if api.ip().is_loopback() || plaintext => ApiTls::Plain,
            (None, None) => ApiTls::SelfSigned,
        };
        let defaults = liquid_core::objects::Config::default();
        let size = |what: &str, text: Option<String>, default: u64| -> Result<u64> {
            match text {
                None => Ok(default),
                Some(text) => text
                    .trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|b| b.as_u64())
                    .map_err(|e| anyhow::anyhow!("{what} {text:?} is not a size (e.g. 500MiB, 2GB): {e}")),
            }
        };
        let storage_bytes_max =
            size("storage_max", self.storage_max.clone().or(file.storage_max), defaults.storage_bytes_max)?;
        let cache_bytes = size("object_cache", self.object_cache.clone().or(file.object_cache), defaults.cache_bytes)?;
        let object_limits = ObjectLimits {
            objects_max: self.objects_max.or(file.objects_max).unwrap_or(defaults.objects_max),
            namespace_objects_max: self
                .namespace_objects_max
                .or(file.namespace_objects_max)
                .unwrap_or(defaults.namespace_objects_max),
            storage_bytes_max,
            cache_bytes,
        };
        if object_limits.objects_max == 0 || object_limits.namespace_objects_max == 0 || storage_bytes_max == 0 {
            bail!("objects_max, namespace_objects_max and storage_max must be above 0 (a node that may hold nothing)");
        }
        Ok(Settings {
            object_limits,
            api_tls,
            trust: crate::signing::Trust { required, publishers },
            placement_every: (every > 0.0).then(|| std::time::Duration::from_secs_f64(every)),
            placement: file.placement.unwrap_or_default(),
            replication,
            data_dir: self.data_dir.clone().or(file.data_dir).unwrap_or_else(default_data_dir),
            listen: parse_addrs("--listen", &listen)?,
            api,
            bootstrap: parse_addrs("--bootstrap", &pick(&self.bootstrap, file.bootstrap))?,
            name: self.name.clone().or(file.name).unwrap_or_else(host_name),
            tier: tier.parse()?,
            labels,
            cluster_key: self.cluster_key.clone().or(file.cluster_key),
            mdns: if self.no_mdns { false } else { file.mdns.unwrap_or(true) },
            dev: self.dev || file.dev.unwrap_or(false),
        })
    }
}

fn load_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "name = \"from-file\"\ntier = \"fog\"\nmdns = false\n[labels]\nsite = \"lyon\"\n")
            .unwrap();
        let args = AgentArgs { config: Some(path.clone()), name: Some("from-flag".into()), ..Default::default() };
        let s = args.resolve().unwrap();
        assert_eq!(s.name, "from-flag");
        assert_eq!(s.tier, Tier::Fog);
        assert!(!s.mdns);
        assert_eq!(s.labels.get("site").map(String::as_str), Some("lyon"));
        assert_eq!(s.api.to_string(), DEFAULT_API);
        assert_eq!(s.listen.len(), 2);
    }

    #[test]
    fn object_limits_take_sizes_with_units_and_refuse_nonsense() {
        let args = AgentArgs {
            storage_max: Some("2GiB".into()),
            object_cache: Some("512 MiB".into()),
            namespace_objects_max: Some(7),
            ..Default::default()
        };
        let l = args.resolve().unwrap().object_limits;
        assert_eq!(l.storage_bytes_max, 2 << 30);
        assert_eq!(l.cache_bytes, 512 << 20);
        assert_eq!(l.namespace_objects_max, 7);
        let err = AgentArgs { storage_max: Some("lots".into()), ..Default::default() }.resolve().unwrap_err();
        assert!(err.to_string().contains("storage_max \"lots\""), "{err}");
        let err = AgentArgs { objects_max: Some(0), ..Default::default() }.resolve().unwrap_err();
        assert!(err.to_string().contains("above 0"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "nmae = \"typo\"\n").unwrap();
        let err = AgentArgs { config: Some(path), ..Default::default() }.resolve().unwrap_err().to_string();
        assert!(err.contains("nmae") && err.contains("line 1"), "{err}");
        let err = AgentArgs { tier: Some("moon".into()), ..Default::default() }.resolve().unwrap_err().to_string();
        assert!(err.contains("moon"), "{err}");
        let err = AgentArgs { listen: vec!["nope".into()], ..Default::default() }.resolve().unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
