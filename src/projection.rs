//! The projection of the committed state to agents: each agent's desired configuration, the
//! revision at which it last changed, and a waker per agent so that a change wakes only the
//! agents whose configuration it changed.
//!
//! Rule for an agent in several clusters that configure the same task: the configuration of
//! the cluster whose name sorts first wins (deterministic on every node).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::domain::{AgentId, ClusterName, Event, Hash, ServerName, ServerStatus, State, TaskName, Weighting};

/// One server in an agent's failover list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentServer {
    pub name: ServerName,
    pub url: String,
    pub status: ServerStatus,
    /// Priority tier (lower first); omitted on the wire when it is the default, 1.
    #[serde(default = "default_priority", skip_serializing_if = "is_default_priority")]
    pub priority: u16,
    /// Load-balancing weight within the tier; omitted on the wire when it is the default, 1.
    #[serde(default = "default_weight", skip_serializing_if = "is_default_weight")]
    pub weight: u16,
}

fn default_priority() -> u16 {
    Weighting::default().priority
}
fn default_weight() -> u16 {
    Weighting::default().weight
}
fn is_default_priority(p: &u16) -> bool {
    *p == default_priority()
}
fn is_default_weight(w: &u16) -> bool {
    *w == default_weight()
}

impl AgentServer {
    /// An entry in tier 1 with weight 1.
    pub fn plain(name: ServerName, url: String, status: ServerStatus) -> Self {
        let w = Weighting::default();
        AgentServer { name, url, status, priority: w.priority, weight: w.weight }
    }
}

/// An agent's configuration for one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentTask {
    /// The agent cluster the configuration comes from.
    pub cluster: ClusterName,
    pub load_balancing: bool,
    pub servers: Vec<AgentServer>,
}

/// Everything an agent needs: its tasks' configurations at a revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AgentConfig {
    pub agent: AgentId,
    /// The cluster revision this configuration reflects.
    pub revision: u64,
    pub clusters: Vec<ClusterName>,
    pub tasks: BTreeMap<TaskName, AgentTask>,
}

/// The desired configuration of `agent` in `state`.
pub fn project(state: &State, agent: &AgentId) -> AgentConfig {
    let clusters: Vec<ClusterName> =
        state.clusters.iter().filter(|(_, c)| c.agents.contains(agent)).map(|(n, _)| n.clone()).collect();
    let tasks = project_tasks(state, &clusters);
    AgentConfig { agent: agent.clone(), revision: state.revision, clusters, tasks }
}

/// Agents' configurations as JSON, with the tasks part rendered once per revision and set of
/// clusters: a change that wakes 10,000 agents of one cluster projects and serializes its
/// tasks (O(tasks) each) once, not 10,000 times. Only the current revision's renderings are
/// kept.
#[derive(Default)]
pub struct RenderedConfigs {
    tasks: std::sync::Mutex<(u64, HashMap<Vec<ClusterName>, std::sync::Arc<Vec<u8>>>)>,
}

impl RenderedConfigs {
    /// `agent`'s configuration in `state`, as the JSON of [`project`]'s [`AgentConfig`].
    pub fn render(&self, state: &State, agent: &AgentId) -> Vec<u8> {
        let clusters: Vec<ClusterName> =
            state.clusters.iter().filter(|(_, c)| c.agents.contains(agent)).map(|(n, _)| n.clone()).collect();
        let tasks = {
            let mut cache = self.tasks.lock().expect("rendered configurations lock poisoned");
            if cache.0 != state.revision {
                *cache = (state.revision, HashMap::new());
            }
            match cache.1.get(&clusters) {
                Some(t) => t.clone(),
                None => {
                    let rendered = std::sync::Arc::new(serde_json::to_vec(&project_tasks(state, &clusters)).expect("tasks serialize"));
                    cache.1.insert(clusters.clone(), rendered.clone());
                    rendered
                }
            }
        };
        // The fields in AgentConfig's order, so the bytes are what serializing it would give.
        let mut out = Vec::with_capacity(tasks.len() + 64 + 40 * clusters.len());
        out.extend_from_slice(b"{\"agent\":");
        serde_json::to_writer(&mut out, agent).expect("an agent id serializes");
        out.extend_from_slice(b",\"revision\":");
        out.extend_from_slice(state.revision.to_string().as_bytes());
        out.extend_from_slice(b",\"clusters\":");
        serde_json::to_writer(&mut out, &clusters).expect("cluster names serialize");
        out.extend_from_slice(b",\"tasks\":");
        out.extend_from_slice(&tasks);
        out.push(b'}');
        out
    }
}

/// The tasks of an agent in `clusters` (name order): every agent in the same clusters gets the
/// same ones.
fn project_tasks(state: &State, clusters: &[ClusterName]) -> BTreeMap<TaskName, AgentTask> {
    let mut tasks = BTreeMap::new();
    for (task_name, task) in &state.tasks {
        // `clusters` is in name order, so the first match is the winning cluster.
        if let Some((cluster, cfg)) = clusters.iter().find_map(|c| task.configs.get(c).map(|cfg| (c, cfg))) {
            let servers = cfg
                .servers
                .iter()
                .filter_map(|n| state.servers.get(n))
                .map(|s| {
                    let w = cfg.weighting(&s.name);
                    AgentServer { name: s.name.clone(), url: s.url(), status: s.status, priority: w.priority, weight: w.weight }
                })
                .collect();
            tasks.insert(task_name.clone(), AgentTask { cluster: cluster.clone(), load_balancing: cfg.load_balancing, servers });
        }
    }
    tasks
}

/// The digests of many agents' configurations in one state, computed once per distinct set of
/// clusters rather than once per agent (agents in the same clusters have the same
/// configuration): a revision that touches a cluster of 10,000 agents projects it once.
struct Digests<'a> {
    state: &'a State,
    /// Each agent's clusters, built at the first question (one pass over the clusters).
    clusters_of: Option<BTreeMap<AgentId, Vec<ClusterName>>>,
    by_clusters: HashMap<Vec<ClusterName>, Hash>,
}

impl<'a> Digests<'a> {
    fn new(state: &'a State) -> Self {
        Self { state, clusters_of: None, by_clusters: HashMap::new() }
    }

    /// The digest of `agent`'s configuration: of its `clusters` and `tasks` as [`project`] gives
    /// them.
    fn of(&mut self, agent: &AgentId) -> Hash {
        let state = self.state;
        let clusters = self.clusters_of.get_or_insert_with(|| clusters_by_agent(state)).get(agent).cloned().unwrap_or_default();
        *self.by_clusters.entry(clusters).or_insert_with_key(|clusters| digest_parts(clusters, &project_tasks(state, clusters)))
    }
}

/// Each agent's clusters in name order, as [`project`] lists them (agents in no cluster are
/// absent). One pass over the clusters, for listing many agents without projecting each.
pub fn clusters_by_agent(state: &State) -> BTreeMap<AgentId, Vec<ClusterName>> {
    let mut out: BTreeMap<AgentId, Vec<ClusterName>> = BTreeMap::new();
    for (name, cluster) in &state.clusters {
        for agent in &cluster.agents {
            out.entry(agent.clone()).or_default().push(name.clone());
        }
    }
    out
}

/// How many tasks an agent in `clusters` has: those with a configuration for any of them
/// (the size of [`project`]'s `tasks`).
pub fn task_count(state: &State, clusters: &[ClusterName]) -> usize {
    state.tasks.values().filter(|t| clusters.iter().any(|c| t.configs.contains_key(c))).count()
}

fn digest_parts(clusters: &Vec<ClusterName>, tasks: &BTreeMap<TaskName, AgentTask>) -> Hash {
    let mut h = Sha256::new();
    h.update(roster_codec::encode(&(clusters, tasks)));
    Hash(h.finalize().into())
}

/// A task configuration that a change leaves with no usable (enabled) server although it had
/// one before: the agents of that cluster would have no server for the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LostTask {
    pub task: TaskName,
    pub cluster: ClusterName,
}

/// What applying `events` to `before` (giving `after`) does to the agents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Agents whose configuration changes, in id order.
    pub agents: Vec<AgentId>,
    /// Task configurations left without a usable server.
    pub lost: Vec<LostTask>,
}

/// Whether `servers` names a server that is enabled in `state`.
fn usable(state: &State, servers: &[ServerName]) -> bool {
    servers.iter().any(|n| state.servers.get(n).is_some_and(|s| s.status == ServerStatus::Enabled))
}

/// The reach of a change: the agents it gives a new configuration, and the task
/// configurations it leaves without a usable server.
pub fn reach(before: &State, after: &State, events: &[Event]) -> Reach {
    let mut maybe = BTreeSet::new();
    candidates(before, events, &mut maybe);
    candidates(after, events, &mut maybe);
    let (mut was, mut is) = (Digests::new(before), Digests::new(after));
    let agents = maybe.into_iter().filter(|a| was.of(a) != is.of(a)).collect();
    let mut lost = Vec::new();
    for (task, t) in &after.tasks {
        for (cluster, cfg) in &t.configs {
            let had = before.config(task, cluster).is_some_and(|b| usable(before, &b.servers));
            if had && !usable(after, &cfg.servers) {
                lost.push(LostTask { task: task.clone(), cluster: cluster.clone() });
            }
        }
    }
    Reach { agents, lost }
}

/// Agents whose configuration `events` may change, judged against `state` (called with the
/// state before and after the events; the union covers additions and removals).
pub fn candidates(state: &State, events: &[Event], out: &mut BTreeSet<AgentId>) {
    let agents_of = |c: &ClusterName, out: &mut BTreeSet<AgentId>| {
        if let Some(cl) = state.clusters.get(c) {
            out.extend(cl.agents.iter().cloned());
        }
    };
    for e in events {
        match e {
            Event::ServerRegistered { .. } => {}
            Event::ServerUpdated { server } => referencing(state, &server.name, out),
            Event::ServerStatusChanged { name, .. } | Event::ServerDeleted { name } => referencing(state, name, out),
            Event::AgentRegistered { id, .. } | Event::AgentRemoved { id } => {
                out.insert(id.clone());
            }
            Event::ClusterCreated { name } | Event::ClusterDeleted { name } => agents_of(name, out),
            Event::AgentAddedToCluster { agent, .. } | Event::AgentRemovedFromCluster { agent, .. } => {
                out.insert(agent.clone());
            }
            Event::TaskCreated { name } | Event::TaskDeleted { name } => {
                if let Some(t) = state.tasks.get(name) {
                    for c in t.configs.keys() {
                        agents_of(c, out);
                    }
                }
            }
            Event::ServerListSet { cluster, .. }
            | Event::LoadBalancingSet { cluster, .. }
            | Event::TaskConfigDeleted { cluster, .. }
            | Event::ListEntryWeighted { cluster, .. } => agents_of(cluster, out),
        }
    }
}

/// Agents of every cluster whose configurations list `server`.
fn referencing(state: &State, server: &ServerName, out: &mut BTreeSet<AgentId>) {
    let mut clusters = BTreeSet::new();
    for t in state.tasks.values() {
        for (c, cfg) in &t.configs {
            if cfg.servers.contains(server) {
                clusters.insert(c);
            }
        }
    }
    for c in clusters {
        if let Some(cl) = state.clusters.get(c) {
            out.extend(cl.agents.iter().cloned());
        }
    }
}

struct Entry {
    digest: Hash,
    /// The revision at which this agent's configuration last changed, for waiters.
    changed: watch::Sender<u64>,
}

/// Per-agent change tracking on this node.
#[derive(Default)]
pub struct AgentWakers {
    agents: HashMap<AgentId, Entry>,
    /// Agents woken by the last update (for observability and tests).
    pub last_woken: usize,
}

/// What a node remembers of one agent across restarts: the digest of its configuration and
/// the revision at which that configuration last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub digest: Hash,
    pub changed: u64,
}

/// What an update changed in the tracking, for the node to persist.
#[derive(Default, Debug)]
pub struct MarkChanges {
    pub set: Vec<(AgentId, Mark)>,
    pub removed: Vec<AgentId>,
}

impl AgentWakers {
    /// Rebuilds the tracking from a state (start-up, snapshot install). An agent whose stored
    /// mark matches its configuration in `state` keeps the revision it changed at; any other
    /// agent's configuration is considered changed at `state.revision`, which is never older
    /// than what it may have seen from this node. Returns the marks to store (new or
    /// corrected) and the stored ones to drop (agents no longer registered).
    pub fn rebuild(&mut self, state: &State, stored: &HashMap<AgentId, Mark>) -> MarkChanges {
        let mut changes = MarkChanges::default();
        let mut digests = Digests::new(state);
        for id in state.agents.keys() {
            let d = digests.of(id);
            let changed = match stored.get(id) {
                Some(m) if m.digest == d && m.changed <= state.revision => m.changed,
                _ => {
                    changes.set.push((id.clone(), Mark { digest: d, changed: state.revision }));
                    state.revision
                }
            };
            let entry = self.agents.entry(id.clone()).or_insert_with(|| Entry { digest: d, changed: watch::channel(0).0 });
            entry.digest = d;
            entry.changed.send_replace(changed);
        }
        changes.removed = stored.keys().filter(|id| !state.agents.contains_key(*id)).cloned().collect();
        changes
    }

    /// After a revision: recomputes the candidates' configurations and wakes those that
    /// changed; returns their new marks (and the agents removed) for the node to store.
    pub fn update(&mut self, state: &State, candidates: &BTreeSet<AgentId>) -> MarkChanges {
        let mut woken = 0;
        let mut changes = MarkChanges::default();
        let mut digests = Digests::new(state);
        for id in candidates {
            if !state.agents.contains_key(id) {
                // Removed (or never registered): wake its watches, which answer with its now
                // empty configuration, and forget it.
                if let Some(e) = self.agents.remove(id) {
                    e.changed.send_replace(state.revision);
                    woken += 1;
                    changes.removed.push(id.clone());
                }
                continue;
            }
            let d = digests.of(id);
            match self.agents.get_mut(id) {
                Some(e) if e.digest == d => continue,
                Some(e) => {
                    e.digest = d;
                    e.changed.send_replace(state.revision);
                }
                None => {
                    self.agents.insert(id.clone(), Entry { digest: d, changed: watch::channel(state.revision).0 });
                }
            }
            woken += 1;
            changes.set.push((id.clone(), Mark { digest: d, changed: state.revision }));
        }
        self.last_woken = woken;
        changes
    }

    /// A receiver of the revision at which `agent`'s configuration last changed.
    pub fn subscribe(&mut self, agent: &AgentId) -> watch::Receiver<u64> {
        self.agents
            .entry(agent.clone())
            .or_insert_with(|| Entry { digest: Hash::default(), changed: watch::channel(0).0 })
            .changed
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{decide, Change, Host, ServerName, TaskName};

    #[test]
    fn reach_names_the_agents_changed_and_the_lists_left_without_a_usable_server() {
        let s = |n: &str| ServerName::new(n).unwrap();
        let c = |n: &str| ClusterName::new(n).unwrap();
        let a = |n: &str| AgentId::new(n).unwrap();
        let task = TaskName::new("billing").unwrap();
        let mut changes = vec![
            Change::AddServer { name: s("rt1"), host: Host::new("10.0.0.1").unwrap(), port: 80, pool: None, scheme: None },
            Change::AddServer { name: s("rt2"), host: Host::new("10.0.0.2").unwrap(), port: 80, pool: None, scheme: None },
        ];
        for (cl, agents) in [("eu", &["a1", "a2"][..]), ("us", &["a3"])] {
            changes.push(Change::CreateCluster { name: c(cl) });
            for ag in agents {
                changes.push(Change::RegisterAgent { id: a(ag) });
                changes.push(Change::AddAgentToCluster { cluster: c(cl), agent: a(ag) });
            }
        }
        changes.push(Change::SetServers { task: task.clone(), cluster: c("eu"), servers: vec![s("rt1")] });
        changes.push(Change::SetServers { task: task.clone(), cluster: c("us"), servers: vec![s("rt1"), s("rt2")] });
        let (state, _) = crate::domain::simulate(&State::default(), &changes, 0).unwrap();
        let reach_of = |changes: &[Change]| {
            let (after, events) = crate::domain::simulate(&state, changes, 0).unwrap();
            reach(&state, &after, &events)
        };
        let r = reach_of(&[Change::DisableServer { name: s("rt1") }]);
        assert_eq!(r.agents, vec![a("a1"), a("a2"), a("a3")]);
        assert_eq!(r.lost, vec![LostTask { task: task.clone(), cluster: c("eu") }], "us still has rt2");
        let r = reach_of(&[Change::AddServer { name: s("rt9"), host: Host::new("h").unwrap(), port: 1, pool: None, scheme: None }]);
        assert_eq!(r, Reach::default(), "a server no list uses reaches nobody");
        let r = reach_of(&[Change::DeleteTaskConfig { task: task.clone(), cluster: c("us") }]);
        assert_eq!((r.agents, r.lost), (vec![a("a3")], vec![]));
    }

    #[test]
    fn cluster_lists_and_task_counts_match_the_projection() {
        let s = |n: &str| ServerName::new(n).unwrap();
        let c = |n: &str| ClusterName::new(n).unwrap();
        let a = |n: &str| AgentId::new(n).unwrap();
        let mut changes = vec![Change::AddServer { name: s("rt1"), host: Host::new("10.0.0.1").unwrap(), port: 80, pool: None, scheme: None }];
        for cl in ["eu", "us", "asia"] {
            changes.push(Change::CreateCluster { name: c(cl) });
        }
        for (agent, cls) in [("a1", &["eu"][..]), ("a2", &["eu", "us"]), ("a3", &[]), ("a4", &["asia"])] {
            changes.push(Change::RegisterAgent { id: a(agent) });
            for cl in cls {
                changes.push(Change::AddAgentToCluster { cluster: c(cl), agent: a(agent) });
            }
        }
        for (task, cls) in [("billing", &["eu", "us"][..]), ("orders", &["us"]), ("hr", &["asia", "eu"])] {
            for cl in cls {
                changes.push(Change::SetServers { task: TaskName::new(task).unwrap(), cluster: c(cl), servers: vec![s("rt1")] });
            }
        }
        let mut state = State::default();
        let events = decide(&state, &changes, 0).unwrap();
        state.apply_record_events(1, &events);
        let by_agent = clusters_by_agent(&state);
        for agent in ["a1", "a2", "a3", "a4"] {
            let projected = project(&state, &a(agent));
            let clusters = by_agent.get(&a(agent)).cloned().unwrap_or_default();
            assert_eq!(clusters, projected.clusters, "{agent}");
            assert_eq!(task_count(&state, &clusters), projected.tasks.len(), "{agent}");
        }
        // The shared digests (one projection per set of clusters) are each agent's own, and
        // agents differ exactly when their configurations do.
        let mut digests = Digests::new(&state);
        for agent in ["a1", "a2", "a3", "a4", "unregistered"] {
            let p = project(&state, &a(agent));
            assert_eq!(digests.of(&a(agent)), digest_parts(&p.clusters, &p.tasks), "{agent}");
        }
        assert_eq!(digests.of(&a("a3")), digests.of(&a("unregistered")), "no clusters, no tasks");
        assert_ne!(digests.of(&a("a1")), digests.of(&a("a2")));
        assert_eq!(digests.by_clusters.len(), 4, "one projection per distinct set of clusters");

        // The shared renderings give each agent exactly the JSON of its own projection, at
        // every revision (a newer state is never answered from an older rendering).
        let rendered = RenderedConfigs::default();
        for round in 0..2 {
            for agent in ["a1", "a2", "a3", "a4", "unregistered"] {
                let want = serde_json::to_vec(&project(&state, &a(agent))).unwrap();
                assert_eq!(String::from_utf8(rendered.render(&state, &a(agent))).unwrap(), String::from_utf8(want).unwrap(), "{agent} {round}");
            }
            assert_eq!(rendered.tasks.lock().unwrap().1.len(), 4, "one rendering per distinct set of clusters");
            let more = [Change::DisableServer { name: s("rt1") }];
            let events = decide(&state, &more, 0).unwrap();
            state.apply_record_events(state.revision + 1, &events);
        }
    }
}
