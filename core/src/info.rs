//! What a node says about itself.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Where in the continuum a node sits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// A device or board at the edge: close to data, small, often slow.
    #[default]
    Edge,
    /// A gateway or regional server between the edge and the cloud.
    Fog,
    /// A cloud VM: far from the edge, large, fast.
    Cloud,
}

impl Tier {
    /// 0, 1 and 2 from the edge to the cloud: an index into per-tier tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name used in configs, the API and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Edge => "edge",
            Tier::Fog => "fog",
            Tier::Cloud => "cloud",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a tier name that is not `edge`, `fog` or `cloud`.
#[derive(Debug, thiserror::Error)]
#[error("unknown tier {0:?}: expected edge, fog or cloud")]
pub struct UnknownTier(pub String);

impl FromStr for Tier {
    type Err = UnknownTier;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "edge" => Ok(Tier::Edge),
            "fog" => Ok(Tier::Fog),
            "cloud" => Ok(Tier::Cloud),
            _ => Err(UnknownTier(s.to_string())),
        }
    }
}

/// A node's self-description, gossiped to every member. Immutable for one incarnation of the
/// node process; shared by `Arc` so that thousands of simulated views hold one copy.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The node's identity.
    pub id: NodeId,
    /// A human name (defaults to the host name).
    pub name: String,
    /// Edge, fog or cloud.
    pub tier: Tier,
    /// Operator labels (`site=lyon`, `gpu=true`, …).
    pub labels: BTreeMap<String, String>,
    /// CPU architecture (`x86_64`, `aarch64`, …).
    pub arch: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Multiaddrs others can reach this node at (text form, each ending in `/p2p/<id>`).
    pub addrs: Vec<String>,
    /// The agent's version.
    pub version: String,
}
