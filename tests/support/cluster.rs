//! A 3-node CouchDB 3.5 cluster for the tests, from the local `couchdb:3` image (never
//! pulled), driven with the `docker` CLI.
//!
//! [`Cluster::start`] creates a private user-defined network named
//! `docstore-cluster-<pid>-<random>` and three containers on it, `<network>-n1.cluster` to
//! `-n3.cluster`, each with `NODENAME=<its container name>` (resolvable on that network; it
//! must contain a dot: Erlang's long node names refuse to connect to a bare host name,
//! logging "Hostname ... is illegal", and `finish_cluster` then times out), the same `COUCHDB_SECRET`
//! and `COUCHDB_ERLANG_COOKIE`, the admin `admin` with a random password, and 5984 published
//! on a loopback host port. It waits for every `/_up`, joins the nodes with
//! `POST /_cluster_setup` on node 1 (`enable_cluster`, `add_node` for the other two,
//! `finish_cluster`, which creates the system databases), checks `GET /_membership` and sets
//! `[cluster] q=2` (n=3 is the default). [`Cluster::stop`] and [`Cluster::start_node`] stop
//! and restart one node. Dropping the cluster removes its containers and network; so does
//! the process's exit (a cluster held in a `static` is never dropped).
//!
//! Host ports are chosen here (a free loopback port each) and given to `docker run` as
//! `-p 127.0.0.1:<port>:5984`, rather than `-p 127.0.0.1::5984`: Docker may map an ephemeral
//! port anew when a stopped container starts again, and a provider holding the node URLs
//! must find the restarted node where it was. `docker port` confirms the mapping.
//!
//! Every Docker command runs with `std::process::Command::output()`; waits are bounded and
//! panic saying what did not happen. Call from a plain thread or `spawn_blocking` in async
//! tests.

#![allow(dead_code)]

#[path = "raw_http.rs"]
mod raw_http;

use raw_http::http;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long any wait (a node up, the cluster formed, a node rejoined) may take.
const WAIT: Duration = Duration::from_secs(120);
const IMAGE: &str = "couchdb:3";

/// A running 3-node cluster; node `i` (0, 1, 2) is `urls()[i]`.
#[derive(Debug)]
pub struct Cluster {
    /// The user-defined network's name, also the prefix of the container names.
    pub network: String,
    /// Container names, which are also the Erlang host names (`couchdb@<name>`).
    pub names: Vec<String>,
    ports: Vec<u16>,
    /// The admin user on every node.
    pub user: String,
    /// The admin password on every node.
    pub password: String,
    /// How long the cluster took to form, from `docker network create` to a checked
    /// membership of 3.
    pub formed_in: Duration,
}

impl Cluster {
    /// Starts the three nodes and forms the cluster; panics with a clear message if Docker or
    /// the `couchdb:3` image is missing, or if the cluster does not form in time.
    pub fn start() -> Cluster {
        let begun = Instant::now();
        if let Err(e) = docker(&["info", "--format", "{{.ServerVersion}}"]) {
            panic!("the cluster tests need a Docker engine; `docker info` failed: {e}");
        }
        if let Err(e) = docker(&["image", "inspect", "--format", "{{.Id}}", IMAGE]) {
            panic!(
                "the cluster tests need the local {IMAGE} image (never pulled here); build it \
                 with the test kit's build-couchdb-image: {e}"
            );
        }
        let prefix = format!(
            "docstore-cluster-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        );
        let mut cluster = Cluster {
            network: prefix.clone(),
            names: (1..=3).map(|i| format!("{prefix}-n{i}.cluster")).collect(),
            ports: Vec::new(),
            user: "admin".into(),
            password: format!("Cl{:016x}", fastrand::u64(..)),
            formed_in: Duration::ZERO,
        };
        docker(&["network", "create", &prefix])
            .unwrap_or_else(|e| panic!("creating the network {prefix}: {e}"));
        remove_at_exit(None, Some(prefix.clone()));
        let secret = format!("{:032x}", fastrand::u128(..));
        let cookie = format!("cookie{:016x}", fastrand::u64(..));
        for name in cluster.names.clone() {
            let port = free_port();
            remove_at_exit(Some(name.clone()), None);
            let publish = format!("127.0.0.1:{port}:5984");
            let mut args = vec!["run", "-d", "--name", &name, "--hostname", &name];
            args.extend(["--network", &prefix, "-p", &publish]);
            let env = [
                format!("NODENAME={name}"),
                format!("COUCHDB_SECRET={secret}"),
                format!("COUCHDB_ERLANG_COOKIE={cookie}"),
                format!("COUCHDB_USER={}", cluster.user),
                format!("COUCHDB_PASSWORD={}", cluster.password),
            ];
            for e in &env {
                args.extend(["-e", e]);
            }
            args.push(IMAGE);
            docker(&args).unwrap_or_else(|e| panic!("starting the container {name}: {e}"));
            cluster.ports.push(port);
            cluster.check_port(cluster.ports.len() - 1);
        }
        for node in 0..3 {
            cluster.wait_up(node);
        }
        cluster.form();
        cluster.formed_in = begun.elapsed();
        cluster
    }

    /// The host URLs of the three nodes (`http://127.0.0.1:<port>`), node 1 first.
    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    /// The Erlang node name of node `node` (0-based), as `_membership` lists it.
    pub fn node_name(&self, node: usize) -> String {
        format!("couchdb@{}", self.names[node])
    }

    /// Stops node `node` (0-based) with `docker stop`.
    pub fn stop(&self, node: usize) {
        docker(&["stop", "-t", "10", &self.names[node]])
            .unwrap_or_else(|e| panic!("docker stop {}: {e}", self.names[node]));
    }

    /// Starts node `node` (0-based) again with `docker start`, then waits for its `/_up` and
    /// for it to rejoin: every node's `_membership` lists all three as connected.
    pub fn start_node(&self, node: usize) {
        docker(&["start", &self.names[node]])
            .unwrap_or_else(|e| panic!("docker start {}: {e}", self.names[node]));
        self.check_port(node);
        self.wait_up(node);
        self.wait_membership(&(0..3).collect::<Vec<_>>());
    }

    /// One request to node `node` with the admin credentials: (status, body).
    pub fn request(
        &self,
        node: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), String> {
        http(
            "127.0.0.1",
            self.ports[node],
            method,
            path,
            &self.user,
            &self.password,
            body,
        )
    }

    fn check_port(&self, node: usize) {
        let name = &self.names[node];
        let mapped = docker(&["port", name, "5984/tcp"])
            .unwrap_or_else(|e| panic!("docker port {name}: {e}"));
        let want = format!("127.0.0.1:{}", self.ports[node]);
        assert!(
            mapped.lines().any(|l| l.trim() == want),
            "{name} publishes 5984 on {mapped:?}, not {want}"
        );
    }

    fn wait_up(&self, node: usize) {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.request(node, "GET", "/_up", None) {
                Ok((200, _)) => return,
                Ok((status, body)) => last = format!("{status} {body}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "node {} ({}) did not answer /_up within {WAIT:?}: {last}\n{}",
            node + 1,
            self.names[node],
            logs(&self.names[node])
        );
    }

    /// `_cluster_setup` on node 1, then the membership check and `[cluster] q=2`.
    fn form(&self) {
        let (u, p) = (&self.user, &self.password);
        let enable = format!(
            r#"{{"action":"enable_cluster","bind_address":"0.0.0.0","username":"{u}","password":"{p}","node_count":3}}"#
        );
        self.setup(&enable, &[201, 400]);
        for name in &self.names[1..] {
            let remote = format!(
                r#"{{"action":"enable_cluster","bind_address":"0.0.0.0","username":"{u}","password":"{p}","port":5984,"node_count":3,"remote_node":"{name}","remote_current_user":"{u}","remote_current_password":"{p}"}}"#
            );
            self.setup(&remote, &[201, 400]);
            let add = format!(
                r#"{{"action":"add_node","host":"{name}","port":5984,"username":"{u}","password":"{p}"}}"#
            );
            self.setup(&add, &[201, 409]);
        }
        self.setup(r#"{"action":"finish_cluster"}"#, &[201]);
        self.wait_membership(&[0, 1, 2]);
        for node in 0..3 {
            let (status, q) = self
                .request(node, "GET", "/_node/_local/_config/cluster/q", None)
                .unwrap_or_else(|e| panic!("reading [cluster] q: {e}"));
            if status != 200 || q.trim() != "\"2\"" {
                let answer = self.request(
                    node,
                    "PUT",
                    "/_node/_local/_config/cluster/q",
                    Some("\"2\""),
                );
                assert!(
                    matches!(answer, Ok((200, _))),
                    "setting [cluster] q=2 on node {}: {answer:?}",
                    node + 1
                );
            }
        }
    }

    fn setup(&self, body: &str, accepted: &[u16]) {
        let answer = self.request(0, "POST", "/_cluster_setup", Some(body));
        match answer {
            Ok((status, _)) if accepted.contains(&status) => {}
            other => panic!(
                "POST /_cluster_setup {}: {other:?}",
                body.replace(&self.password, "***")
            ),
        }
    }

    /// Waits until each of `nodes` lists all three nodes in both `all_nodes` (connected) and
    /// `cluster_nodes` (members).
    fn wait_membership(&self, nodes: &[usize]) {
        let deadline = Instant::now() + WAIT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match nodes.iter().try_for_each(|&n| self.membership_complete(n)) {
                Ok(()) => return,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("the cluster's membership was not complete within {WAIT:?}: {last}");
    }

    /// Whether node `node`'s `_membership` lists the three nodes as connected and members.
    fn membership_complete(&self, node: usize) -> Result<(), String> {
        let want: Vec<String> = (0..3).map(|n| self.node_name(n)).collect();
        let body = match self.request(node, "GET", "/_membership", None) {
            Ok((200, body)) => body,
            Ok((status, body)) => return Err(format!("node {}: {status} {body}", node + 1)),
            Err(e) => return Err(format!("node {}: {e}", node + 1)),
        };
        let json: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| format!("node {}: _membership is not JSON ({e}): {body}", node + 1))?;
        for key in ["all_nodes", "cluster_nodes"] {
            let mut listed: Vec<String> = json[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            listed.sort();
            if listed != want {
                return Err(format!(
                    "node {}: {key} is {listed:?}, not {want:?}",
                    node + 1
                ));
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        remove(&self.names, Some(&self.network));
    }
}

/// Runs `docker <args>`: its stdout, or what failed.
fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "docker {} exited with {}: {}",
            args.first().unwrap_or(&""),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn logs(name: &str) -> String {
    match Command::new("docker")
        .args(["logs", "--tail", "30", name])
        .output()
    {
        Ok(out) => format!(
            "last log lines of {name}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => format!("(no logs of {name}: {e})"),
    }
}

fn remove(names: &[String], network: Option<&str>) {
    if !names.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v"])
            .args(names)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .output();
    }
    if let Some(network) = network {
        let _ = Command::new("docker")
            .args(["network", "rm", network])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .output();
    }
}

/// Registers a container or a network to remove when the process exits (containers first).
fn remove_at_exit(container: Option<String>, network: Option<String>) {
    type Owned = (Vec<String>, Vec<String>);
    static OWNED: Mutex<Owned> = Mutex::new((Vec::new(), Vec::new()));
    extern "C" fn remove_all() {
        if let Ok(owned) = OWNED.lock() {
            remove(&owned.0, None);
            for network in &owned.1 {
                remove(&[], Some(network));
            }
        }
    }
    let mut owned = OWNED.lock().unwrap_or_else(|e| e.into_inner());
    if owned.0.is_empty() && owned.1.is_empty() {
        // SAFETY: registers a plain extern "C" function with no arguments; it runs at exit.
        unsafe {
            libc::atexit(remove_all);
        }
    }
    owned.0.extend(container);
    owned.1.extend(network);
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}
