//! Checkers. What they find is counted per phase in [`crate::metrics::Metrics`].
//!
//! - **Convergence** (sampled every `sample_interval`, O(n) per sample): membership has
//!   converged when, for every island of running nodes, all its members have equal
//!   `membership().digest()` and one representative's view marks as alive exactly the running
//!   nodes of the island. A phase cannot converge while initial boots are still pending.
//! - **False suspicions**: see [`crate::report::FalseSuspicions`].
//! - **Objects** (`objects.rs`): per-phase object convergence, write outcomes, and the
//!   end-of-run invariants.

mod objects;

use liquid_core::membership::StatusChange;
use liquid_core::{Status, Time};

use crate::engine::Engine;
use crate::metrics::secs;
use crate::report::Suspicion;

/// How many false-suspicion examples a phase keeps.
const EXAMPLES_MAX: usize = 5;

/// The outcome of a view-agreement check.
pub(crate) struct Agreement {
    pub ok: bool,
    pub live: usize,
    pub islands: usize,
    pub detail: String,
}

#[derive(Clone, Copy)]
struct Island {
    rep: u32,
    digest: u64,
    live: usize,
    digests_equal: bool,
}

impl Engine<'_> {
    /// Feeds a node's status change to the false-suspicion checker.
    pub(crate) fn observe(&mut self, observer: u32, change: &StatusChange) {
        if !matches!(change.to, Status::Suspect | Status::Down) {
            return;
        }
        let Some(subject) = self.index_of(&change.id) else { return };
        if !self.running(subject) || !self.net.reachable(self.site(observer), self.site(subject)) {
            return;
        }
        let stable_since = [
            self.nodes[subject as usize].up_since,
            self.nodes[observer as usize].up_since,
            self.net.changed_at(self.site(observer)),
            self.net.changed_at(self.site(subject)),
        ]
        .into_iter()
        .max()
        .unwrap_or(Time::ZERO);
        let window = if change.to == Status::Suspect { self.metrics.suspect_window } else { self.metrics.down_window };
        if self.now.since(stable_since) < window {
            return;
        }
        let example =
            Suspicion { at_s: secs(self.now), observer: String::new(), subject: String::new(), to: change.to };
        let fs = &mut self.metrics.current().false_suspicions;
        match (change.local, change.to) {
            (false, _) => fs.learned += 1,
            (true, Status::Suspect) => fs.local_suspect += 1,
            (true, _) => fs.local_down += 1,
        }
        if change.local && fs.examples.len() < EXAMPLES_MAX {
            let (o, s) = (self.sc.node_name(observer), self.sc.node_name(subject));
            let fs = &mut self.metrics.current().false_suspicions;
            fs.examples.push(Suspicion { observer: o, subject: s, ..example });
        }
    }

    /// The periodic convergence sample.
    pub(crate) fn sample(&mut self) {
        let ok = self.boots_pending == 0 && self.agreement(false).ok;
        let now = self.now;
        self.metrics.converged(now, ok);
        self.objects_sample();
    }

    /// Checks that every island of running nodes agrees (see the module docs). With `detail`,
    /// says what disagrees.
    pub(crate) fn agreement(&self, detail: bool) -> Agreement {
        let mut islands: Vec<Option<Island>> = vec![None; self.net.islands_bound() as usize];
        let mut live = 0;
        for (i, sn) in self.nodes.iter().enumerate() {
            let Some(node) = &sn.node else { continue };
            live += 1;
            let digest = node.membership().digest();
            let slot = &mut islands[self.net.island(self.site(i as u32)) as usize];
            match slot {
                None => *slot = Some(Island { rep: i as u32, digest, live: 1, digests_equal: true }),
                Some(isl) => {
                    isl.live += 1;
                    isl.digests_equal &= isl.digest == digest;
                }
            }
        }
        let used: Vec<(usize, Island)> = islands.iter().enumerate().filter_map(|(k, i)| i.map(|i| (k, i))).collect();
        let mut out = Agreement { ok: true, live, islands: used.len(), detail: String::new() };
        for (k, isl) in used {
            if !isl.digests_equal {
                out.ok = false;
                if detail {
                    out.detail = format!("island {k}: the {} running nodes hold different digests", isl.live);
                }
                return out;
            }
            let Some(rep) = &self.nodes[isl.rep as usize].node else { continue };
            let mut alive = 0;
            for m in rep.membership().members(self.now) {
                if m.status != Status::Alive {
                    continue;
                }
                let here = self
                    .index_of(&m.info.id)
                    .is_some_and(|j| self.running(j) && self.net.island(self.site(j)) as usize == k);
                if !here {
                    out.ok = false;
                    if detail {
                        out.detail = format!("island {k}: {} is seen alive but is down or cut off", m.info.name);
                    }
                    return out;
                }
                alive += 1;
            }
            if alive != isl.live {
                out.ok = false;
                if detail {
                    out.detail = format!("island {k}: {alive} of its {} running nodes are seen alive", isl.live);
                }
                return out;
            }
        }
        out
    }
}
