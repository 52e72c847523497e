//! The workload: concurrent writers (idempotent commands and expected-revision writes),
//! readers (linearizable and local) and agent watchers, all recorded.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::client::{read_op, watch_op, write_op, Recorder};

pub const SERVERS: usize = 8;
pub const CLUSTERS: usize = 3;
pub const TASKS: usize = 6;

/// What the workload tasks share.
pub struct Shared {
    pub rec: Recorder,
    pub http: reqwest::Client,
    /// Every slot's address.
    pub addrs: Vec<String>,
    /// The members' addresses (clients pick among them; a dead one refuses connections).
    pub member_addrs: RwLock<Vec<String>>,
    pub seed: u64,
    /// Writers and readers stop issuing operations.
    pub stop: AtomicBool,
    /// Watchers stop.
    pub stop_watchers: AtomicBool,
    /// Last delivered (revision, configuration) per watcher.
    pub watch_last: Mutex<BTreeMap<String, (u64, Value)>>,
    keys: AtomicU64,
}

impl Shared {
    pub fn new(rec: Recorder, http: reqwest::Client, addrs: Vec<String>, seed: u64) -> Self {
        Self {
            rec,
            http,
            member_addrs: RwLock::new(addrs.clone()),
            addrs,
            seed,
            stop: AtomicBool::new(false),
            stop_watchers: AtomicBool::new(false),
            watch_last: Mutex::new(BTreeMap::new()),
            keys: AtomicU64::new(0),
        }
    }

    /// A fresh idempotency key.
    pub fn key(&self, client: &str) -> String {
        format!("{}{}-{client}-{}", crate::checker::KEY_PREFIX, self.seed, self.keys.fetch_add(1, Ordering::Relaxed))
    }

    /// The members' addresses now.
    pub fn targets(&self) -> Vec<String> {
        self.member_addrs.read().expect("addrs lock").clone()
    }

    /// A random member address.
    pub fn pick(&self, rng: &mut StdRng) -> String {
        let t = self.member_addrs.read().expect("addrs lock");
        t[rng.gen_range(0..t.len())].clone()
    }

    pub fn set_targets(&self, addrs: Vec<String>) {
        if !addrs.is_empty() {
            *self.member_addrs.write().expect("addrs lock") = addrs;
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A seeded RNG for one client.
pub fn client_rng(seed: u64, client: &str) -> StdRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    StdRng::seed_from_u64(seed ^ h)
}

/// Agent ids: watchers (in the harness) and agents (`roster agent` processes).
pub fn watcher_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i}")).collect()
}
pub fn agent_ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("a{i}")).collect()
}

/// The command creating servers, clusters and agents, and putting every agent in one or two
/// clusters.
pub fn setup_body(agents: &[String]) -> Value {
    let mut changes = Vec::new();
    for i in 0..SERVERS {
        changes.push(json!({"add_server": {"name": format!("s{i}"), "host": format!("10.9.0.{}", i + 1), "port": 8080}}));
    }
    for c in 0..CLUSTERS {
        changes.push(json!({"create_cluster": {"name": format!("c{c}")}}));
    }
    for (i, a) in agents.iter().enumerate() {
        changes.push(json!({"register_agent": {"id": a}}));
        changes.push(json!({"add_agent_to_cluster": {"cluster": format!("c{}", i % CLUSTERS), "agent": a}}));
        if i % 2 == 1 {
            changes.push(json!({"add_agent_to_cluster": {"cluster": format!("c{}", (i + 1) % CLUSTERS), "agent": a}}));
        }
    }
    json!({"changes": changes})
}

/// A write every agent sees: a new task configured in every cluster.
pub fn marker_body(n: u64) -> Value {
    let changes: Vec<Value> = (0..CLUSTERS)
        .map(|c| json!({"set_servers": {"task": "final", "cluster": format!("c{c}"), "servers": [format!("s{}", n as usize % SERVERS)]}}))
        .collect();
    json!({"changes": changes})
}

/// A random configuration change.
pub fn random_body(rng: &mut StdRng) -> Value {
    let change = if rng.gen_ratio(1, 10) {
        let name = format!("s{}", rng.gen_range(0..SERVERS));
        if rng.gen_bool(0.5) {
            json!({"disable_server": {"name": name}})
        } else {
            json!({"enable_server": {"name": name}})
        }
    } else {
        let mut all: Vec<usize> = (0..SERVERS).collect();
        all.shuffle(rng);
        let n = rng.gen_range(1..=3);
        let servers: Vec<String> = all[..n].iter().map(|i| format!("s{i}")).collect();
        json!({"set_servers": {"task": format!("t{}", rng.gen_range(0..TASKS)), "cluster": format!("c{}", rng.gen_range(0..CLUSTERS)), "servers": servers}})
    };
    json!({"changes": [change]})
}

/// A writer: 75% idempotent commands, 25% expected-revision writes (after a linearizable
/// read of the current revision).
pub async fn writer(shared: Arc<Shared>, name: String) {
    let mut rng = client_rng(shared.seed, &name);
    while !shared.stopped() {
        let body = random_body(&mut rng);
        let key = shared.key(&name);
        let s = shared.clone();
        let stop = move || s.stopped();
        if rng.gen_ratio(1, 4) {
            let addr = shared.pick(&mut rng);
            let targets = shared.targets();
            if let Some(rev) = read_op(&shared.rec, &shared.http, &addr, &name, false).await {
                if write_op(&shared.rec, &shared.http, &mut rng, &targets, &name, key, &body, Some(rev), &stop).await.is_none()
                    && shared.rec.len() >= shared.rec.limit
                {
                    break;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(50..200))).await;
            }
        } else {
            let targets = shared.targets();
            write_op(&shared.rec, &shared.http, &mut rng, &targets, &name, key, &body, None, &stop).await;
        }
        if shared.rec.len() >= shared.rec.limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..40))).await;
    }
}

/// A reader: linearizable and local digest reads on random nodes.
pub async fn reader(shared: Arc<Shared>, name: String) {
    let mut rng = client_rng(shared.seed, &name);
    while !shared.stopped() && shared.rec.len() < shared.rec.limit {
        let addr = shared.pick(&mut rng);
        let local = rng.gen_bool(0.4);
        read_op(&shared.rec, &shared.http, &addr, &name, local).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..60))).await;
    }
}

/// An agent watcher: long polls on random nodes, always resuming after the last revision it
/// received, as a `roster agent` does.
pub async fn watcher(shared: Arc<Shared>, agent: String) {
    let mut rng = client_rng(shared.seed, &format!("watch-{agent}"));
    let mut after = 0u64;
    while !shared.stop_watchers.load(Ordering::Relaxed) && shared.rec.len() < shared.rec.limit {
        let addr = shared.pick(&mut rng);
        let wait_ms = rng.gen_range(300..2_000);
        match watch_op(&shared.rec, &shared.http, &addr, &agent, after, wait_ms).await {
            Ok(Some((rev, cfg))) => {
                after = after.max(rev);
                shared.watch_last.lock().expect("watch lock").insert(agent.clone(), (after, cfg));
            }
            Ok(None) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(rng.gen_range(100..300))).await,
        }
    }
}
