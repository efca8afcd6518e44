//! Where an actor's group sits (issue 18): its home, plus standbys chosen for locality and
//! for survival.
//!
//! The group is the actor's lease granters and the holders of its checkpoint copies. Of a
//! group of `size` (3 by default), `size / 2` standbys sit in the home's site when that site
//! has them. With the home that is a majority inside the site, so a site cut off from the rest
//! keeps leasing and serving its own actor, and `group` durability costs one round trip inside
//! the site. The remaining members sit in other sites, so the state outlives the loss of a
//! whole site. The trade: when the whole home site is lost, the members outside it hold every
//! answered call but are a minority, so the actor waits for the site to come back (or for an
//! operator); and when the site is cut off, the outside member cannot take over, by design.
//!
//! Within each part, members are chosen by rendezvous hashing over `granters/<name>`, so
//! every node computes the same group from the same view. A site with too few nodes is filled
//! from outside, and a mesh with too few sites from inside. Nodes without a `site` label count
//! as a site of their own each, so that a mesh with no labels gets the plain rendezvous
//! choice, the home first. A move takes the group along: the source computes the group for
//! the target, and the target's first lease needs majorities of both the old and the new
//! group (see [`super::lease::Holder::joint_with`]).

use crate::NodeId;
use crate::rendezvous::{hash64, score};

/// Members in a group, the home included.
pub const SIZE: usize = 3;

/// The group of actor `name` homed at `home`, among `alive` nodes given with their `site`
/// label (the home need not be listed). The home comes first.
pub fn group_for(name: &str, home: NodeId, alive: &[(NodeId, Option<String>)], size: usize) -> Vec<NodeId> {
    let f = hash64(format!("granters/{name}").as_bytes());
    let site_of = |n: &NodeId| alive.iter().find(|(id, _)| id == n).and_then(|(_, s)| s.clone());
    let home_site = site_of(&home);
    let mut ranked: Vec<(u64, NodeId, bool)> = alive
        .iter()
        .filter(|(id, _)| *id != home)
        .map(|(id, site)| {
            let local = home_site.is_some() && *site == home_site;
            (score(f, hash64(&id.to_peer_id_bytes())), *id, local)
        })
        .collect();
    ranked.sort_by(|a, b| b.cmp(a));
    ranked.dedup_by_key(|r| r.1);
    let want = size.saturating_sub(1);
    let local_want = if home_site.is_some() { size / 2 } else { 0 };
    let mut local: Vec<NodeId> = ranked.iter().filter(|r| r.2).map(|r| r.1).collect();
    let mut remote: Vec<NodeId> = ranked.iter().filter(|r| !r.2).map(|r| r.1).collect();
    let take_local = local_want.min(local.len()).max(want.saturating_sub(remote.len()));
    let take_local = take_local.min(local.len());
    local.truncate(take_local);
    remote.truncate(want.saturating_sub(take_local));
    let mut group = vec![home];
    group.extend(local);
    group.extend(remote);
    group
}

/// The alive members of `membership` (this node included) with their `site` labels: the
/// input of [`group_for`].
pub fn alive_sites(membership: &crate::membership::Membership, now: crate::Time) -> Vec<(NodeId, Option<String>)> {
    membership
        .members(now)
        .filter(|m| m.status == crate::membership::Status::Alive)
        .map(|m| (m.info.id, m.info.labels.get("site").cloned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(k: u8) -> NodeId {
        NodeId([k; 32])
    }

    fn mesh(sites: &[(u8, Option<&str>)]) -> Vec<(NodeId, Option<String>)> {
        sites.iter().map(|(k, s)| (n(*k), s.map(str::to_string))).collect()
    }

    #[test]
    fn a_majority_sits_in_the_homes_site_and_one_member_outside() {
        let alive = mesh(&[(1, Some("a")), (2, Some("a")), (3, Some("a")), (4, Some("b")), (5, Some("c"))]);
        for name in ["x", "y", "z", "tally"] {
            let g = group_for(name, n(1), &alive, SIZE);
            assert_eq!(g.len(), 3);
            assert_eq!(g[0], n(1), "the home first");
            let site = |id: &NodeId| alive.iter().find(|(i, _)| i == id).and_then(|(_, s)| s.clone());
            let inside = g.iter().filter(|id| site(id).as_deref() == Some("a")).count();
            assert_eq!(inside, 2, "{name}: {g:?}");
        }
    }

    #[test]
    fn a_small_site_is_filled_from_outside_and_no_labels_means_plain_rendezvous() {
        let alive = mesh(&[(1, Some("a")), (4, Some("b")), (5, Some("b"))]);
        let g = group_for("x", n(1), &alive, SIZE);
        assert_eq!(g.len(), 3);
        let alive = mesh(&[(1, None), (2, None), (3, None), (4, None)]);
        let g = group_for("x", n(1), &alive, SIZE);
        assert_eq!((g.len(), g[0]), (3, n(1)));
        let alive = mesh(&[(1, Some("a")), (2, Some("a")), (3, Some("a"))]);
        assert_eq!(group_for("x", n(1), &alive, SIZE).len(), 3, "one site: all inside");
        assert_eq!(group_for("x", n(1), &mesh(&[(1, None)]), SIZE), vec![n(1)], "a mesh of one");
    }

    proptest! {
        #[test]
        fn groups_are_deterministic_distinct_and_local_when_they_can_be(
            nodes in proptest::collection::vec((1u8..40, 0u8..4), 1..20),
            home in 1u8..40,
            name in "[a-z]{1,8}",
        ) {
            // A membership view lists each node once.
            let mut seen_ids = std::collections::BTreeSet::new();
            let alive: Vec<(NodeId, Option<String>)> = nodes
                .iter()
                .filter(|(k, _)| seen_ids.insert(*k))
                .map(|(k, s)| (n(*k), (*s > 0).then(|| format!("s{s}"))))
                .collect();
            let g = group_for(&name, n(home), &alive, SIZE);
            prop_assert_eq!(&g, &group_for(&name, n(home), &alive, SIZE));
            prop_assert_eq!(g[0], n(home));
            let mut seen = g.clone();
            seen.sort();
            seen.dedup();
            prop_assert_eq!(seen.len(), g.len(), "no node twice");
            let others: std::collections::BTreeSet<NodeId> =
                alive.iter().map(|(id, _)| *id).filter(|id| *id != n(home)).collect();
            prop_assert_eq!(g.len(), SIZE.min(others.len() + 1));
            let site = |id: &NodeId| alive.iter().find(|(i, _)| i == id).and_then(|(_, s)| s.clone());
            if let Some(hs) = site(&n(home)) {
                let local_others = others.iter().filter(|id| site(id).as_deref() == Some(hs.as_str())).count();
                let remote_others = others.len() - local_others;
                let inside = g[1..].iter().filter(|id| site(id).as_deref() == Some(hs.as_str())).count();
                prop_assert!(inside >= (SIZE / 2).min(local_others), "{:?}", g);
                if remote_others > 0 && g.len() == SIZE {
                    prop_assert!(g.len() - 1 - inside >= 1, "one member outside: {:?}", g);
                }
            }
        }
    }
}
