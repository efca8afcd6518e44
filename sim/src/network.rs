//! The simulated network.
//!
//! # Model
//! - **Links.** Every pair of nodes uses one link class: `lan` when both are in the same site;
//!   otherwise the `[[network.links]]` entry for their two tiers (unordered); otherwise `wan`.
//! - **Delay.** A message sent at `t` arrives at `t + latency + U(0, jitter) + bytes × 8 /
//!   bandwidth`, `bytes` being the message's encoded length ([`liquid_core::wire::encoded_len`]).
//!   Jitter is drawn independently per message, so messages can be reordered. Bandwidth is a
//!   serialization delay only: links have no queues and never congest.
//! - **Loss.** Each message is lost independently with its link's `loss` probability.
//! - **Partitions.** Every site belongs to an *island*; all start on the mainland (island 0). A
//!   `partition` fault moves its sites to a new island; a `heal` moves sites back to the
//!   mainland. Two nodes can talk iff their sites are on the same island. A message is dropped
//!   if its ends are apart when it is sent **or** when it would be delivered.
//! - **Crashes.** A message is dropped if its recipient is down when it would arrive, or has
//!   restarted since it was sent (the connection it travelled on died with the old process).
//!
//! All randomness comes from one ChaCha8 stream seeded from the run's seed, drawn in event order.

use std::time::Duration;

use liquid_core::{Tier, Time};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// One class of link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// One-way base latency.
    pub latency: Duration,
    /// Extra delay, uniform in [0, jitter], drawn per message.
    pub jitter: Duration,
    /// Bits per second; a message takes `bytes × 8 / bandwidth` to serialize.
    pub bandwidth_bps: u64,
    /// The probability that a message is lost.
    pub loss: f64,
}

impl Link {
    /// Default for two nodes of one site.
    pub const LAN: Link = Link {
        latency: Duration::from_micros(500),
        jitter: Duration::from_micros(100),
        bandwidth_bps: 1_000_000_000,
        loss: 0.0,
    };
    /// Default for everything else.
    pub const WAN: Link = Link {
        latency: Duration::from_millis(30),
        jitter: Duration::from_millis(5),
        bandwidth_bps: 100_000_000,
        loss: 0.0,
    };
}

/// The link classes of a scenario.
#[derive(Clone, Debug)]
pub(crate) struct Links {
    pub lan: Link,
    /// By tier pair, symmetric.
    pub tiers: [[Link; 3]; 3],
}

fn tier_index(t: Tier) -> usize {
    match t {
        Tier::Edge => 0,
        Tier::Fog => 1,
        Tier::Cloud => 2,
    }
}

impl Links {
    /// The same link everywhere off-site.
    pub fn new(lan: Link, wan: Link) -> Self {
        Links { lan, tiers: [[wan; 3]; 3] }
    }

    /// Sets the link between two tiers (both directions).
    pub fn set(&mut self, a: Tier, b: Tier, link: Link) {
        let (a, b) = (tier_index(a), tier_index(b));
        self.tiers[a][b] = link;
        self.tiers[b][a] = link;
    }

    /// The link between two nodes.
    pub fn between(&self, same_site: bool, a: Tier, b: Tier) -> &Link {
        if same_site { &self.lan } else { &self.tiers[tier_index(a)][tier_index(b)] }
    }
}

/// The network's state during a run: islands and the random stream.
pub(crate) struct Network {
    /// The island of every site; 0 is the mainland.
    island: Vec<u32>,
    /// When each site last changed island (for the false-suspicion checker).
    changed_at: Vec<Time>,
    next_island: u32,
    rng: ChaCha8Rng,
}

impl Network {
    pub fn new(sites: usize, seed: u64) -> Self {
        Network {
            island: vec![0; sites],
            changed_at: vec![Time::ZERO; sites],
            next_island: 1,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Whether two sites can talk now.
    pub fn reachable(&self, a_site: u32, b_site: u32) -> bool {
        self.island[a_site as usize] == self.island[b_site as usize]
    }

    /// The island of a site.
    pub fn island(&self, site: u32) -> u32 {
        self.island[site as usize]
    }

    /// The largest island id in use plus one.
    pub fn islands_bound(&self) -> u32 {
        self.next_island
    }

    /// When a site last moved between islands.
    pub fn changed_at(&self, site: u32) -> Time {
        self.changed_at[site as usize]
    }

    /// Cuts `sites` off from everything else, as one island.
    pub fn partition(&mut self, now: Time, sites: &[u32]) {
        let island = self.next_island;
        self.next_island += 1;
        for &s in sites {
            self.island[s as usize] = island;
            self.changed_at[s as usize] = now;
        }
    }

    /// Brings `sites` (all if `None`) back to the mainland.
    pub fn heal(&mut self, now: Time, sites: Option<&[u32]>) {
        let all: Vec<u32>;
        let sites = match sites {
            Some(s) => s,
            None => {
                all = (0..self.island.len() as u32).collect();
                &all
            }
        };
        for &s in sites {
            if self.island[s as usize] != 0 {
                self.island[s as usize] = 0;
                self.changed_at[s as usize] = now;
            }
        }
    }

    /// Whether a message on `link` is lost.
    pub fn lost(&mut self, link: &Link) -> bool {
        link.loss > 0.0 && self.unit() < link.loss
    }

    /// How long a message of `bytes` takes on `link`.
    pub fn delay(&mut self, link: &Link, bytes: usize) -> Duration {
        let jitter_us = link.jitter.as_micros() as u64;
        let jitter = if jitter_us == 0 { 0 } else { self.rng.next_u64() % (jitter_us + 1) };
        let serialize_us = (bytes as u64).saturating_mul(8_000_000) / link.bandwidth_bps.max(1);
        link.latency + Duration::from_micros(jitter + serialize_us)
    }

    /// A uniform draw in [0, `max`].
    pub fn uniform(&mut self, max: Duration) -> Duration {
        let us = max.as_micros() as u64;
        Duration::from_micros(if us == 0 { 0 } else { self.rng.next_u64() % (us + 1) })
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_and_heals_move_sites_between_islands() {
        let mut net = Network::new(4, 1);
        assert!(net.reachable(0, 3));
        net.partition(Time(5), &[1, 2]);
        assert!(net.reachable(1, 2) && !net.reachable(0, 1) && net.reachable(0, 3));
        net.partition(Time(6), &[3]);
        assert!(!net.reachable(0, 3) && !net.reachable(1, 3));
        net.heal(Time(7), Some(&[3]));
        assert!(net.reachable(0, 3) && !net.reachable(0, 1));
        net.heal(Time(8), None);
        assert!(net.reachable(0, 1) && net.reachable(2, 3));
        assert_eq!(net.changed_at(2), Time(8));
    }

    #[test]
    fn delay_includes_latency_jitter_and_serialization() {
        let mut net = Network::new(1, 1);
        let link = Link {
            latency: Duration::from_millis(10),
            jitter: Duration::from_millis(2),
            bandwidth_bps: 8_000_000,
            loss: 0.0,
        };
        for _ in 0..100 {
            // 1000 bytes at 1 MB/s: 1 ms.
            let d = net.delay(&link, 1000);
            assert!(d >= Duration::from_millis(11) && d <= Duration::from_millis(13), "{d:?}");
        }
        let lossy = Link { loss: 0.5, ..link };
        let lost = (0..10_000).filter(|_| net.lost(&lossy)).count();
        assert!((4_500..5_500).contains(&lost), "{lost}");
    }
}
