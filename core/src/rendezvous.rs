//! Rendezvous hashing: which nodes replicate an object (over the membership view, with a tier
//! preference), and the ranking the functions subsystem uses for homes and lease granters.
//!
//! Every node computes the same replica set from the same view, with no coordination: each
//! candidate gets the score `mix(hash(object) ^ hash(node))` and the highest scores win. When
//! a node joins or is replaced, only the objects for which it now ranks (or ranked) in the top
//! `n` change their set, about `n / members` of them (the property that makes rendezvous
//! hashing the usual choice over modulo placement).
//!
//! Tier preference: if any candidate is a cloud node, the best-scoring cloud node is always a
//! member (an always-on, well-connected copy), and the rest are the best-scoring others of
//! any tier. Copies near the writers come from the follower rule (see `docs/objects.md`):
//! a node that writes an object holds a copy of it.

use crate::{NodeId, Tier};

/// One node that may hold replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaNode {
    /// The node.
    pub id: NodeId,
    /// Its tier.
    pub tier: Tier,
}

/// A 64-bit hash of a byte string (BLAKE3, truncated): stable across builds and platforms,
/// so every node ranks candidates the same way.
pub fn hash64(bytes: &[u8]) -> u64 {
    let h = blake3::hash(bytes);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// SplitMix64's finaliser: a cheap bijective mix, so `score` is uniform even though the two
/// inputs are combined with a xor.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The score of a node (by its [`hash64`] of the id) for an object (by its [`hash64`] of the name).
pub fn score(object: u64, node: u64) -> u64 {
    mix(object ^ node)
}

/// The replica set of the object whose name hashes to `object`: `n` candidates (fewer if
/// there are fewer), best first. `candidates` carry their precomputed node hashes; ties
/// (astronomically rare) break by id so the result never depends on input order.
pub fn replica_set(object: u64, candidates: &[(ReplicaNode, u64)], n: usize) -> Vec<NodeId> {
    let mut ranked: Vec<(u64, &ReplicaNode)> = candidates.iter().map(|(c, h)| (score(object, *h), c)).collect();
    let by_rank = |a: &(u64, &ReplicaNode), b: &(u64, &ReplicaNode)| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id));
    let n = n.min(ranked.len());
    if n == 0 {
        return Vec::new();
    }
    let cloud = ranked.iter().filter(|(_, c)| c.tier == Tier::Cloud).min_by(|a, b| by_rank(a, b)).copied();
    // Only the top n (plus the cloud pick) matter: partial selection keeps this O(candidates).
    if n < ranked.len() {
        ranked.select_nth_unstable_by(n - 1, by_rank);
        ranked.truncate(n);
    }
    if let Some(cloud) = cloud
        && !ranked.iter().any(|(_, c)| c.id == cloud.1.id)
    {
        ranked.sort_by(by_rank);
        ranked.pop();
        ranked.push(cloud);
    }
    // Best first, whatever made each one a member, so equal sets are equal lists.
    ranked.sort_by(by_rank);
    ranked.iter().map(|(_, c)| c.id).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candidates(tiers: &[Tier]) -> Vec<(ReplicaNode, u64)> {
        tiers
            .iter()
            .enumerate()
            .map(|(i, &tier)| {
                let mut id = [0u8; 32];
                id[..8].copy_from_slice(&(i as u64).to_le_bytes());
                let id = NodeId(id);
                (ReplicaNode { id, tier }, hash64(&id.0))
            })
            .collect()
    }

    #[test]
    fn includes_a_cloud_node_when_one_exists() {
        let mut tiers = vec![Tier::Edge; 50];
        tiers[17] = Tier::Cloud;
        let c = candidates(&tiers);
        for o in 0..200u64 {
            let set = replica_set(hash64(&o.to_le_bytes()), &c, 3);
            assert_eq!(set.len(), 3);
            assert!(set.contains(&c[17].0.id), "object {o}: {set:?}");
        }
    }

    #[test]
    fn small_views_give_everyone() {
        let c = candidates(&[Tier::Edge, Tier::Fog]);
        assert_eq!(replica_set(1, &c, 3).len(), 2);
        assert!(replica_set(1, &[], 3).is_empty());
    }

    #[test]
    fn spreads_objects_evenly() {
        let c = candidates(&[Tier::Edge; 10]);
        let mut load = [0usize; 10];
        for o in 0..3000u64 {
            for id in replica_set(hash64(&o.to_le_bytes()), &c, 3) {
                load[usize::from(id.0[0])] += 1;
            }
        }
        // 900 each on average; a bad mix would pile objects on a few nodes.
        assert!(load.iter().all(|&l| (750..1050).contains(&l)), "{load:?}");
    }

    proptest! {
        /// The set depends only on the candidates, not on their order, and removing a node
        /// outside the set changes nothing (minimal disruption).
        #[test]
        fn stable_and_order_independent(object: u64, n in 1usize..6, count in 1usize..40, seed: u64, cloud in proptest::option::of(0usize..40)) {
            let mut tiers = vec![Tier::Edge; count];
            if let Some(i) = cloud && i < count { tiers[i] = Tier::Cloud; }
            let c = candidates(&tiers);
            let set = replica_set(object, &c, n);
            let mut shuffled = c.clone();
            let k = (seed as usize) % count;
            shuffled.rotate_left(k);
            shuffled.reverse();
            prop_assert_eq!(&replica_set(object, &shuffled, n), &set);
            if let Some(out) = c.iter().position(|(x, _)| !set.contains(&x.id) && x.tier != Tier::Cloud) {
                let mut fewer = c.clone();
                fewer.remove(out);
                prop_assert_eq!(replica_set(object, &fewer, n), set);
            }
        }
    }
}
