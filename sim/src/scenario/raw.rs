//! The scenario file as written: serde types that mirror the TOML one to one.
//!
//! Every table denies unknown fields, and single values check themselves while they are
//! deserialized ([`Dur`], [`Bandwidth`], [`Probability`], [`Count`]), so the toml crate reports
//! such mistakes with the line and column of the offending value. Checks that need the whole
//! file (site names in faults, the order of crashes and restarts) happen in `build`, with
//! [`Spanned`] positions kept for their messages.

use std::fmt;
use std::time::Duration;

use liquid_core::Tier;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub name: String,
    pub description: Option<String>,
    pub seed: Option<u64>,
    pub duration: Spanned<Dur>,
    pub join_window: Option<Dur>,
    pub bootstrap: Option<Spanned<String>>,
    pub sample_interval: Option<Spanned<Dur>>,
    pub disk_latency: Option<Dur>,
    pub fsync_latency: Option<Dur>,
    pub torn_writes: Option<bool>,
    pub connect_retry: Option<Spanned<Dur>>,
    pub rejoin_peers: Option<u32>,
    pub sites: Spanned<Vec<Spanned<RawSites>>>,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub membership: RawMembership,
    #[serde(default)]
    pub objects: RawObjects,
    #[serde(default)]
    pub faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub workload: Vec<Spanned<RawWorkload>>,
    #[serde(default)]
    pub function: Vec<Spanned<RawFunction>>,
    #[serde(default)]
    pub invocations: Vec<Spanned<RawInvocations>>,
    #[serde(default)]
    pub functions: RawFunctionsCfg,
    #[serde(default)]
    pub placement: RawPlacement,
}

/// `[placement]`: which placement policy the run uses, and the policy's knobs.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlacement {
    pub policy: Option<Spanned<String>>,
    pub every: Option<Spanned<Dur>>,
    pub lease_duration: Option<Spanned<Dur>>,
    pub lease_renew_every: Option<Spanned<Dur>>,
    pub params: Option<liquid_core::placement::Params>,
}

/// One `[[function]]`: a package deployed at a time from a node.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFunction {
    /// A directory with liquid.toml, or a .wasm/.wat file; relative to the scenario file.
    pub package: Spanned<String>,
    pub name: Option<String>,
    pub deploy_at: Option<Spanned<Dur>>,
    pub deployer: Option<Spanned<String>>,
    pub kind: Option<wasm_host::Kind>,
    pub state_kib: Option<Spanned<u64>>,
}

/// One `[[invocations]]`: a Poisson stream of calls from some nodes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInvocations {
    pub name: Option<String>,
    pub function: Spanned<String>,
    pub start: Option<Spanned<Dur>>,
    pub stop: Spanned<Dur>,
    pub rate: Spanned<f64>,
    pub callers: Option<Spanned<Vec<String>>>,
    pub input: Option<String>,
}

/// `[functions]`: how fuel becomes virtual time.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFunctionsCfg {
    pub ns_per_fuel: Option<Spanned<f64>>,
    pub edge_slowdown: Option<Spanned<f64>>,
    pub fog_slowdown: Option<Spanned<f64>>,
    pub cloud_slowdown: Option<Spanned<f64>>,
}

/// One `[[sites]]` entry: `count` sites of `nodes` nodes each.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSites {
    pub name: Spanned<String>,
    pub tier: Tier,
    pub count: Option<Count>,
    pub nodes: Count,
    pub arch: Option<String>,
    pub cpus: Option<u32>,
    pub memory_mib: Option<u64>,
}

/// `[network]`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub lan: Option<RawLink>,
    pub wan: Option<RawLink>,
    #[serde(default)]
    pub links: Vec<Spanned<RawTierLink>>,
}

/// `[network.lan]` and `[network.wan]`: any field left out keeps its default.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLink {
    pub latency: Option<Dur>,
    pub jitter: Option<Dur>,
    pub bandwidth: Option<Bandwidth>,
    pub loss: Option<Probability>,
}

/// `[[network.links]]`: the link between two tiers; fields left out are taken from `wan`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTierLink {
    pub between: [Tier; 2],
    pub latency: Option<Dur>,
    pub jitter: Option<Dur>,
    pub bandwidth: Option<Bandwidth>,
    pub loss: Option<Probability>,
}

/// `[membership]`: overrides of the core's membership tuning.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMembership {
    pub probe_interval: Option<Spanned<Dur>>,
    pub probe_timeout: Option<Spanned<Dur>>,
    pub indirect_probes: Option<usize>,
    pub suspicion_mult: Option<Count>,
    pub retransmit_mult: Option<Count>,
    pub gossip_per_message: Option<Count>,
    pub gossip_queue_max: Option<Count>,
    pub sync_interval: Option<Spanned<Dur>>,
    pub reconnect_interval: Option<Spanned<Dur>>,
}

/// `[objects]`: overrides of the core's object tuning.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObjects {
    pub replication: Option<Count>,
    pub anti_entropy_interval: Option<Spanned<Dur>>,
    pub batch_delay: Option<Dur>,
    pub fetch_timeout: Option<Spanned<Dur>>,
    pub write_fetch_timeout: Option<Dur>,
    pub quorum_timeout: Option<Spanned<Dur>>,
    pub quorum_retry: Option<Spanned<Dur>>,
    pub replace_after: Option<Dur>,
    pub cache_kib: Option<Count>,
}

/// How a workload picks the object of each write.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum KeyDist {
    Uniform,
    Zipf,
}

/// One `[[workload]]` entry: writes at a rate, from some nodes, to some objects.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    pub name: Option<String>,
    pub namespace: Option<Spanned<String>>,
    pub objects: Option<Count>,
    pub start: Option<Spanned<Dur>>,
    pub stop: Spanned<Dur>,
    pub rate: Spanned<f64>,
    pub writers: Option<Spanned<Vec<String>>>,
    pub keys: Option<KeyDist>,
    pub zipf_exponent: Option<Spanned<f64>>,
    pub inc: Option<Probability>,
    pub durability: Option<liquid_core::objects::Durability>,
    pub value_bytes: Option<Spanned<u32>>,
    pub create: Option<bool>,
    pub creator: Option<Spanned<String>>,
    pub create_at: Option<Spanned<Dur>>,
}

/// One `[[faults]]` entry: `at` plus exactly one action.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    pub at: Spanned<Dur>,
    pub name: Option<String>,
    pub partition: Option<Spanned<Vec<String>>>,
    pub heal: Option<Spanned<Heal>>,
    pub crash: Option<Spanned<Vec<String>>>,
    pub restart: Option<Spanned<Vec<String>>>,
    pub fresh: Option<bool>,
}

/// `heal = "all"` or `heal = ["edge-0", …]`.
pub(crate) enum Heal {
    All,
    Sites(Vec<String>),
}

impl<'de> Deserialize<'de> for Heal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Heal;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"all\" or a list of site names")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Heal, E> {
                if s == "all" {
                    Ok(Heal::All)
                } else {
                    Err(E::custom(format!("expected \"all\" or a list of sites, got {s:?}")))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Heal, A::Error> {
                let mut sites = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    sites.push(s);
                }
                Ok(Heal::Sites(sites))
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written with units: `"250ms"`, `"30s"`, `"2m"`, `"1m30s"`, `"1h"`, `"1.5s"`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Dur(pub Duration);

impl Dur {
    /// Parses the text form; the error says what was expected.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad = || {
            format!(
                "invalid duration {text:?}: expected a number with a unit, like \"250ms\", \"30s\", \"2m\" or \"1m30s\""
            )
        };
        let s = text.trim();
        if s == "0" {
            return Ok(Duration::ZERO);
        }
        if s.is_empty() {
            return Err(bad());
        }
        let mut total_us: f64 = 0.0;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
            let (num, tail) = rest.split_at(num_len);
            let unit_len = tail.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let value: f64 = num.parse().map_err(|_| bad())?;
            let scale = match unit {
                "us" => 1.0,
                "ms" => 1e3,
                "s" => 1e6,
                "m" | "min" => 60e6,
                "h" => 3600e6,
                _ => return Err(bad()),
            };
            total_us += value * scale;
            rest = tail;
        }
        // Ten years is far beyond any simulation; it also keeps the cast below exact.
        if !total_us.is_finite() || total_us > 3.2e14 {
            return Err(format!("duration {text:?} is too long"));
        }
        Ok(Duration::from_micros(total_us.round() as u64))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Dur::parse(&s).map(Dur).map_err(de::Error::custom)
    }
}

/// A bandwidth with units: `"100Mbps"`, `"1Gbps"`, `"512kbps"`, `"9600bps"`. Stored in bits/s.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bandwidth(pub u64);

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = || {
            de::Error::custom(format!(
                "invalid bandwidth {text:?}: expected a number with a unit, like \"100Mbps\", \"1Gbps\" or \"512kbps\""
            ))
        };
        let s = text.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let (num, unit) = s.split_at(split);
        let value: f64 = num.parse().map_err(|_| bad())?;
        let scale = match unit.to_ascii_lowercase().as_str() {
            "bps" => 1.0,
            "kbps" => 1e3,
            "mbps" => 1e6,
            "gbps" => 1e9,
            "tbps" => 1e12,
            _ => return Err(bad()),
        };
        let bps = value * scale;
        if !(1.0..=1e15).contains(&bps) {
            return Err(de::Error::custom(format!("bandwidth {text:?} is out of range (1bps to 1000Tbps)")));
        }
        Ok(Bandwidth(bps.round() as u64))
    }
}

/// A probability in [0, 1] (a loss rate).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Probability(pub f64);

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Probability;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a probability between 0 and 1")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Probability, E> {
                if (0.0..=1.0).contains(&v) {
                    Ok(Probability(v))
                } else {
                    Err(E::custom(format!("loss must be between 0 and 1, got {v}")))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Probability, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Probability, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// A positive count (at least 1, at most 1,000,000).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Count(pub u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = i64::deserialize(d)?;
        if (1..=1_000_000).contains(&v) {
            Ok(Count(v as u32))
        } else {
            Err(de::Error::custom(format!("must be between 1 and 1000000, got {v}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        let ms = |n| Duration::from_millis(n);
        assert_eq!(Dur::parse("250ms"), Ok(ms(250)));
        assert_eq!(Dur::parse("30s"), Ok(ms(30_000)));
        assert_eq!(Dur::parse("2m"), Ok(ms(120_000)));
        assert_eq!(Dur::parse("1m30s"), Ok(ms(90_000)));
        assert_eq!(Dur::parse("1.5s"), Ok(ms(1500)));
        assert_eq!(Dur::parse("0"), Ok(Duration::ZERO));
        for bad in ["", "5", "5 parsecs", "s", "1x", "-1s"] {
            assert!(Dur::parse(bad).is_err(), "{bad:?}");
        }
    }
}
