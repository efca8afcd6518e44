//! Client commands: find the agent, call its API, print tables or JSON.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::daemon::agent::files;
use crate::views::{MemberJson, StatusJson};

/// How a client command finds its agent: `--api URL --token T`, or the agent's `--data-dir`.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// The agent's data dir (its api.addr and api.token are read from there).
    #[arg(long, env = "LIQUID_DATA_DIR", value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The agent's API URL, e.g. http://127.0.0.1:7070.
    #[arg(long = "api", env = "LIQUID_API", value_name = "URL", global = true)]
    pub api: Option<String>,
    /// The API bearer token (with --api).
    #[arg(long, env = "LIQUID_TOKEN", value_name = "TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The SHA-256 fingerprint of an https:// API's certificate (the agent's data dir has it,
    /// api.fingerprint): the CLI talks only to the agent holding that certificate.
    #[arg(long, env = "LIQUID_API_FINGERPRINT", value_name = "HEX", global = true)]
    pub api_fingerprint: Option<String>,
    /// Print JSON for scripts instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A connected API client.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Target {
    /// Resolves the API URL and token.
    pub fn connect(&self) -> Result<Client> {
        let mut pin = self.api_fingerprint.clone();
        let (base, token) = match (&self.api, &self.token) {
            (Some(api), Some(token)) => (api.clone(), token.clone()),
            (Some(_), None) => {
                bail!("--api needs --token (or LIQUID_TOKEN): the token is in the agent's data dir, api.token")
            }
            _ => {
                let dir = self.data_dir.clone().unwrap_or_else(crate::daemon::config::default_data_dir);
                let read = |f: &str| {
                    std::fs::read_to_string(dir.join(f)).map(|s| s.trim().to_string()).with_context(|| {
                        format!(
                            "no agent found in {} (missing {f}): start one with `liquid agent --data-dir {}`, or point at one with --data-dir or --api/--token",
                            dir.display(),
                            dir.display()
                        )
                    })
                };
                let addr = read(files::API_ADDR)?;
                if pin.is_none() && addr.starts_with("https://") {
                    pin = Some(read(crate::tls::FINGERPRINT)?);
                }
                (addr, self.token.clone().map_or_else(|| read(files::API_TOKEN), Ok)?)
            }
        };
        let http = crate::tls::client(&base, pin.as_deref())?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), token, http })
    }
}

impl Client {
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the agent at {}: is `liquid agent` running?", self.base))?;
        let status = resp.status();
        if !status.is_success() {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let msg = body.get("error").and_then(|e| e.as_str()).unwrap_or("no details").to_string();
            bail!("the agent answered {status}: {msg}");
        }
        Ok(resp)
    }

    /// A request with the bearer token, for callers that read the answer themselves.
    pub fn raw(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token)
    }

    /// The agent's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs a JSON document.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.call(self.http.get(format!("{}{path}", self.base))).await?;
        resp.json().await.with_context(|| format!("the agent's answer to {path} is not what this client expects"))
    }

    /// GETs a JSON document and the value of one response header.
    pub async fn get_with_header<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        name: &str,
    ) -> Result<(T, Option<String>)> {
        let resp = self.call(self.http.get(format!("{}{path}", self.base))).await?;
        let value = resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = resp
            .json()
            .await
            .with_context(|| format!("the agent's answer to {path} is not what this client expects"))?;
        Ok((body, value))
    }

    /// GETs raw bytes.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let resp = self.call(self.http.get(format!("{}{path}", self.base))).await?;
        Ok(resp.bytes().await.context("the agent's answer was cut off")?.to_vec())
    }

    /// Opens a streaming GET (server-sent events).
    pub async fn open(&self, path: &str) -> Result<reqwest::Response> {
        self.call(self.http.get(format!("{}{path}", self.base)).header("accept", "text/event-stream")).await
    }

    /// Sends a body with `method` and reads a JSON answer.
    pub async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<T> {
        let req =
            self.http.request(method, format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        let resp = self.call(req).await?;
        resp.json().await.with_context(|| format!("the agent's answer to {path} is not what this client expects"))
    }
}

fn strip_p2p(addr: &str) -> &str {
    addr.split("/p2p/").next().unwrap_or(addr)
}

/// `liquid status`.
pub async fn status(t: &Target) -> Result<()> {
    let s: StatusJson = t.connect()?.get("/v1/status").await?;
    if t.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!("id:       {}", s.id);
    println!("name:     {} ({}, {}, v{})", s.name, s.tier, s.arch, s.version);
    println!("uptime:   {:.0} s", s.uptime_s);
    println!("peers:    {} alive, {} suspect, {} down", s.peers.alive, s.peers.suspect, s.peers.down);
    if !s.damaged_objects.is_empty() {
        println!(
            "DAMAGED:  {} object(s) lost changes to a damaged log; reads refused until replicas repair them:",
            s.damaged_objects.len()
        );
        for d in &s.damaged_objects {
            println!("  {}  (damaged log kept at {})", d.object, d.kept);
        }
    }
    println!("listen:");
    for a in &s.listen_addrs {
        println!("  {a}");
    }
    Ok(())
}

/// `liquid nodes`.
pub async fn nodes(t: &Target) -> Result<()> {
    let list: Vec<MemberJson> = t.connect()?.get("/v1/nodes").await?;
    if t.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!("{}", nodes_table(&list));
    Ok(())
}

/// The `liquid nodes` table.
pub fn nodes_table(list: &[MemberJson]) -> String {
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|m| {
            let short = m.id.get(8..16).unwrap_or(&m.id).to_string();
            [
                if m.is_self { format!("{} *", m.name) } else { m.name.clone() },
                short,
                m.tier.clone(),
                m.arch.clone(),
                m.addrs.first().map(|a| strip_p2p(a).to_string()).unwrap_or_else(|| "-".into()),
                if m.left { "down (left)".into() } else { m.status.clone() },
                match (m.is_self, m.rtt_ms) {
                    (true, _) => "-".into(),
                    (false, Some(ms)) => format!("{ms:.1} ms"),
                    (false, None) => "?".into(),
                },
            ]
        })
        .collect();
    let header = ["NAME", "ID", "TIER", "ARCH", "ADDRESS", "STATUS", "RTT"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |r: &[String; 7]| {
        r.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
    };
    std::iter::once(line(&header)).chain(rows.iter().map(line)).collect::<Vec<_>>().join("\n")
}
