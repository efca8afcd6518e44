//! `liquid obj …`: read, change, watch, list, export and import objects.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use serde_json::{Value, json};
use state_sync::{ObjectName, Path};

use crate::cli::client::Target;
use crate::views::{ListedJson, NEXT_AFTER, ObjectJson};

/// Object commands. An object is an automerge document named NAMESPACE/KEY, replicated across
/// the mesh; PATH is dot-separated (`stats.count`) and numbers index lists (`items.0`).
#[derive(Subcommand, Debug)]
pub enum ObjCmd {
    /// Print an object's value (`--json`: the value as JSON, for scripts).
    Get {
        /// NAMESPACE/KEY.
        object: String,
        /// Wait until the object includes these heads (comma-separated, as printed by a write
        /// with --heads): read your own write at another node.
        #[arg(long, value_name = "HEADS")]
        after: Option<String>,
        /// Also print the heads (with --json: print {object, value, heads}).
        #[arg(long)]
        heads: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Set PATH to a JSON value, creating maps on the way: `liquid obj set app/cfg limits.max 10`,
    /// `liquid obj set app/cfg name '"edge-7"'` (strings are quoted JSON).
    Set {
        /// NAMESPACE/KEY.
        object: String,
        /// Dot-separated path.
        path: String,
        /// A JSON value: 10, -0.5, true, "text" (with quotes), `[1,2]`, `{"a":1}`.
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Increment a counter at PATH by N (default 1; negative to decrement). Concurrent
    /// increments on different nodes all count.
    Inc {
        /// NAMESPACE/KEY.
        object: String,
        /// Dot-separated path.
        path: String,
        /// The amount.
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Delete PATH (a map key or a list element).
    Del {
        /// NAMESPACE/KEY.
        object: String,
        /// Dot-separated path.
        path: String,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Print the value now and every time it changes (one JSON line per value), until Ctrl-C.
    Watch {
        /// NAMESPACE/KEY.
        object: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the objects this node holds, optionally only those starting with PREFIX
    /// (`app/` for a namespace). Pages through the agent's listing 1,000 names at a time:
    /// `--limit` stops early, `--after` resumes where a previous listing stopped.
    Ls {
        /// Name prefix.
        prefix: Option<String>,
        /// List at most this many objects.
        #[arg(long)]
        limit: Option<usize>,
        /// Start after this name (the last one a previous `ls` printed).
        #[arg(long, value_name = "NAME")]
        after: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Save an object as a binary automerge document, which automerge libraries in any
    /// language can load.
    Export {
        /// NAMESPACE/KEY.
        object: String,
        /// Where to write it.
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Merge a binary automerge document (or changes) into an object, creating it if needed.
    Import {
        /// NAMESPACE/KEY.
        object: String,
        /// The automerge file.
        file: PathBuf,
        #[command(flatten)]
        write: WriteArgs,
    },
}

/// Options of commands that change an object.
#[derive(Args, Debug)]
pub struct WriteArgs {
    /// When the write counts as done: `local` (durable on this node's disk) or `quorum`
    /// (also on a majority of the object's replicas).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Local)]
    durability: DurabilityArg,
    /// Print the new heads after the write.
    #[arg(long)]
    heads: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum DurabilityArg {
    Local,
    Quorum,
}

fn name(s: &str) -> Result<ObjectName> {
    Ok(ObjectName::parse(s)?)
}

fn url_of(o: &ObjectName) -> String {
    format!("/v1/objects/{}/{}", o.namespace(), o.key())
}

fn path(s: &str) -> Result<String> {
    Path::parse(s)?;
    Ok(s.to_string())
}

/// Runs an object command.
pub async fn run(cmd: ObjCmd) -> Result<()> {
    match cmd {
        ObjCmd::Get { object, after, heads, target } => {
            let o = name(&object)?;
            let mut url = url_of(&o);
            if let Some(a) = after {
                url.push_str(&format!("?after={a}"));
            }
            let got: ObjectJson = target.connect()?.get(&url).await?;
            print_value(&got, target.json, heads)
        }
        ObjCmd::Set { object, path: p, value, write } => {
            if let Some(literal) = state_sync::ops::oversized_integer(&value) {
                bail!("VALUE: {}", state_sync::ops::oversized_message(literal));
            }
            let value: Value = serde_json::from_str(&value).with_context(|| {
                format!("VALUE {value:?} is not JSON: numbers and true/false as they are, strings in quotes ('\"{value}\"'), lists [..], maps {{..}}")
            })?;
            write_ops(&object, json!([{ "op": "set", "path": path(&p)?, "value": value }]), &write).await
        }
        ObjCmd::Inc { object, path: p, by, write } => {
            write_ops(&object, json!([{ "op": "inc", "path": path(&p)?, "by": by }]), &write).await
        }
        ObjCmd::Del { object, path: p, write } => {
            write_ops(&object, json!([{ "op": "del", "path": path(&p)? }]), &write).await
        }
        ObjCmd::Watch { object, target } => watch(&name(&object)?, &target).await,
        ObjCmd::Ls { prefix, limit, after, target } => {
            let client = target.connect()?;
            let mut list: Vec<ListedJson> = Vec::new();
            let mut after = after;
            let want = limit.unwrap_or(usize::MAX);
            while list.len() < want {
                let page = (want - list.len()).min(1000);
                let mut url = format!("/v1/objects?limit={page}&prefix={}", urlencode(prefix.as_deref().unwrap_or("")));
                if let Some(a) = &after {
                    url.push_str(&format!("&after={}", urlencode(a)));
                }
                let (got, next): (Vec<ListedJson>, _) = client.get_with_header(&url, NEXT_AFTER).await?;
                list.extend(got);
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            if target.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("no objects on this node");
            } else {
                let width = list.iter().map(|l| l.object.len()).max().unwrap_or(6).max(6);
                println!("{:<width$}  {:<8}  REPLICAS", "OBJECT", "HEADS");
                for l in &list {
                    let heads = l.heads.iter().map(|h| &h[..h.len().min(8)]).collect::<Vec<_>>().join(",");
                    let replicas = l.replicas.iter().map(|r| r.get(8..16).unwrap_or(r)).collect::<Vec<_>>().join(" ");
                    println!("{:<width$}  {heads:<8}  {replicas}", l.object);
                }
            }
            Ok(())
        }
        ObjCmd::Export { object, file, target } => {
            let o = name(&object)?;
            let bytes = target.connect()?.get_bytes(&format!("{}/raw", url_of(&o))).await?;
            std::fs::write(&file, &bytes).with_context(|| format!("writing {}", file.display()))?;
            if target.json {
                println!("{}", json!({ "object": o.as_str(), "file": file, "bytes": bytes.len() }));
            } else {
                println!("exported {o} to {} ({} bytes)", file.display(), bytes.len());
            }
            Ok(())
        }
        ObjCmd::Import { object, file, write } => {
            let o = name(&object)?;
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let url = format!("{}/raw?durability={}", url_of(&o), durability(&write));
            let got: ObjectJson =
                write.target.connect()?.send(reqwest::Method::PUT, &url, bytes, "application/octet-stream").await?;
            print_written(&got, &write)
        }
    }
}

fn durability(w: &WriteArgs) -> &'static str {
    match w.durability {
        DurabilityArg::Local => "local",
        DurabilityArg::Quorum => "quorum",
    }
}

async fn write_ops(object: &str, ops: Value, w: &WriteArgs) -> Result<()> {
    let o = name(object)?;
    let url = format!("{}?durability={}", url_of(&o), durability(w));
    let got: ObjectJson =
        w.target.connect()?.send(reqwest::Method::POST, &url, serde_json::to_vec(&ops)?, "application/json").await?;
    print_written(&got, w)
}

fn print_written(got: &ObjectJson, w: &WriteArgs) -> Result<()> {
    if w.target.json {
        println!("{}", serde_json::to_string(got)?);
    } else {
        let on = got.durable_on.map(|n| format!(" (durable on {n} replica{})", if n == 1 { "" } else { "s" }));
        println!("ok{}", on.unwrap_or_default());
        if w.heads {
            println!("heads: {}", got.heads.join(","));
        }
    }
    Ok(())
}

fn print_value(got: &ObjectJson, json_out: bool, heads: bool) -> Result<()> {
    if json_out {
        if heads {
            println!("{}", serde_json::to_string_pretty(got)?);
        } else {
            println!("{}", serde_json::to_string_pretty(&got.value)?);
        }
        return Ok(());
    }
    let mut lines = Vec::new();
    flatten("", &got.value, &mut lines);
    if lines.is_empty() {
        println!("{} is empty", got.object);
    }
    for l in lines {
        println!("{l}");
    }
    if heads {
        println!("heads: {}", got.heads.join(","));
    }
    Ok(())
}

/// `path = value` lines, one per leaf, for people.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<String>) {
    let join = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        Value::Object(m) if !m.is_empty() => m.iter().for_each(|(k, v)| flatten(&join(k), v, out)),
        Value::Array(a) if !a.is_empty() => {
            a.iter().enumerate().for_each(|(i, v)| flatten(&join(&i.to_string()), v, out))
        }
        leaf if !prefix.is_empty() => out.push(format!("{prefix} = {leaf}")),
        _ => {}
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b':' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn watch(o: &ObjectName, target: &Target) -> Result<()> {
    use eventsource_stream::Eventsource;
    let resp = target.connect()?.open(&format!("{}/watch", url_of(o))).await?;
    let mut events = resp.bytes_stream().eventsource();
    while let Some(ev) = events.next().await {
        let ev = ev.context("the watch stream broke")?;
        match ev.event.as_str() {
            "value" => {
                let got: ObjectJson = serde_json::from_str(&ev.data).context("a watch event is not an object value")?;
                if target.json {
                    println!("{}", serde_json::to_string(&got)?);
                } else {
                    println!("{}", serde_json::to_string(&got.value)?);
                }
            }
            "error" => bail!("{}", ev.data),
            _ => {}
        }
    }
    bail!("the agent closed the watch stream")
}
