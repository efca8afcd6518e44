#!/usr/bin/env python3
"""Writes the liquid-*.toml placement scenarios: `python3 sim/scenarios/liquid-gen.py all`."""
import sys

def gen(name, desc, sites, devices, cloud, duration, phases, cut, extra_faults="", rate_busy=8.0, rate_quiet=0.3, seed=1,
        package="guests/tally", state_kib=64, about=""):
    out = []
    w = out.append
    w(f"# {desc}.")
    w("# Written by sim/scenarios/liquid-gen.py; see docs/simulator.md, \"Comparing placement policies\".")
    w("# One actor per edge site, deployed from cloud-0 and invoked by its site's devices; sites turn")
    w("# busy and quiet in turn. Run: liquid sim run sim/scenarios/" + name + ".toml --policy all")
    for line in about.strip().splitlines():
        w("# " + line)
    w(f'name = "{name}"')
    w(f'description = "{desc}"')
    w(f"seed = {seed}")
    w(f'duration = "{duration}s"')
    w('join_window = "3s"')
    w('fsync_latency = "2ms"')
    w("")
    w("[[sites]]")
    w('name = "edge"')
    w('tier = "edge"')
    w(f"count = {sites}")
    w(f"nodes = {devices}")
    w("")
    w("[[sites]]")
    w('name = "cloud"')
    w('tier = "cloud"')
    w(f"nodes = {cloud}")
    w("")
    w("# LAN round trips 1-2 ms; WAN round trips 40-120 ms (20 ms each way plus up to 40 ms of jitter).")
    w("[network.lan]")
    w('latency = "500us"')
    w('jitter = "500us"')
    w('bandwidth = "1Gbps"')
    w("loss = 0.0")
    w("")
    w("[network.wan]")
    w('latency = "20ms"')
    w('jitter = "40ms"')
    w('bandwidth = "100Mbps"')
    w("loss = 0.001")
    w("")
    w("[placement]")
    w('policy = "liquid"')
    w('every = "10s"')
    w("")
    for s in range(sites):
        w("[[function]]")
        w(f'package = "{package}"')
        w(f'name = "agg-edge-{s}"')
        w('kind = "actor"')
        w(f"state_kib = {state_kib}")
        w('deploy_at = "5s"')
        w('deployer = "cloud-0"')
        w("")
    # phases: list of (start, stop) per site where busy; quiet otherwise at low rate
    for s in range(sites):
        for (a, b, busy) in phases(s):
            w("[[invocations]]")
            w(f'name = "edge-{s} {"busy" if busy else "quiet"} {a}s"')
            w(f'function = "agg-edge-{s}"')
            w(f'start = "{a}s"')
            w(f'stop = "{b}s"')
            w(f"rate = {rate_busy if busy else rate_quiet}")
            w(f'callers = ["edge-{s}"]')
            w(f'input = "edge-{s}"')
            w("")
    if cut:
        (site, at, heal) = cut
        w(f"# edge-{site} is cut off from everything, then heals.")
        w("[[faults]]")
        w(f'at = "{at}s"')
        w(f'partition = ["edge-{site}"]')
        w("")
        w("[[faults]]")
        w(f'at = "{heal}s"')
        w('heal = "all"')
        w("")
    w(extra_faults)
    return "\n".join(out).rstrip() + "\n"

def phases_for(total_start, total_stop, period, sites):
    # Site s is busy in its own slots of the cycle, quiet otherwise.
    def f(s):
        res = []
        t = total_start
        k = 0
        while t < total_stop:
            e = min(t + period, total_stop)
            busy = (k % 3) == (s % 3) or (k % 3 == 0 and s % 2 == 0)
            res.append((t, e, busy))
            t = e
            k += 1
        # merge adjacent equal phases
        merged = []
        for p in res:
            if merged and merged[-1][2] == p[2] and merged[-1][1] == p[0]:
                merged[-1] = (merged[-1][0], p[1], p[2])
            else:
                merged.append(p)
        return merged
    return f

TALLY = """The actor is guests/tally (an in-memory aggregator: its state is its memory; it touches no
objects), so where it should run is decided by its callers alone."""
AGG = """The actor is examples/functions/sensor-aggregate overridden to kind = "actor" (build it with
scripts/build-guests.sh): each call writes its site's aggregates/<site> object. See
docs/simulator.md, "Actors that write their site's data", for the results."""
which = sys.argv[1]
small = lambda name, pkg, about, kib: gen(name, "3 edge sites of 2 devices and a cloud region of 3 nodes; edge-2 is cut off and heals",
    3, 2, 3, 100, phases_for(10, 90, 20, 3), (2, 55, 70), rate_busy=5.0, rate_quiet=0.2, package=pkg, about=about, state_kib=kib)
big = lambda name, pkg, about, kib: gen(name, "20 edge sites of 4 devices and a cloud region of 4 nodes; edge-7 is cut off and heals",
    20, 4, 4, 600, phases_for(15, 570, 60, 20), (7, 300, 360), rate_busy=5.0, rate_quiet=0.2, package=pkg, about=about, state_kib=kib)
out = {
    "liquid-small": small("liquid-small", "guests/tally", TALLY, 64),
    "liquid-edge-sites": big("liquid-edge-sites", "guests/tally", TALLY, 64),
    "liquid-edge-sites-objects": big("liquid-edge-sites-objects", "../../examples/functions/sensor-aggregate", AGG, 64),
}
if which == "all":
    import os
    here = os.path.dirname(os.path.abspath(__file__))
    for k, v in out.items():
        open(os.path.join(here, k + ".toml"), "w").write(v)
else:
    print(out[which], end="")
