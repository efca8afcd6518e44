//! The driver's side of functions and actors, played by the harness: deploys, invocations,
//! and executions answered the way the agent would (a counting actor, or the test's answer).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Cluster, id};
use crate::Time;
use crate::functions::{Executed, Execution, InvokeId};

/// One execution of an actor call by [`Cluster::run_actors`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActorExec {
    /// Global time it ran.
    pub at: Time,
    /// The node it ran on.
    pub node: usize,
    /// The actor, by its function's name (also its registry key).
    pub name: String,
    /// The activation's epoch.
    pub epoch: u64,
    /// The count it answered (`None`: it found no state and failed).
    pub count: Option<i64>,
}

/// One answer to an invocation, in the order they were given.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Global time of the answer.
    pub at: Time,
    /// The node that answered.
    pub node: usize,
    /// The invocation's id.
    pub id: u64,
    /// The answer.
    pub result: Result<Vec<u8>, wasm_host::InvokeError>,
}

/// A test actor's state on one node: checkpoints by epoch (durable), and the live instance.
#[derive(Clone, Debug, Default)]
pub struct ActorDisk {
    /// The count checkpointed at each epoch.
    pub checkpoints: BTreeMap<u64, i64>,
    /// The live instance: (epoch, count).
    pub live: Option<(u64, i64)>,
}

impl Cluster {
    /// Deploys a function with `manifest` (its module's hash from its name) at node `k`, and
    /// runs a second for the registry to spread.
    pub fn deploy(&mut self, k: usize, manifest: wasm_host::Manifest) {
        let entry = crate::functions::Entry {
            hash: wasm_host::ModuleHash::of(manifest.name.as_bytes()),
            size: 10,
            deployed_by: id(k).to_string(),
            deployed_at_ms: 0,
            deleted: false,
            signature: None,
            manifest,
        };
        let now = self.clock(k);
        let req = self.nodes[k]
            .as_ref()
            .map(|n| n.deploy_request(now, &entry))
            .unwrap_or_else(|| panic!("node {k} is down"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(self.ask(k, req, Duration::from_secs(5)).is_some());
        self.run_for(Duration::from_secs(1));
    }

    /// Invokes `name` on node `k` and returns the invocation's id.
    pub fn invoke(&mut self, k: usize, name: &str, input: &[u8]) -> u64 {
        self.next_req += 1;
        let id = self.next_req;
        let now = self.clock(k);
        self.nodes[k].as_mut().unwrap().handle_invoke(now, InvokeId(id), name.into(), input.to_vec(), 0);
        self.drain(k);
        id
    }

    /// Runs every pending execution of an actor as the agent does: on the live instance of its
    /// epoch, else the newest checkpoint not above it, else fresh if allowed; the actor counts
    /// its calls and answers the count. Checkpoints after the call. Stateless executions get
    /// an empty output.
    pub fn run_actors(&mut self) {
        let execs = std::mem::take(&mut self.executions);
        for (k, exec) in execs {
            let result = match exec.actor.as_ref() {
                None => Ok(Vec::new()),
                Some(run) => {
                    let d = self.actor_disks.entry((k, exec.name.clone())).or_default();
                    let state = match d.live {
                        Some((e, v)) if e == run.epoch => Some(v),
                        _ => d
                            .checkpoints
                            .get(&run.epoch)
                            .copied()
                            .or_else(|| {
                                if run.fresh {
                                    None
                                } else {
                                    d.checkpoints.range(..run.epoch).next_back().map(|(_, v)| *v)
                                }
                            })
                            .or(if run.fresh { Some(0) } else { None }),
                    };
                    let count = state.map(|v| v + 1);
                    let at = self.now;
                    self.actor_log.push(ActorExec { at, node: k, name: exec.name.clone(), epoch: run.epoch, count });
                    match state {
                        Some(v) => {
                            let v = v + 1;
                            d.live = Some((run.epoch, v));
                            d.checkpoints.insert(run.epoch, v);
                            // The driver copies the checkpoint to the standbys it can reach
                            // (at once, here: the harness has no copy latency); the count is
                            // the checkpoint's position within the epoch.
                            let pos = crate::functions::actors::lease::Pos { epoch: run.epoch, n: v.unsigned_abs() };
                            let mut acks = 0;
                            for s in run.standbys.iter().map(super::index) {
                                if self.nodes[s].is_none() || self.cut.contains(&(k.min(s), k.max(s))) {
                                    continue;
                                }
                                let sd = self.actor_disks.entry((s, exec.name.clone())).or_default();
                                sd.checkpoints.retain(|e, _| *e >= run.epoch);
                                sd.checkpoints.insert(run.epoch, v);
                                let now = self.clock(s);
                                if let Some(n) = self.nodes[s].as_mut()
                                    && n.handle_replica_stored(now, &exec.name, pos)
                                {
                                    acks += 1;
                                }
                                self.drain(s);
                            }
                            if acks >= run.quorum {
                                Ok(v.to_string().into_bytes())
                            } else {
                                Err(wasm_host::InvokeError::Unavailable(
                                    "not durable on a majority of the group".into(),
                                ))
                            }
                        }
                        None => Err(wasm_host::InvokeError::Unavailable("no state".into())),
                    }
                }
            };
            let now = self.clock(k);
            if let Some(n) = self.nodes[k].as_mut() {
                n.handle_executed(now, exec.id, Executed { result, fuel: 1, fetched: false, state_bytes: 0 });
                self.drain(k);
            }
        }
    }

    /// Answers every pending execution with `f`, then runs a moment for the answers to travel.
    pub fn execute_all(&mut self, f: impl Fn(usize, &Execution) -> Executed) {
        for (k, exec) in std::mem::take(&mut self.executions) {
            let done = f(k, &exec);
            let now = self.clock(k);
            if let Some(n) = self.nodes[k].as_mut() {
                n.handle_executed(now, exec.id, done);
                self.drain(k);
            }
        }
        self.run_for(Duration::from_millis(50));
    }
}
