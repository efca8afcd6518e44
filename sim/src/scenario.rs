//! Scenarios: what to simulate, read from a TOML file.
//!
//! # Format
//! Durations are strings with units (`"250ms"`, `"30s"`, `"2m"`, `"1m30s"`, `"1h"`);
//! bandwidths too (`"100Mbps"`, `"1Gbps"`, `"512kbps"`); loss rates are numbers in [0, 1].
//! Every table refuses unknown keys.
//!
//! ```toml
//! name = "small"                 # required: shown in the report
//! description = "…"              # optional
//! seed = 7                       # optional, default 1; `--seed` overrides it
//! duration = "4m"                # required: virtual time to simulate
//! join_window = "20s"            # default 10s: nodes boot at uniform random times in it
//! bootstrap = "cloud-0-0"        # default: the first cloud node (else fog, else the first node)
//! sample_interval = "1s"         # default 1s: how often convergence is checked
//! disk_latency = "2ms"           # default 2ms: a persist becomes durable this long after
//! fsync_latency = "2ms"          # default 2ms: an object store flush (fsync) takes this long
//! torn_writes = false            # default false: `true`: a crash keeps a random prefix of
//!                                # each object log's unsynced tail (a torn append)
//! connect_retry = "5s"           # default 5s: a failed dial is retried this much later
//! rejoin_peers = 1               # default 1: a restarted node also dials this many remembered peers
//!
//! [[sites]]                      # required, at least one
//! name = "edge"                  # group name; its sites are edge-0 … edge-(count-1)
//! tier = "edge"                  # edge | fog | cloud
//! count = 4                      # default: one site, named exactly `name`
//! nodes = 8                      # nodes per site, named SITE-0 … SITE-(nodes-1)
//! arch = "aarch64"               # optional; cpus and memory_mib too (defaults by tier)
//!
//! [network.lan]                  # two nodes of the same site
//! latency = "500us"              # defaults: 500us, jitter 100us, 1Gbps, loss 0
//! [network.wan]                  # any other pair without a `links` entry
//! latency = "30ms"               # defaults: 30ms, jitter 5ms, 100Mbps, loss 0
//! [[network.links]]              # between two tiers (other sites); unset fields come from wan
//! between = ["edge", "fog"]
//! latency = "8ms"
//! jitter = "2ms"
//! bandwidth = "50Mbps"
//! loss = 0.01
//!
//! [membership]                   # optional overrides of the core's membership tuning:
//! probe_interval = "1s"          # also probe_timeout, indirect_probes, suspicion_mult,
//!                                # retransmit_mult, gossip_per_message, gossip_queue_max,
//!                                # sync_interval, reconnect_interval
//!
//! [objects]                      # optional overrides of the core's object tuning:
//! replication = 3                # replicas per object; also anti_entropy_interval,
//!                                # batch_delay, fetch_timeout, write_fetch_timeout,
//!                                # quorum_timeout, quorum_retry, replace_after, cache_kib
//!                                # (memory for documents per node: idle ones beyond it go cold)
//!
//! [[workload]]                   # writes to objects; any number of them
//! name = "counters"              # optional: shown in the report
//! namespace = "sim"              # default "sim": objects are NAMESPACE/key-0 … key-(objects-1)
//! objects = 16                   # default 16
//! start = "20s"                  # default: the end of the join window
//! stop = "3m"                    # required: leave quiet time before `duration` for the checks
//! rate = 10                      # required: writes per second, over all writers together
//! writers = ["edge", "fog-0-1"]  # default: every node; each write picks one uniformly
//! keys = "zipf"                  # "uniform" (default) or "zipf": which object each write hits
//! zipf_exponent = 1.1            # default 1.0 (only with keys = "zipf")
//! inc = 0.5                      # default 0.5: share of writes that also increment `count`
//! durability = "local"           # or "quorum": when the core acknowledges
//! value_bytes = 0                # default 0: the value is the write's sequence number;
//!                                # N > 0: a string of N bytes instead
//! create = true                  # default true: `creator` first creates every object, with its
//! creator = "cloud-0-0"          #   counter at 0, at `create_at` (default: the bootstrap node,
//! create_at = "15s"              #   5s before `start`)
//!
//! [[faults]]                     # each: `at`, an optional `name`, and exactly one action
//! at = "1m"
//! partition = ["edge-0..2"]      # these sites become an island cut off from all others
//! [[faults]]
//! at = "1m30s"
//! crash = ["edge-3-0"]           # stop nodes; writes not yet durable are lost
//! [[faults]]
//! at = "2m"
//! restart = ["edge-3-0"]         # boot them again from their durable state
//! fresh = false                  # `true`: boot with an empty disk instead
//! [[faults]]
//! at = "2m30s"
//! heal = "all"                   # or a list of sites to reconnect to the mainland
//! ```
//!
//! Targets name a node (`edge-3-0`), a site (`edge-3`), a whole group (`edge`), or a range of a
//! group's sites (`edge-0..10`: sites 0 to 9). Partitions and heals take sites only; crashes,
//! restarts and workload writers take any.
//!
//! Every write of a workload is one atomic batch: a `set` of a key unique to the write,
//! `w<node>_<seq>` (node index, that node's write number), to its value, plus, for a share
//! `inc` of them, an `inc` of the counter `count`. The unique keys make every acknowledged
//! write checkable at the end; the counter is created once (`create`) before the writers
//! start, because counters created concurrently by several nodes lose increments by design.
//!
//! Errors name the file, line and column, and the field: `small.toml:31:13: faults[2].crash:
//! unknown node or site "edge-99"`.

mod build;
mod raw;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use liquid_core::objects::{self, Durability};
use liquid_core::{Tier, membership};
use state_sync::ObjectName;

use crate::network::Links;

/// A parsed and validated scenario.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) seed: u64,
    pub(crate) duration: Duration,
    pub(crate) join_window: Duration,
    pub(crate) bootstrap: u32,
    pub(crate) sample_interval: Duration,
    pub(crate) disk_latency: Duration,
    pub(crate) fsync_latency: Duration,
    pub(crate) torn_writes: bool,
    pub(crate) connect_retry: Duration,
    pub(crate) rejoin_peers: usize,
    pub(crate) groups: Vec<Group>,
    pub(crate) sites: Vec<Site>,
    /// The site of every node, by node index.
    pub(crate) node_sites: Vec<u32>,
    pub(crate) links: Links,
    pub(crate) membership: membership::Config,
    pub(crate) objects: objects::Config,
    /// Sorted by time (stable: equal times keep file order).
    pub(crate) faults: Vec<Fault>,
    /// In file order.
    pub(crate) workloads: Vec<Workload>,
    /// `[[function]]` entries, in file order.
    pub(crate) functions: Vec<SimFunction>,
    /// `[[invocations]]` entries, in file order.
    pub(crate) invocations: Vec<Invocations>,
    /// How fuel becomes virtual time.
    pub(crate) cost: FnCost,
    /// `[placement]`: the policy a plain run uses, how often the home runs it, its knobs.
    pub(crate) placement: PlacementCfg,
}

/// `[placement]`.
#[derive(Clone, Debug)]
pub(crate) struct PlacementCfg {
    pub policy: crate::PolicyKind,
    pub every: Duration,
    /// Actor leases (the core's defaults unless `lease_duration` / `lease_renew_every`).
    pub lease: liquid_core::functions::actors::lease::LeaseConfig,
    pub params: liquid_core::placement::Params,
}

impl Default for PlacementCfg {
    fn default() -> Self {
        PlacementCfg {
            policy: crate::PolicyKind::Liquid,
            every: Duration::from_secs(10),
            lease: Default::default(),
            params: liquid_core::placement::Params::default(),
        }
    }
}

/// A `[[function]]` entry: a package, deployed once.
#[derive(Clone, Debug)]
pub(crate) struct SimFunction {
    pub manifest: wasm_host::Manifest,
    pub module: std::sync::Arc<Vec<u8>>,
    pub hash: wasm_host::ModuleHash,
    pub deployer: u32,
    pub deploy_at: Duration,
    /// An actor's snapshot size, bytes (what a hand-off streams).
    pub state_bytes: u64,
}

/// An `[[invocations]]` entry.
#[derive(Clone, Debug)]
pub(crate) struct Invocations {
    pub label: String,
    pub function: String,
    pub start: Duration,
    pub stop: Duration,
    pub rate: f64,
    pub callers: Vec<u32>,
    pub input: Vec<u8>,
}

/// Virtual execution time = fuel × `ns_per_fuel` × the node's tier slowdown.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FnCost {
    pub ns_per_fuel: f64,
    /// By tier: edge, fog, cloud.
    pub slowdown: [f64; 3],
}

impl Default for FnCost {
    fn default() -> Self {
        // ≈1 ns per Wasm instruction on a cloud core; edge boards a few times slower.
        FnCost { ns_per_fuel: 1.0, slowdown: [4.0, 2.0, 1.0] }
    }
}

impl FnCost {
    /// The virtual time `fuel` takes on a node of `tier`.
    pub fn time(&self, fuel: u64, tier: Tier) -> Duration {
        let k = match tier {
            Tier::Edge => self.slowdown[0],
            Tier::Fog => self.slowdown[1],
            Tier::Cloud => self.slowdown[2],
        };
        Duration::from_nanos((fuel as f64 * self.ns_per_fuel * k).min(1e15) as u64)
    }
}

/// A `[[workload]]` entry.
#[derive(Clone, Debug)]
pub(crate) struct Workload {
    pub label: String,
    pub objects: Vec<ObjectName>,
    pub start: Duration,
    pub stop: Duration,
    /// Writes per second over all writers.
    pub rate: f64,
    /// Node indexes, sorted.
    pub writers: Vec<u32>,
    /// `None`: uniform; `Some(s)`: Zipf with exponent `s`.
    pub zipf: Option<f64>,
    /// Share of writes that also increment `count`.
    pub inc: f64,
    pub durability: Durability,
    pub value_bytes: u32,
    /// Who creates every object (and its counter), and when.
    pub create: Option<(u32, Duration)>,
}

/// A `[[sites]]` entry.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    pub name: String,
    pub tier: Tier,
    pub arch: String,
    pub cpus: u32,
    pub memory_mib: u64,
}

/// One site: a LAN of nodes.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    pub name: String,
    pub group: u32,
    pub first_node: u32,
    pub nodes: u32,
}

/// A timed fault.
#[derive(Clone, Debug)]
pub(crate) struct Fault {
    pub at: Duration,
    pub label: String,
    pub action: Action,
}

/// What a fault does.
#[derive(Clone, Debug)]
pub(crate) enum Action {
    /// These sites form a new island.
    Partition(Vec<u32>),
    /// These sites (`None`: all) rejoin the mainland.
    Heal(Option<Vec<u32>>),
    /// These nodes stop.
    Crash(Vec<u32>),
    /// These nodes boot again, from their durable state unless `fresh`.
    Restart { nodes: Vec<u32>, fresh: bool },
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|error| ScenarioError::Read { path: origin.clone(), error })?;
        Scenario::parse(&text, &origin)
    }

    /// Parses and validates scenario text; `origin` names it in errors (usually the path).
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        build::build(text, origin)
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The optional description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The seed from the file (1 if it has none). A command-line `--seed` takes precedence.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether the scenario writes objects (has `[[workload]]` entries).
    pub fn has_workloads(&self) -> bool {
        !self.workloads.is_empty()
    }

    /// The virtual time a run covers.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// How many nodes are simulated.
    pub fn node_count(&self) -> usize {
        self.node_sites.len()
    }

    /// The name of node `index` (`SITE-k`).
    pub(crate) fn node_name(&self, index: u32) -> String {
        let site = &self.sites[self.node_sites[index as usize] as usize];
        format!("{}-{}", site.name, index - site.first_node)
    }

    /// The tier of node `index`.
    pub(crate) fn node_tier(&self, index: u32) -> Tier {
        self.group_of(index).tier
    }

    pub(crate) fn group_of(&self, index: u32) -> &Group {
        &self.groups[self.sites[self.node_sites[index as usize] as usize].group as usize]
    }
}

/// Where in a scenario file something is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file (or whatever `origin` was given to [`Scenario::parse`]).
    pub origin: String,
    /// 1-based line and column, when known.
    pub line_col: Option<(usize, usize)>,
}

impl Location {
    pub(crate) fn at(origin: &str, text: &str, offset: Option<usize>) -> Location {
        let line_col = offset.map(|off| {
            let before = &text[..off.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (line, col)
        });
        Location { origin: origin.to_string(), line_col }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line_col {
            Some((line, col)) => write!(f, "{}:{line}:{col}", self.origin),
            None => f.write_str(&self.origin),
        }
    }
}

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error (in the message, not a `source`: `{:#}` would print it twice).
        error: std::io::Error,
    },
    /// The text is not TOML, or does not fit the format (unknown key, wrong type, bad value).
    #[error("{at}: {message}")]
    Syntax {
        /// Where.
        at: Location,
        /// What is wrong.
        message: String,
    },
    /// The file is well-formed but asks for something impossible (unknown site, zero nodes…).
    #[error("{at}: {field}: {message}")]
    Invalid {
        /// Where.
        at: Location,
        /// The field, as a path (`faults[2].crash`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ScenarioError {
    /// Where the problem is.
    pub fn location(&self) -> Option<&Location> {
        match self {
            ScenarioError::Read { .. } => None,
            ScenarioError::Syntax { at, .. } | ScenarioError::Invalid { at, .. } => Some(at),
        }
    }
}

/// A placement policy to run a scenario under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PolicyKind {
    /// Everything in the cloud, never moved.
    Cloud,
    /// Where deployed, never moved.
    Pinned,
    /// Where deployed, then moved by the core's placement policy.
    Liquid,
}

impl PolicyKind {
    /// The three, in the order a comparison runs them.
    pub const ALL: [PolicyKind; 3] = [PolicyKind::Cloud, PolicyKind::Pinned, PolicyKind::Liquid];

    /// `cloud`, `pinned` or `liquid`.
    pub fn parse(s: &str) -> Option<PolicyKind> {
        match s {
            "cloud" => Some(PolicyKind::Cloud),
            "pinned" => Some(PolicyKind::Pinned),
            "liquid" => Some(PolicyKind::Liquid),
            _ => None,
        }
    }

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Cloud => "cloud",
            PolicyKind::Pinned => "pinned",
            PolicyKind::Liquid => "liquid",
        }
    }
}
