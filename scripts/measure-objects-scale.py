#!/usr/bin/env python3
"""Objects at scale on one agent: creation rate, memory, disk, and restart (issue 23).

Starts one `liquid agent --dev` in a temporary data dir, creates N small objects (about 100
bytes each) through `POST /v1/objects/scale/kN` from C client threads, then prints:
  - creations per second;
  - the agent's resident memory (VmRSS) and peak (VmHWM), from /proc;
  - the data dir's size on disk;
  - the cache's documents and bytes, from /metrics;
then stops the agent (SIGTERM), starts it again on the same data dir and prints the time to
its first API answer, the time until a read of the last object succeeds, and the memory again.

Usage: scripts/measure-objects-scale.py [--objects N] [--clients C] [--cache SIZE] [--bin PATH]
The agent binary defaults to target/release/liquid (a debug build works, slower). Linux only.
Everything it starts is stopped, and the temporary directory removed, on every exit path.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def du_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


class Agent:
    def __init__(self, binary, data_dir, cache, log):
        self.binary, self.data_dir, self.cache, self.log = binary, data_dir, cache, log
        self.proc = None

    def start(self):
        for f in ("api.addr",):
            try:
                os.remove(os.path.join(self.data_dir, f))
            except FileNotFoundError:
                pass
        args = [self.binary, "agent", "--dev", "--data-dir", self.data_dir, "--api", "127.0.0.1:0",
                "--no-mdns", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--objects-max", "10000000",
                "--namespace-objects-max", "10000000"]
        if self.cache:
            args += ["--object-cache", self.cache]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env)
        started = time.monotonic()
        while time.monotonic() - started < 120:
            if self.proc.poll() is not None:
                sys.exit(f"the agent exited with {self.proc.returncode}; see {self.log.name}")
            try:
                with open(os.path.join(self.data_dir, "api.addr")) as f:
                    self.url = f.read().strip()
                with open(os.path.join(self.data_dir, "api.token")) as f:
                    self.token = f.read().strip()
                self.call("GET", "/v1/status")
                return time.monotonic() - started
            except (FileNotFoundError, OSError, urllib.error.URLError):
                time.sleep(0.02)
        self.log.flush()
        with open(self.log.name, "rb") as f:
            tail = f.read()[-2000:].decode(errors="replace")
        sys.exit(f"the agent did not answer within 120 s; the end of its log:\n{tail}")

    def call(self, method, path, body=None):
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.read()

    def metric(self, name):
        for line in self.call("GET", "/metrics").decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objects", type=int, default=20000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--cache", default=None, help="--object-cache for the agent (default: its own)")
    ap.add_argument("--bin", default="target/release/liquid")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    a = ap.parse_args()
    binary = os.path.realpath(a.bin)
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} is not executable: cargo build --release -p node-agent --bin liquid, or --bin")
    work = tempfile.mkdtemp(prefix="liquid-scale-")
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "agent.log"), "ab")
    agent = Agent(binary, data, a.cache, log)
    out = {"objects": a.objects, "clients": a.clients, "cache": a.cache or "default"}
    try:
        agent.start()
        rss0 = status_kib(agent.proc.pid, "VmRSS")
        payload = json.dumps([{"op": "set", "path": "v", "value": "x" * 90}]).encode()
        done = [0]
        lock = threading.Lock()

        def create(k):
            agent.call("POST", f"/v1/objects/scale/k{k}", payload)
            with lock:
                done[0] += 1

        t0 = time.monotonic()
        with ThreadPoolExecutor(a.clients) as pool:
            list(pool.map(create, range(a.objects)))
        took = time.monotonic() - t0
        time.sleep(2)  # the gauges are updated every second
        pid = agent.proc.pid
        out.update({
            "create_per_s": round(a.objects / took),
            "rss_start_mib": round(rss0 / 1024, 1),
            "rss_mib": round(status_kib(pid, "VmRSS") / 1024, 1),
            "hwm_mib": round(status_kib(pid, "VmHWM") / 1024, 1),
            "disk_mib": round(du_bytes(os.path.join(data, "objects")) / 2**20, 1),
            "cache_documents": agent.metric("liquid_object_cache_documents"),
            "cache_mib": round((agent.metric("liquid_object_cache_bytes") or 0) / 2**20, 1),
        })
        agent.stop()
        first = agent.start()
        t1 = time.monotonic()
        agent.call("GET", f"/v1/objects/scale/k{a.objects - 1}")
        pid = agent.proc.pid
        out.update({
            "restart_first_answer_s": round(first, 2),
            "restart_read_last_s": round(first + time.monotonic() - t1, 2),
            "restart_rss_mib": round(status_kib(pid, "VmRSS") / 1024, 1),
            "restart_hwm_mib": round(status_kib(pid, "VmHWM") / 1024, 1),
        })
    finally:
        agent.stop()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
