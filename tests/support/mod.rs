//! Helpers for the end-to-end tests: real `liquid` processes in a per-test temporary directory,
//! killed on every exit path, with their logs printed when a test fails.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(200);
/// How long a client command (`liquid status`, `liquid nodes`, …) may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an agent may take to answer its API after it was started.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How many lines of each agent's log are printed when a test fails.
const LOG_TAIL: usize = 150;

/// The `liquid` binary, with no `LIQUID_*` variable inherited from the test's environment.
pub fn liquid() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_liquid"));
    clean_env(&mut cmd);
    cmd
}

/// Removes every `LIQUID_*` variable and `RUST_LOG` from `cmd`'s environment, and closes its stdin.
fn clean_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("LIQUID_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG").stdin(Stdio::null());
}

/// Like [`liquid`], but inside the network namespace `netns` if one is given, through
/// `ip netns exec NETNS liquid …` (which execs, so the child's pid is the `liquid` process).
pub fn liquid_in(netns: Option<&str>) -> Command {
    let Some(ns) = netns else { return liquid() };
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(env!("CARGO_BIN_EXE_liquid"));
    clean_env(&mut cmd);
    cmd
}

/// A child process that is SIGKILLed and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            signal(&self.0, Signal::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn signal(child: &Child, sig: Signal) {
    let pid = i32::try_from(child.id()).expect("pid fits in i32");
    let _ = kill(Pid::from_raw(pid), sig);
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `cmd` to completion, killing it after `timeout` (then the result is an error).
pub fn run(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = Reaped(cmd.spawn().map_err(|e| format!("cannot spawn {cmd:?}: {e}"))?);
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.0.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.0.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.0.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if Instant::now() >= deadline {
            drop(child);
            return Err(format!("{cmd:?} did not finish within {timeout:?}"));
        }
        sleep(Duration::from_millis(10));
    };
    Ok(Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

/// Runs `liquid ARGS…` and returns its output (panics if it hangs).
pub fn run_liquid(args: &[&str]) -> Output {
    let mut cmd = liquid();
    cmd.args(args);
    run(cmd, CLI_TIMEOUT).unwrap()
}

/// Runs `ip ARGS…` (network namespaces and links for the tests that make their own).
#[allow(dead_code)]
pub fn ip(args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("ip");
    cmd.args(args);
    let out = run(cmd, Duration::from_secs(10))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`ip {}` failed ({}): {}", args.join(" "), out.status, out.stderr.trim()))
    }
}

/// Polls `check` every [`POLL`] until it returns `Ok` or `within` has passed, then panics with
/// the last error.
pub fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() >= within => panic!("{what}: still not true after {within:?}: {e}"),
            Err(_) => sleep(POLL),
        }
    }
}

/// The file mode bits of `path` (permissions only).
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// A status answer from a raw HTTP request.
#[derive(Debug)]
pub struct Http {
    /// The HTTP status code.
    pub code: u16,
    /// The body (possibly chunk-encoded; good enough to search in).
    pub body: String,
}

/// `METHOD path` on `base` (`http://host:port`) with an optional bearer token, extra headers
/// and a byte body, over plain TCP (so a test sees exactly what the agent answers).
#[allow(dead_code)]
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Http, String> {
    http_within(base, method, path, token, headers, body, Duration::from_secs(10))
}

/// Like [`http`], waiting at most `within` for each read and write. A connection that could
/// not be made fails with a message that starts with `connect ` (the request was not sent).
#[allow(dead_code)]
pub fn http_within(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
    within: Duration,
) -> Result<Http, String> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let addr: std::net::SocketAddr = host.parse().map_err(|e| format!("connect {host}: {e}"))?;
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| format!("connect {host}: {e}"))?;
    s.set_read_timeout(Some(within)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(within)).map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n", body.len());
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("reading the answer from {host}: {e}"))?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {raw:?}"))?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok(Http { code, body })
}

/// `GET path` on `base` with an optional bearer token.
#[allow(dead_code)]
pub fn http_get(base: &str, path: &str, token: Option<&str>) -> Result<Http, String> {
    http(base, "GET", path, token, &[], b"")
}

/// `METHOD path` on `base` with an optional bearer token and a JSON `body`.
#[allow(dead_code)]
pub fn http_send(base: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> Result<Http, String> {
    http(base, method, path, token, &[("Content-Type", "application/json")], body.as_bytes())
}

/// A background process whose standard output is read line by line (SIGKILLed and reaped
/// when dropped).
#[allow(dead_code)]
pub struct Lines {
    child: Reaped,
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

#[allow(dead_code)]
impl Lines {
    /// Starts `cmd` with its standard output and error piped.
    pub fn spawn(mut cmd: Command) -> Result<Lines, String> {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = Reaped(cmd.spawn().map_err(|e| format!("cannot spawn {cmd:?}: {e}"))?);
        let out = child.0.stdout.take().expect("piped stdout");
        let mut err = child.0.stderr.take().expect("piped stderr");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("stderr buffer").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ok(Lines { child, lines, stderr })
    }

    /// The next line of its output, waiting at most `within`; `Err` says why there is none.
    pub fn next_line(&mut self, within: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(within) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(format!("no output line within {within:?}; {}", self.state())),
            Err(RecvTimeoutError::Disconnected) => Err(format!("its output ended; {}", self.state())),
        }
    }

    fn state(&mut self) -> String {
        let status = match self.child.0.try_wait() {
            Ok(Some(s)) => format!("exited ({s})"),
            Ok(None) => "still running".to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        format!("the process is {status}, stderr: {:?}", self.stderr.lock().expect("stderr buffer"))
    }
}

/// How to run `liquid` commands against one agent (its data dir, and its network namespace if
/// any), detached from the [`Agent`] so that other threads can use it while the agent is
/// killed or restarted.
#[derive(Clone, Debug)]
#[allow(dead_code)]
pub struct Cli {
    /// The agent's name.
    pub name: String,
    /// Its data dir.
    pub dir: PathBuf,
    /// Its network namespace, if any.
    pub netns: Option<String>,
}

#[allow(dead_code)]
impl Cli {
    /// `liquid ARGS… --data-dir DIR` (inside the agent's namespace, if any), not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = liquid_in(self.netns.as_deref());
        cmd.args(args).arg("--data-dir").arg(&self.dir);
        cmd
    }

    /// Runs `liquid ARGS… --data-dir DIR`; `Err` only if it could not be run or hung for
    /// [`CLI_TIMEOUT`].
    pub fn run(&self, args: &[&str]) -> Result<Output, String> {
        run(self.command(args), CLI_TIMEOUT)
    }
}

/// One `liquid agent` process, restartable with the same arguments and data dir.
pub struct Agent {
    /// Its name (also the name of its data dir and log file).
    pub name: String,
    /// Its data dir.
    pub dir: PathBuf,
    log: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
    /// The network namespace it runs in (through `ip netns exec`), if any.
    netns: Option<String>,
}

impl Agent {
    fn start(&mut self) {
        assert!(self.child.is_none(), "agent {} is already running", self.name);
        let log = OpenOptions::new().create(true).append(true).open(&self.log).expect("opening the agent's log");
        let mut cmd = liquid_in(self.netns.as_deref());
        cmd.args(&self.args)
            .env("RUST_LOG", "info,mesh=debug")
            .stdout(log.try_clone().expect("cloning the log file"))
            .stderr(log);
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("starting agent {}: {e}", self.name)));
    }

    /// Starts it again (same arguments, same data dir) after it exited.
    pub fn restart(&mut self) {
        let _ = writeln!(
            OpenOptions::new().append(true).open(&self.log).expect("opening the agent's log"),
            "----- restarted by the test -----"
        );
        self.start();
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().unwrap_or_else(|| panic!("agent {} is not running", self.name))
    }

    /// Sends `sig` to the process.
    pub fn signal(&mut self, sig: Signal) {
        signal(self.child(), sig);
    }

    /// SIGKILLs it and reaps it.
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        let status = self.wait_exit(Duration::from_secs(10));
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(Signal::SIGKILL as i32),
            "agent {} should have died of SIGKILL",
            self.name
        );
    }

    /// Waits until the process exits (panics after `within`).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let name = self.name.clone();
        let child = self.child();
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for an agent") {
                break status;
            }
            assert!(Instant::now() < deadline, "agent {name} did not exit within {within:?}");
            sleep(Duration::from_millis(20));
        };
        self.child = None;
        status
    }

    fn cli(&self, cmd: &str) -> Result<Value, String> {
        let mut c = liquid_in(self.netns.as_deref());
        c.args([cmd, "--json", "--data-dir"]).arg(&self.dir);
        let out = run(c, CLI_TIMEOUT)?;
        if !out.status.success() {
            return Err(format!("`liquid {cmd}` on {} failed ({}): {}", self.name, out.status, out.stderr.trim()));
        }
        serde_json::from_str(&out.stdout).map_err(|e| format!("`liquid {cmd}` printed no JSON ({e}): {}", out.stdout))
    }

    /// `liquid status --json --data-dir DIR`.
    pub fn status(&self) -> Result<Value, String> {
        self.cli("status")
    }

    /// `liquid nodes --json --data-dir DIR`.
    pub fn nodes(&self) -> Result<Vec<Value>, String> {
        match self.cli("nodes")? {
            Value::Array(list) => Ok(list),
            other => Err(format!("`liquid nodes --json` is not a list: {other}")),
        }
    }

    /// Waits until its API answers `status`, and returns that answer.
    pub fn wait_ready(&mut self) -> Value {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child().try_wait().expect("checking an agent") {
                panic!("agent {} exited before its API answered: {status}", self.name);
            }
            match self.status() {
                Ok(s) => return s,
                Err(e) if Instant::now() >= deadline => {
                    panic!("agent {} did not answer within {START_TIMEOUT:?}: {e}", self.name)
                }
                Err(_) => sleep(Duration::from_millis(100)),
            }
        }
    }

    /// The API URL and token, from its data dir.
    pub fn api(&self) -> (String, String) {
        let read = |f: &str| {
            std::fs::read_to_string(self.dir.join(f))
                .unwrap_or_else(|e| panic!("{}: {e}", self.dir.join(f).display()))
                .trim()
                .to_string()
        };
        (read("api.addr"), read("api.token"))
    }

    /// How to run `liquid` commands against it, from any thread.
    #[allow(dead_code)]
    pub fn cli_target(&self) -> Cli {
        Cli { name: self.name.clone(), dir: self.dir.clone(), netns: self.netns.clone() }
    }

    /// Everything it logged so far (across restarts).
    #[allow(dead_code)]
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        // DEBUG lines (mostly the mesh redialling a dead peer) would crowd out what matters.
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" DEBUG ") && !l.contains(" TRACE ")).collect();
        lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::SIGKILL);
            let _ = child.wait();
        }
    }
}

/// A test's agents and temporary directory. Dropping it SIGKILLs every agent; if the test is
/// failing, it prints the tail of every agent's log first.
pub struct Cluster {
    /// The agents, in the order they were added.
    pub agents: Vec<Agent>,
    dir: TempDir,
}

impl Cluster {
    /// An empty cluster in a fresh temporary directory.
    pub fn new(test: &str) -> Self {
        let dir = tempfile::Builder::new().prefix(&format!("liquid-e2e-{test}-")).tempdir().expect("temp dir");
        Cluster { agents: Vec::new(), dir }
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A new cluster secret from `liquid cluster init --out FILE`.
    pub fn cluster_key(&self, file: &str) -> PathBuf {
        let path = self.path().join(file);
        let out = run_liquid(&["cluster", "init", "--out", path.to_str().expect("utf-8 path")]);
        assert!(out.status.success(), "liquid cluster init failed: {}", out.stderr);
        path
    }

    /// Starts `liquid agent --data-dir DIR/NAME --api 127.0.0.1:0 --no-mdns ARGS…` with `envs`.
    pub fn spawn(&mut self, name: &str, args: &[&str], envs: &[(&str, &str)]) -> usize {
        self.spawn_in(None, name, args, envs)
    }

    /// Like [`Cluster::spawn`], inside the network namespace `netns` if one is given (the API
    /// then listens on that namespace's loopback).
    pub fn spawn_in(&mut self, netns: Option<&str>, name: &str, args: &[&str], envs: &[(&str, &str)]) -> usize {
        self.spawn_in_at(netns, name, "127.0.0.1:0", args, envs)
    }

    /// Like [`Cluster::spawn_in`], with the API on `api` (`HOST:PORT`).
    pub fn spawn_in_at(
        &mut self,
        netns: Option<&str>,
        name: &str,
        api: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> usize {
        let dir = self.path().join(name);
        let mut all: Vec<OsString> =
            ["agent", "--data-dir"].iter().map(OsString::from).chain([dir.clone().into_os_string()]).collect();
        all.extend(["--api", api, "--no-mdns"].iter().map(OsString::from));
        all.extend(args.iter().map(OsString::from));
        let mut agent = Agent {
            name: name.to_string(),
            log: self.path().join(format!("{name}.log")),
            dir,
            args: all,
            envs: envs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            netns: netns.map(str::to_string),
        };
        agent.start();
        self.agents.push(agent);
        self.agents.len() - 1
    }

    /// Starts an agent on loopback QUIC with `key`, bootstrapped to `bootstrap` if given.
    pub fn quic_agent(&mut self, name: &str, tier: &str, key: &Path, bootstrap: Option<&str>) -> usize {
        let key = key.to_str().expect("utf-8 path");
        let mut args = vec!["--listen", "/ip4/127.0.0.1/udp/0/quic-v1", "--cluster-key", key];
        args.extend(["--name", name, "--tier", tier]);
        if let Some(b) = bootstrap {
            args.extend(["--bootstrap", b]);
        }
        self.spawn(name, &args, &[])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for a in &mut self.agents {
            if let Some(mut child) = a.child.take() {
                signal(&child, Signal::SIGKILL);
                let _ = child.wait();
            }
        }
        if std::thread::panicking() {
            for a in &self.agents {
                eprintln!("===== agent {} (data dir {}): last log lines =====", a.name, a.dir.display());
                eprintln!("{}", a.log_tail());
            }
        }
    }
}

/// A JSON field as a string (panics, naming the field, if it is missing or not a string).
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_else(|| panic!("field {key:?} missing or not a string in {v}"))
}

/// The entry for `id` in a `liquid nodes --json` list.
pub fn entry<'a>(list: &'a [Value], id: &str) -> Option<&'a Value> {
    list.iter().find(|m| m.get("id").and_then(Value::as_str) == Some(id))
}

/// A short description of a nodes list, for error messages.
pub fn describe(list: &[Value]) -> String {
    list.iter()
        .map(|m| {
            format!(
                "{}({})={}{}",
                m.get("name").and_then(Value::as_str).unwrap_or("?"),
                m.get("id").and_then(Value::as_str).map_or("?", |s| s.get(8..16).unwrap_or(s)),
                m.get("status").and_then(Value::as_str).unwrap_or("?"),
                if m.get("left").and_then(Value::as_bool) == Some(true) { "(left)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
