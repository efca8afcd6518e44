//! From the file as written to a validated [`Scenario`]: names resolved, limits checked, the
//! fault sequence replayed once to refuse impossible orders (a restart of a running node…).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use liquid_core::{Tier, membership};
use toml::Spanned;

use liquid_core::objects;
use state_sync::ObjectName;

use super::raw::{
    Dur, Heal, KeyDist, RawFunction, RawFunctionsCfg, RawInvocations, RawLink, RawMembership, RawObjects, RawPlacement,
    RawScenario, RawSites, RawWorkload,
};
use super::{
    Action, Fault, FnCost, Group, Invocations, Location, PlacementCfg, Scenario, ScenarioError, SimFunction, Site,
    Workload,
};
use crate::network::{Link, Links};

/// The most nodes a scenario may declare.
pub(crate) const NODES_MAX: usize = 100_000;

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn invalid(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError::Invalid {
            at: Location::at(self.origin, self.text, span.map(|s| s.start)),
            field: field.into(),
            message: message.into(),
        }
    }
}

/// What a target name resolves to.
#[derive(Clone)]
enum Target {
    Node(u32),
    Sites(Vec<u32>),
}

pub(super) fn build(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
    let raw: RawScenario = toml::from_str(text).map_err(|e| ScenarioError::Syntax {
        at: Location::at(origin, text, e.span().map(|s| s.start)),
        message: e.message().trim_end().to_string(),
    })?;
    let cx = Ctx { text, origin };
    if raw.name.trim().is_empty() {
        return Err(cx.invalid(Some(0..0), "name", "must not be empty"));
    }
    let duration = raw.duration.get_ref().0;
    if duration.is_zero() {
        return Err(cx.invalid(Some(raw.duration.span()), "duration", "must be longer than 0"));
    }
    let positive = |v: &Option<Spanned<super::raw::Dur>>, field: &str, default: Duration| match v {
        Some(d) if d.get_ref().0.is_zero() => Err(cx.invalid(Some(d.span()), field, "must be longer than 0")),
        Some(d) => Ok(d.get_ref().0),
        None => Ok(default),
    };
    let sample_interval = positive(&raw.sample_interval, "sample_interval", Duration::from_secs(1))?;
    let connect_retry = positive(&raw.connect_retry, "connect_retry", Duration::from_secs(5))?;

    let (groups, sites, node_sites, names) = build_sites(&cx, &raw.sites)?;
    let bootstrap = match &raw.bootstrap {
        Some(name) => match names.get(name.get_ref()) {
            Some(Target::Node(n)) => *n,
            _ => return Err(cx.invalid(Some(name.span()), "bootstrap", format!("unknown node {:?}", name.get_ref()))),
        },
        None => default_bootstrap(&groups, &sites),
    };
    let join_window = raw.join_window.map_or(Duration::from_secs(10), |d| d.0);
    let mut scenario = Scenario {
        name: raw.name,
        description: raw.description,
        seed: raw.seed.unwrap_or(1),
        duration,
        join_window,
        bootstrap,
        sample_interval,
        disk_latency: raw.disk_latency.map_or(Duration::from_millis(2), |d| d.0),
        fsync_latency: raw.fsync_latency.map_or(Duration::from_millis(2), |d| d.0),
        torn_writes: raw.torn_writes.unwrap_or(false),
        connect_retry,
        rejoin_peers: raw.rejoin_peers.unwrap_or(1) as usize,
        groups,
        sites,
        node_sites,
        links: build_links(&cx, &raw.network)?,
        membership: build_membership(&cx, &raw.membership)?,
        objects: build_objects(&cx, &raw.objects)?,
        faults: Vec::new(),
        workloads: Vec::new(),
        functions: Vec::new(),
        invocations: Vec::new(),
        cost: Default::default(),
        placement: Default::default(),
    };
    scenario.faults = build_faults(&cx, &raw.faults, &names, &scenario)?;
    scenario.workloads = build_workloads(&cx, &raw.workload, &names, &scenario)?;
    scenario.functions = build_functions(&cx, &raw.function, &names, &scenario)?;
    scenario.invocations = build_invocations(&cx, &raw.invocations, &names, &scenario)?;
    scenario.cost = build_cost(&cx, &raw.functions)?;
    scenario.placement = build_placement(&cx, raw.placement)?;
    Ok(scenario)
}

type Sites = (Vec<Group>, Vec<Site>, Vec<u32>, BTreeMap<String, Target>);

fn build_sites(cx: &Ctx, raw: &Spanned<Vec<Spanned<RawSites>>>) -> Result<Sites, ScenarioError> {
    if raw.get_ref().is_empty() {
        return Err(cx.invalid(Some(raw.span()), "sites", "at least one site is needed"));
    }
    let (mut groups, mut sites, mut node_sites) = (Vec::new(), Vec::new(), Vec::new());
    let mut names: BTreeMap<String, Target> = BTreeMap::new();
    for (g, entry) in raw.get_ref().iter().enumerate() {
        let r = entry.get_ref();
        let field = format!("sites[{g}].name");
        let name = r.name.get_ref().clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.') {
            return Err(cx.invalid(Some(r.name.span()), field, "use letters, digits, '-', '_' and '.' only"));
        }
        let count = r.count.map_or(1, |c| c.0);
        let site_names: Vec<String> =
            if r.count.is_some() { (0..count).map(|i| format!("{name}-{i}")).collect() } else { vec![name.clone()] };
        let total = node_sites.len() as u64 + u64::from(count) * u64::from(r.nodes.0);
        if total > NODES_MAX as u64 {
            return Err(cx.invalid(
                Some(entry.span()),
                format!("sites[{g}]"),
                format!("more than {NODES_MAX} nodes in total"),
            ));
        }
        let first_site = sites.len() as u32;
        for site_name in site_names {
            let s = sites.len() as u32;
            let first_node = node_sites.len() as u32;
            for k in 0..r.nodes.0 {
                let node = format!("{site_name}-{k}");
                if names.insert(node.clone(), Target::Node(first_node + k)).is_some() {
                    return Err(cx.invalid(Some(r.name.span()), field, format!("the name {node:?} is used twice")));
                }
                node_sites.push(s);
            }
            if names.insert(site_name.clone(), Target::Sites(vec![s])).is_some() {
                return Err(cx.invalid(Some(r.name.span()), field, format!("the name {site_name:?} is used twice")));
            }
            sites.push(Site { name: site_name, group: g as u32, first_node, nodes: r.nodes.0 });
        }
        if r.count.is_some() {
            let all = (first_site..sites.len() as u32).collect();
            if names.insert(name.clone(), Target::Sites(all)).is_some() {
                return Err(cx.invalid(Some(r.name.span()), field, format!("the name {name:?} is used twice")));
            }
        }
        groups.push(group_of(r, name));
    }
    Ok((groups, sites, node_sites, names))
}

fn group_of(r: &RawSites, name: String) -> Group {
    let (arch, cpus, memory_mib) = match r.tier {
        Tier::Edge => ("aarch64", 4, 4 * 1024),
        Tier::Fog => ("x86_64", 16, 32 * 1024),
        Tier::Cloud => ("x86_64", 64, 256 * 1024),
    };
    Group {
        name,
        tier: r.tier,
        arch: r.arch.clone().unwrap_or_else(|| arch.to_string()),
        cpus: r.cpus.unwrap_or(cpus),
        memory_mib: r.memory_mib.unwrap_or(memory_mib),
    }
}

fn default_bootstrap(groups: &[Group], sites: &[Site]) -> u32 {
    for tier in [Tier::Cloud, Tier::Fog] {
        if let Some(site) = sites.iter().find(|s| groups[s.group as usize].tier == tier) {
            return site.first_node;
        }
    }
    0
}

fn link(raw: Option<&RawLink>, base: Link) -> Link {
    let Some(r) = raw else { return base };
    Link {
        latency: r.latency.map_or(base.latency, |d| d.0),
        jitter: r.jitter.map_or(base.jitter, |d| d.0),
        bandwidth_bps: r.bandwidth.map_or(base.bandwidth_bps, |b| b.0),
        loss: r.loss.map_or(base.loss, |p| p.0),
    }
}

fn build_links(cx: &Ctx, raw: &super::raw::RawNetwork) -> Result<Links, ScenarioError> {
    let wan = link(raw.wan.as_ref(), Link::WAN);
    let mut links = Links::new(link(raw.lan.as_ref(), Link::LAN), wan);
    let mut seen = BTreeSet::new();
    for (i, entry) in raw.links.iter().enumerate() {
        let r = entry.get_ref();
        let [a, b] = r.between;
        if !seen.insert((a.min(b), a.max(b))) {
            return Err(cx.invalid(
                Some(entry.span()),
                format!("network.links[{i}].between"),
                format!("a second link between {a} and {b}"),
            ));
        }
        let l = Link {
            latency: r.latency.map_or(wan.latency, |d| d.0),
            jitter: r.jitter.map_or(wan.jitter, |d| d.0),
            bandwidth_bps: r.bandwidth.map_or(wan.bandwidth_bps, |b| b.0),
            loss: r.loss.map_or(wan.loss, |p| p.0),
        };
        links.set(a, b, l);
    }
    Ok(links)
}

fn build_membership(cx: &Ctx, raw: &RawMembership) -> Result<membership::Config, ScenarioError> {
    let mut c = membership::Config::default();
    let dur = |v: &Option<Spanned<super::raw::Dur>>, field: &str, into: &mut Duration| match v {
        Some(d) if d.get_ref().0.is_zero() => {
            Err(cx.invalid(Some(d.span()), format!("membership.{field}"), "must be longer than 0"))
        }
        Some(d) => {
            *into = d.get_ref().0;
            Ok(())
        }
        None => Ok(()),
    };
    dur(&raw.probe_interval, "probe_interval", &mut c.probe_interval)?;
    dur(&raw.probe_timeout, "probe_timeout", &mut c.probe_timeout)?;
    dur(&raw.sync_interval, "sync_interval", &mut c.sync_interval)?;
    dur(&raw.reconnect_interval, "reconnect_interval", &mut c.reconnect_interval)?;
    if c.probe_timeout >= c.probe_interval {
        let span = raw.probe_timeout.as_ref().or(raw.probe_interval.as_ref()).map(|s| s.span());
        return Err(cx.invalid(span, "membership.probe_timeout", "must be shorter than probe_interval"));
    }
    if let Some(n) = raw.indirect_probes {
        c.indirect_probes = n.min(64);
    }
    if let Some(n) = raw.suspicion_mult {
        c.suspicion_mult = n.0;
    }
    if let Some(n) = raw.retransmit_mult {
        c.retransmit_mult = n.0;
    }
    if let Some(n) = raw.gossip_per_message {
        c.gossip_per_message = n.0 as usize;
    }
    if let Some(n) = raw.gossip_queue_max {
        c.gossip_queue_max = n.0 as usize;
    }
    Ok(c)
}

fn build_objects(cx: &Ctx, raw: &RawObjects) -> Result<objects::Config, ScenarioError> {
    let mut c = objects::Config::default();
    let positive = |v: &Option<Spanned<super::raw::Dur>>, field: &str, into: &mut Duration| match v {
        Some(d) if d.get_ref().0.is_zero() => {
            Err(cx.invalid(Some(d.span()), format!("objects.{field}"), "must be longer than 0"))
        }
        Some(d) => {
            *into = d.get_ref().0;
            Ok(())
        }
        None => Ok(()),
    };
    positive(&raw.anti_entropy_interval, "anti_entropy_interval", &mut c.anti_entropy_interval)?;
    positive(&raw.fetch_timeout, "fetch_timeout", &mut c.fetch_timeout)?;
    positive(&raw.quorum_timeout, "quorum_timeout", &mut c.quorum_timeout)?;
    positive(&raw.quorum_retry, "quorum_retry", &mut c.quorum_retry)?;
    if let Some(n) = raw.replication {
        c.replication_default = n.0 as usize;
    }
    if let Some(d) = raw.batch_delay {
        c.batch_delay = d.0;
    }
    if let Some(d) = raw.write_fetch_timeout {
        c.write_fetch_timeout = d.0;
    }
    if let Some(d) = raw.replace_after {
        c.replace_after = d.0;
    }
    if let Some(n) = raw.cache_kib {
        c.cache_bytes = u64::from(n.0) * 1024;
    }
    // Change timestamps are virtual time, so a seed reproduces every change hash.
    c.unix_epoch_offset_us = 0;
    Ok(c)
}

/// The most objects one workload may name.
const WORKLOAD_OBJECTS_MAX: u32 = 100_000;
/// The largest value a workload may write.
const VALUE_BYTES_MAX: u32 = 1 << 20;

fn build_workloads(
    cx: &Ctx,
    raw: &[Spanned<RawWorkload>],
    names: &BTreeMap<String, Target>,
    sc: &Scenario,
) -> Result<Vec<Workload>, ScenarioError> {
    let mut out = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let r = entry.get_ref();
        let field = |f: &str| format!("workload[{i}].{f}");
        let namespace = r.namespace.as_ref().map_or("sim", |n| n.get_ref().as_str());
        let count = r.objects.map_or(16, |c| c.0);
        if count > WORKLOAD_OBJECTS_MAX {
            return Err(cx.invalid(Some(entry.span()), field("objects"), format!("at most {WORKLOAD_OBJECTS_MAX}")));
        }
        let mut objects = Vec::with_capacity(count as usize);
        for k in 0..count {
            match ObjectName::new(namespace, &format!("key-{k}")) {
                Ok(name) => objects.push(name),
                Err(e) => {
                    let span = r.namespace.as_ref().map(|n| n.span());
                    return Err(cx.invalid(span, field("namespace"), e.to_string()));
                }
            }
        }
        let (start, stop) = window(cx, &r.start, &r.stop, sc.join_window, sc, &field)?;
        let rate = rate_of(cx, &r.rate, 1e6, "writes", &field)?;
        let writers = nodes_or_all(cx, names, sc, &r.writers, &field("writers"))?;
        let zipf = match (r.keys.unwrap_or(KeyDist::Uniform), &r.zipf_exponent) {
            (KeyDist::Uniform, None) => None,
            (KeyDist::Uniform, Some(e)) => {
                return Err(cx.invalid(Some(e.span()), field("zipf_exponent"), "only applies to keys = \"zipf\""));
            }
            (KeyDist::Zipf, None) => Some(1.0),
            (KeyDist::Zipf, Some(e)) => {
                let s = *e.get_ref();
                if !(s > 0.0 && s <= 10.0) {
                    return Err(cx.invalid(Some(e.span()), field("zipf_exponent"), "must be more than 0, at most 10"));
                }
                Some(s)
            }
        };
        let value_bytes = r.value_bytes.as_ref().map_or(0, |v| *v.get_ref());
        if value_bytes > VALUE_BYTES_MAX {
            let span = r.value_bytes.as_ref().map(|v| v.span());
            return Err(cx.invalid(span, field("value_bytes"), format!("at most {VALUE_BYTES_MAX}")));
        }
        let create = if r.create.unwrap_or(true) {
            let creator = match &r.creator {
                Some(name) => match names.get(name.get_ref()) {
                    Some(Target::Node(n)) => *n,
                    _ => {
                        let msg = format!("unknown node {:?}", name.get_ref());
                        return Err(cx.invalid(Some(name.span()), field("creator"), msg));
                    }
                },
                None => sc.bootstrap,
            };
            let at = match &r.create_at {
                Some(d) if d.get_ref().0 > start => {
                    return Err(cx.invalid(Some(d.span()), field("create_at"), "must not come after `start`"));
                }
                Some(d) => d.get_ref().0,
                None => start.saturating_sub(Duration::from_secs(5)),
            };
            Some((creator, at))
        } else {
            for (name, span) in [
                ("creator", r.creator.as_ref().map(|c| c.span())),
                ("create_at", r.create_at.as_ref().map(|c| c.span())),
            ] {
                if let Some(span) = span {
                    return Err(cx.invalid(Some(span), field(name), "only applies with create = true"));
                }
            }
            None
        };
        let label = r.name.clone().unwrap_or_else(|| format!("workload {i} ({namespace})"));
        out.push(Workload {
            label,
            objects,
            start,
            stop,
            rate,
            writers,
            zipf,
            inc: r.inc.map_or(0.5, |p| p.0),
            durability: r.durability.unwrap_or_default(),
            value_bytes,
            create,
        });
    }
    Ok(out)
}

fn resolve(names: &BTreeMap<String, Target>, sc: &Scenario, spec: &str) -> Option<Target> {
    if let Some(t) = names.get(spec) {
        return Some(t.clone());
    }
    // GROUP-A..B: sites A to B-1 of a counted group.
    let (prefix, range) = spec.rsplit_once('-')?;
    let (a, b) = range.split_once("..")?;
    let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
    let group = sc.groups.iter().position(|g| g.name == prefix)? as u32;
    let first = sc.sites.iter().position(|s| s.group == group)? as u32;
    let count = sc.sites.iter().filter(|s| s.group == group).count() as u32;
    (a < b && b <= count && sc.sites[first as usize].name != prefix)
        .then(|| Target::Sites((first + a..first + b).collect()))
}

/// The nodes a list of targets (nodes, sites, groups, ranges) names, sorted.
fn resolve_nodes(
    cx: &Ctx,
    names: &BTreeMap<String, Target>,
    sc: &Scenario,
    list: &Spanned<Vec<String>>,
    field: &str,
) -> Result<Vec<u32>, ScenarioError> {
    if list.get_ref().is_empty() {
        return Err(cx.invalid(Some(list.span()), field, "the list is empty"));
    }
    let mut out = BTreeSet::new();
    for spec in list.get_ref() {
        match resolve(names, sc, spec) {
            Some(Target::Node(n)) => {
                out.insert(n);
            }
            Some(Target::Sites(s)) => {
                for site in s {
                    let site = &sc.sites[site as usize];
                    out.extend(site.first_node..site.first_node + site.nodes);
                }
            }
            None => return Err(cx.invalid(Some(list.span()), field, format!("unknown node or site {spec:?}"))),
        }
    }
    Ok(out.into_iter().collect())
}

fn build_faults(
    cx: &Ctx,
    raw: &[Spanned<super::raw::RawFault>],
    names: &BTreeMap<String, Target>,
    sc: &Scenario,
) -> Result<Vec<Fault>, ScenarioError> {
    let mut faults = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let r = entry.get_ref();
        let at = r.at.get_ref().0;
        if at > sc.duration {
            return Err(cx.invalid(
                Some(r.at.span()),
                format!("faults[{i}].at"),
                "after the end of the run (`duration`)",
            ));
        }
        let sites_of = |list: &Spanned<Vec<String>>, field: &str| -> Result<Vec<u32>, ScenarioError> {
            let field = format!("faults[{i}].{field}");
            if list.get_ref().is_empty() {
                return Err(cx.invalid(Some(list.span()), field, "the list is empty"));
            }
            let mut out = BTreeSet::new();
            for spec in list.get_ref() {
                match resolve(names, sc, spec) {
                    Some(Target::Sites(s)) => out.extend(s),
                    Some(Target::Node(_)) => {
                        return Err(cx.invalid(
                            Some(list.span()),
                            field,
                            format!("{spec:?} is a node; name sites here"),
                        ));
                    }
                    None => return Err(cx.invalid(Some(list.span()), field, format!("unknown site {spec:?}"))),
                }
            }
            Ok(out.into_iter().collect())
        };
        let nodes_of = |list: &Spanned<Vec<String>>, field: &str| {
            resolve_nodes(cx, names, sc, list, &format!("faults[{i}].{field}"))
        };
        let mut actions = Vec::new();
        if let Some(p) = &r.partition {
            actions
                .push((Action::Partition(sites_of(p, "partition")?), format!("partition {}", p.get_ref().join(","))));
        }
        if let Some(h) = &r.heal {
            let (sites, label) = match h.get_ref() {
                Heal::All => (None, "heal all".to_string()),
                Heal::Sites(list) => {
                    let spanned = Spanned::new(h.span(), list.clone());
                    (Some(sites_of(&spanned, "heal")?), format!("heal {}", list.join(",")))
                }
            };
            actions.push((Action::Heal(sites), label));
        }
        if let Some(c) = &r.crash {
            actions.push((Action::Crash(nodes_of(c, "crash")?), format!("crash {}", c.get_ref().join(","))));
        }
        if let Some(c) = &r.restart {
            let fresh = r.fresh.unwrap_or(false);
            actions.push((
                Action::Restart { nodes: nodes_of(c, "restart")?, fresh },
                format!("restart {}", c.get_ref().join(",")),
            ));
        }
        if r.fresh.is_some() && r.restart.is_none() {
            return Err(cx.invalid(Some(entry.span()), format!("faults[{i}].fresh"), "only applies to `restart`"));
        }
        if actions.len() != 1 {
            let msg = "needs exactly one of `partition`, `heal`, `crash`, `restart`";
            return Err(cx.invalid(Some(entry.span()), format!("faults[{i}]"), msg));
        }
        let Some((action, label)) = actions.pop() else { continue };
        if matches!(action, Action::Crash(_) | Action::Restart { .. }) && at < sc.join_window {
            let msg = format!("crashes and restarts must come after the join window ({:?})", sc.join_window);
            return Err(cx.invalid(Some(r.at.span()), format!("faults[{i}].at"), msg));
        }
        faults.push((i, r.at.span(), Fault { at, label: r.name.clone().unwrap_or(label), action }));
    }
    faults.sort_by_key(|(_, _, f)| f.at);
    // Replay crashes and restarts in time order.
    let mut down = vec![false; sc.node_sites.len()];
    for (i, span, f) in &faults {
        let (nodes, crash) = match &f.action {
            Action::Crash(n) => (n, true),
            Action::Restart { nodes, .. } => (nodes, false),
            _ => continue,
        };
        for &n in nodes {
            if down[n as usize] == crash {
                let state = if crash { "already down" } else { "running" };
                let msg = format!("node {} is {state} at {:?}", sc.node_name(n), f.at);
                return Err(cx.invalid(Some(span.clone()), format!("faults[{i}]"), msg));
            }
            down[n as usize] = crash;
        }
    }
    Ok(faults.into_iter().map(|(_, _, f)| f).collect())
}

fn build_functions(
    cx: &Ctx,
    raw: &[Spanned<RawFunction>],
    names: &BTreeMap<String, Target>,
    sc: &Scenario,
) -> Result<Vec<SimFunction>, ScenarioError> {
    let base = std::path::Path::new(cx.origin).parent().unwrap_or(std::path::Path::new("."));
    let mut out: Vec<SimFunction> = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let r = entry.get_ref();
        let field = |f: &str| format!("function[{i}].{f}");
        let path = base.join(r.package.get_ref());
        let (mut manifest, module) = wasm_host::package::load(&path, r.name.as_deref())
            .map_err(|e| cx.invalid(Some(r.package.span()), field("package"), e.to_string()))?;
        if let Some(kind) = r.kind {
            manifest.kind = kind;
        }
        let state_kib = r.state_kib.as_ref().map_or(64, |k| *k.get_ref());
        if state_kib > 4 * 1024 * 1024 {
            let span = r.state_kib.as_ref().map(|k| k.span());
            return Err(cx.invalid(span, field("state_kib"), "at most 4194304 (4 GiB)"));
        }
        if out.iter().any(|f| f.manifest.name == manifest.name) {
            return Err(cx.invalid(
                Some(entry.span()),
                field("name"),
                format!("{:?} is deployed twice", manifest.name),
            ));
        }
        let deployer = match &r.deployer {
            Some(name) => match names.get(name.get_ref()) {
                Some(Target::Node(n)) => *n,
                _ => {
                    let msg = format!("unknown node {:?}", name.get_ref());
                    return Err(cx.invalid(Some(name.span()), field("deployer"), msg));
                }
            },
            None => sc.bootstrap,
        };
        let deploy_at = r.deploy_at.as_ref().map_or(sc.join_window, |d| d.get_ref().0);
        if deploy_at >= sc.duration {
            let span = r.deploy_at.as_ref().map(|d| d.span());
            return Err(cx.invalid(span, field("deploy_at"), "after the end of the run (`duration`)"));
        }
        let hash = wasm_host::ModuleHash::of(&module);
        out.push(SimFunction {
            manifest,
            module: std::sync::Arc::new(module),
            hash,
            deployer,
            deploy_at,
            state_bytes: state_kib * 1024,
        });
    }
    Ok(out)
}

fn build_invocations(
    cx: &Ctx,
    raw: &[Spanned<RawInvocations>],
    names: &BTreeMap<String, Target>,
    sc: &Scenario,
) -> Result<Vec<Invocations>, ScenarioError> {
    let mut out = Vec::new();
    for (i, entry) in raw.iter().enumerate() {
        let r = entry.get_ref();
        let field = |f: &str| format!("invocations[{i}].{f}");
        let function = r.function.get_ref().clone();
        let Some(f) = sc.functions.iter().find(|f| f.manifest.name == function) else {
            return Err(cx.invalid(Some(r.function.span()), field("function"), "no [[function]] has this name"));
        };
        let (start, stop) = window(cx, &r.start, &r.stop, f.deploy_at + Duration::from_secs(5), sc, &field)?;
        let rate = rate_of(cx, &r.rate, 1e5, "calls", &field)?;
        let callers = nodes_or_all(cx, names, sc, &r.callers, &field("callers"))?;
        let label = r.name.clone().unwrap_or_else(|| format!("invocations {i} ({function})"));
        out.push(Invocations {
            label,
            function,
            start,
            stop,
            rate,
            callers,
            input: r.input.clone().unwrap_or_default().into_bytes(),
        });
    }
    Ok(out)
}

fn build_placement(cx: &Ctx, raw: RawPlacement) -> Result<PlacementCfg, ScenarioError> {
    let mut cfg = PlacementCfg::default();
    if let Some(p) = &raw.policy {
        cfg.policy = crate::PolicyKind::parse(p.get_ref())
            .ok_or_else(|| cx.invalid(Some(p.span()), "placement.policy", "one of cloud, pinned, liquid"))?;
    }
    if let Some(every) = &raw.every {
        if every.get_ref().0.is_zero() {
            return Err(cx.invalid(Some(every.span()), "placement.every", "must be longer than 0"));
        }
        cfg.every = every.get_ref().0;
    }
    if let Some(d) = &raw.lease_duration {
        cfg.lease.duration = d.get_ref().0;
    }
    if let Some(d) = &raw.lease_renew_every {
        cfg.lease.renew_every = d.get_ref().0;
    }
    if cfg.lease.renew_every.is_zero() || cfg.lease.renew_every >= cfg.lease.duration {
        let span = raw.lease_renew_every.as_ref().or(raw.lease_duration.as_ref()).map(|d| d.span());
        return Err(cx.invalid(
            span,
            "placement.lease_renew_every",
            "must be more than 0 and less than lease_duration",
        ));
    }
    if let Some(params) = raw.params {
        cfg.params = params;
    }
    Ok(cfg)
}

fn build_cost(cx: &Ctx, raw: &RawFunctionsCfg) -> Result<FnCost, ScenarioError> {
    let mut cost = FnCost::default();
    let check = |v: &Option<Spanned<f64>>, name: &str, default: f64| -> Result<f64, ScenarioError> {
        match v {
            None => Ok(default),
            Some(x) if *x.get_ref() > 0.0 && *x.get_ref() <= 1e6 => Ok(*x.get_ref()),
            Some(x) => {
                Err(cx.invalid(Some(x.span()), format!("functions.{name}"), "must be more than 0, at most 1000000"))
            }
        }
    };
    cost.ns_per_fuel = check(&raw.ns_per_fuel, "ns_per_fuel", cost.ns_per_fuel)?;
    cost.slowdown[0] = check(&raw.edge_slowdown, "edge_slowdown", cost.slowdown[0])?;
    cost.slowdown[1] = check(&raw.fog_slowdown, "fog_slowdown", cost.slowdown[1])?;
    cost.slowdown[2] = check(&raw.cloud_slowdown, "cloud_slowdown", cost.slowdown[2])?;
    Ok(cost)
}

/// A stream's `start` (default `default_start`) and `stop`, checked against the run.
fn window(
    cx: &Ctx,
    start: &Option<Spanned<Dur>>,
    stop: &Spanned<Dur>,
    default_start: Duration,
    sc: &Scenario,
    field: &dyn Fn(&str) -> String,
) -> Result<(Duration, Duration), ScenarioError> {
    let begin = start.as_ref().map_or(default_start, |d| d.get_ref().0);
    let end = stop.get_ref().0;
    if end > sc.duration {
        return Err(cx.invalid(Some(stop.span()), field("stop"), "after the end of the run (`duration`)"));
    }
    if begin >= end {
        let span = start.as_ref().map_or(stop.span(), |s| s.span());
        return Err(cx.invalid(Some(span), field("start"), "must come before `stop`"));
    }
    Ok((begin, end))
}

/// A stream's rate: more than 0, at most `max` `what` per second.
fn rate_of(
    cx: &Ctx,
    rate: &Spanned<f64>,
    max: f64,
    what: &str,
    field: &dyn Fn(&str) -> String,
) -> Result<f64, ScenarioError> {
    let r = *rate.get_ref();
    if r > 0.0 && r <= max {
        Ok(r)
    } else {
        Err(cx.invalid(Some(rate.span()), field("rate"), format!("{what} per second: more than 0, at most {max}")))
    }
}

/// The nodes a list names, or every node.
fn nodes_or_all(
    cx: &Ctx,
    names: &BTreeMap<String, Target>,
    sc: &Scenario,
    list: &Option<Spanned<Vec<String>>>,
    field: &str,
) -> Result<Vec<u32>, ScenarioError> {
    match list {
        Some(list) => resolve_nodes(cx, names, sc, list, field),
        None => Ok((0..sc.node_count() as u32).collect()),
    }
}
