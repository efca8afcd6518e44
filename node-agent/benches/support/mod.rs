//! What the release benchmarks share: settings from the environment, the machine's load, and
//! real `liquid agent` processes on loopback driven over their HTTP API. Each bench includes
//! it with `mod support;` and uses the parts it needs.

#![allow(dead_code)] // Each bench uses a different part.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

/// How long an agent may take to answer its API after it started.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `name` from the environment as a number, else `default`.
pub fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().with_context(|| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` prints them (benchmarks print it
/// so a reader knows whether the machine was quiet).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `liquid` binary cargo built for this bench, with no `LIQUID_*` or `RUST_LOG` from the
/// caller's environment (they would change what is measured).
pub fn liquid_cmd() -> Result<Command> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_liquid"));
    ensure!(
        bin.exists(),
        "the liquid binary is missing at {}: run the bench through `cargo bench -p node-agent`, which builds it",
        bin.display()
    );
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LIQUID_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG").stdin(Stdio::null());
    Ok(cmd)
}

/// A `liquid agent` process on loopback; killed when dropped.
pub struct Agent {
    pub name: String,
    pub child: Child,
    pub dir: PathBuf,
    pub log: PathBuf,
    /// The API's base URL (known once [`Agent::ready`] returned).
    pub base: String,
    /// The API token.
    pub token: String,
    /// The node id.
    pub id: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// Starts `liquid agent` in `root/name` (API on an ephemeral port, QUIC on loopback, tier
    /// cloud, no mDNS), its log in `root/name.log`; `extra` flags are appended.
    pub fn start(root: &Path, name: &str, extra: &[&str]) -> Result<Agent> {
        let dir = root.join(name);
        let log = root.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = liquid_cmd()?;
        cmd.arg("agent")
            .arg("--data-dir")
            .arg(&dir)
            .args(["--api", "127.0.0.1:0", "--no-mdns", "--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
            .args(["--name", name, "--tier", "cloud"])
            .args(extra)
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd.spawn().with_context(|| format!("starting agent {name}"))?;
        Ok(Agent {
            name: name.to_string(),
            child,
            dir,
            log,
            base: String::new(),
            token: String::new(),
            id: String::new(),
        })
    }

    /// The agent's log so far, without colours.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines of the log (for error messages).
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until the API answers `GET /v1/status`; learns the URL, token and id; returns
    /// the status.
    pub async fn ready(&mut self, http: &reqwest::Client) -> Result<Value> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("agent {} exited ({status}) before its API answered:\n{}", self.name, self.log_tail());
            }
            if self.base.is_empty() {
                let addr = std::fs::read_to_string(self.dir.join("api.addr")).unwrap_or_default();
                let token = std::fs::read_to_string(self.dir.join("api.token")).unwrap_or_default();
                if !addr.trim().is_empty() && !token.trim().is_empty() {
                    self.base = addr.trim().trim_end_matches('/').to_string();
                    self.token = token.trim().to_string();
                }
            }
            if !self.base.is_empty() {
                let r = http.get(format!("{}/v1/status", self.base)).bearer_auth(&self.token).send().await;
                if let Ok(r) = r
                    && r.status().is_success()
                {
                    let st: Value = r.json().await?;
                    self.id = st["id"].as_str().context("status has no id")?.to_string();
                    return Ok(st);
                }
            }
            if Instant::now() >= deadline {
                bail!("agent {} did not answer within {START_TIMEOUT:?}:\n{}", self.name, self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET path` (under the API's base URL), as JSON.
    pub async fn get(&self, http: &reqwest::Client, path: &str) -> Result<Value> {
        let r = http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        let code = r.status();
        let body = r.text().await?;
        ensure!(code.is_success(), "GET {path} on {}: {code} {body}", self.name);
        Ok(serde_json::from_str(&body)?)
    }

    /// `PUT /v1/functions/{name}` with the module and, if given, a manifest.
    pub async fn deploy(&self, http: &reqwest::Client, name: &str, wasm: &[u8], manifest: Option<&str>) -> Result<()> {
        use base64::Engine as _;
        let mut req =
            http.put(format!("{}/v1/functions/{name}", self.base)).bearer_auth(&self.token).body(wasm.to_vec());
        if let Some(m) = manifest {
            req = req.header("liquid-manifest", base64::engine::general_purpose::STANDARD.encode(m));
        }
        let r = req.send().await?;
        let code = r.status();
        let body = r.text().await.unwrap_or_default();
        ensure!(code.is_success(), "deploying {name} on {}: {code} {body}", self.name);
        Ok(())
    }

    /// The URL that invokes function `name` here.
    pub fn invoke_url(&self, name: &str) -> String {
        format!("{}/v1/functions/{name}/invoke", self.base)
    }
}

/// An HTTP client for one bench's calls, each bounded by `timeout`.
pub fn client(timeout: Duration) -> Result<reqwest::Client> {
    // reqwest's rustls needs a process-wide provider even for plain HTTP.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder().pool_max_idle_per_host(4).timeout(timeout).build()?)
}

/// One invoke of an actor that answers its call count (`ballast.wat`): the count, or the
/// error (status and body).
pub async fn invoke_count(http: &reqwest::Client, url: &str, token: &str, input: &[u8]) -> Result<u64, String> {
    let r = http.post(url).bearer_auth(token).body(input.to_vec()).send().await.map_err(|e| e.to_string())?;
    let code = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&body);
    if !code.is_success() {
        return Err(format!("{code} {text}"));
    }
    text.trim().parse().map_err(|_| format!("not a count: {text:?}"))
}
