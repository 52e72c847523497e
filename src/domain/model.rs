//! The configuration state and the events that change it, with the one fold
//! ([`State::apply_event`]) shared by the state machine, offline replay and tests.
//!
//! Architecture invariant: nothing here does I/O or reads a clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::names::{AgentId, ClusterName, Host, PoolName, Scheme, ServerName, TaskName};

/// A run-time server's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServerStatus {
    /// Usable (the default after registering).
    Enabled,
    /// Skipped when picking a server but still listed; operators disable to drain.
    Disabled,
    /// An enabled server a task could not use; excluded until re-enabled.
    Failed,
}

impl ServerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServerStatus::Enabled => "enabled",
            ServerStatus::Disabled => "disabled",
            ServerStatus::Failed => "failed",
        }
    }
}

/// A registered run-time server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    pub name: ServerName,
    pub scheme: Scheme,
    pub host: Host,
    pub port: u16,
    pub pool: Option<PoolName>,
    pub status: ServerStatus,
}

impl Server {
    /// The URL derived from the fields: `scheme://host:port/` plus `?pool=P` when pooled.
    pub fn url(&self) -> String {
        // An IPv6 address goes in brackets, as URLs write it.
        let host = self.host.as_str();
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_string() };
        match &self.pool {
            Some(pool) => format!("{}://{}:{}/?pool={}", self.scheme.as_str(), host, self.port, pool),
            None => format!("{}://{}:{}/", self.scheme.as_str(), host, self.port),
        }
    }
}

/// A client computer's agent, registered on first contact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: AgentId,
    pub registered_ms: u64,
}

/// A named group of agents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCluster {
    pub agents: BTreeSet<AgentId>,
}

/// Lowest (first) and highest priority tier of a failover-list entry.
pub const PRIORITY_MIN: u16 = 1;
pub const PRIORITY_MAX: u16 = 100;
/// Smallest and largest load-balancing weight of a failover-list entry.
pub const WEIGHT_MIN: u16 = 1;
pub const WEIGHT_MAX: u16 = 1000;

/// Where a failover-list entry sits: its priority tier (lower first; only the lowest tier with
/// a usable server is used) and its load-balancing weight within the tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Weighting {
    pub priority: u16,
    pub weight: u16,
}

impl Default for Weighting {
    fn default() -> Self {
        Weighting { priority: PRIORITY_MIN, weight: WEIGHT_MIN }
    }
}

impl Weighting {
    pub fn is_default(&self) -> bool {
        *self == Weighting::default()
    }
}

/// The configuration of one task for one agent cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// Failover order: the first usable server is used first.
    pub servers: Vec<ServerName>,
    /// Rotate through the usable servers instead of always starting at the first.
    pub load_balancing: bool,
    /// Entries with a priority or weight other than the default (tier 1, weight 1); only
    /// servers in `servers`. A list without any behaves as a plain ordered list.
    pub weights: BTreeMap<ServerName, Weighting>,
}

impl TaskConfig {
    /// The priority and weight of `server`'s entry.
    pub fn weighting(&self, server: &ServerName) -> Weighting {
        self.weights.get(server).copied().unwrap_or_default()
    }
}

/// A task and its configurations by agent cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub configs: BTreeMap<ClusterName, TaskConfig>,
}

/// The whole configuration at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub revision: u64,
    pub servers: BTreeMap<ServerName, Server>,
    pub agents: BTreeMap<AgentId, Agent>,
    pub clusters: BTreeMap<ClusterName, AgentCluster>,
    pub tasks: BTreeMap<TaskName, Task>,
}

/// What [`State::apply_event_undoable`] saved to put one entry back: the entry's value
/// before the event (`None`: absent), or for cluster membership whether the agent was a member
/// (`None`: no such cluster).
#[derive(Clone, Debug)]
pub enum Undo {
    Server(ServerName, Option<Server>),
    Agent(AgentId, Option<Agent>),
    Cluster(ClusterName, Option<AgentCluster>),
    Member(ClusterName, AgentId, Option<bool>),
    Task(TaskName, Option<Task>),
    /// `None`: the task did not exist; `Some(None)`: it had no configuration for the cluster.
    Config(TaskName, ClusterName, Option<Option<TaskConfig>>),
}

/// A fact recorded in the history. Events are produced only by `decide`, which has already
/// validated them, so folding them cannot fail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    ServerRegistered { server: Server },
    /// The server's new address fields (status unchanged).
    ServerUpdated { server: Server },
    ServerStatusChanged { name: ServerName, status: ServerStatus },
    /// Emitted after the list events that removed the server everywhere.
    ServerDeleted { name: ServerName },
    AgentRegistered { id: AgentId, registered_ms: u64 },
    ClusterCreated { name: ClusterName },
    /// Emitted after the events that deleted the cluster's task configurations.
    ClusterDeleted { name: ClusterName },
    AgentAddedToCluster { cluster: ClusterName, agent: AgentId },
    AgentRemovedFromCluster { cluster: ClusterName, agent: AgentId },
    TaskCreated { name: TaskName },
    /// Emitted after the events that deleted the task's configurations.
    TaskDeleted { name: TaskName },
    /// The failover list's new content (after an add, remove, move or replace).
    ServerListSet { task: TaskName, cluster: ClusterName, servers: Vec<ServerName> },
    LoadBalancingSet { task: TaskName, cluster: ClusterName, enabled: bool },
    TaskConfigDeleted { task: TaskName, cluster: ClusterName },
    /// Emitted after the events that took the agent out of its clusters. Appended last: the
    /// codec numbers variants by position.
    AgentRemoved { id: AgentId },
    /// One failover-list entry's priority tier and weight. A later `ServerListSet` that drops
    /// the server drops its entry's weighting with it.
    ListEntryWeighted { task: TaskName, cluster: ClusterName, server: ServerName, priority: u16, weight: u16 },
}

impl Event {
    /// The entities this event touches, as `(kind, name)`, for history filters.
    pub fn entities(&self) -> Vec<(&'static str, &str)> {
        match self {
            Event::ServerRegistered { server } | Event::ServerUpdated { server } => {
                vec![("server", server.name.as_str())]
            }
            Event::ServerStatusChanged { name, .. } | Event::ServerDeleted { name } => vec![("server", name.as_str())],
            Event::AgentRegistered { id, .. } | Event::AgentRemoved { id } => vec![("agent", id.as_str())],
            Event::ClusterCreated { name } | Event::ClusterDeleted { name } => vec![("cluster", name.as_str())],
            Event::AgentAddedToCluster { cluster, agent } | Event::AgentRemovedFromCluster { cluster, agent } => {
                vec![("cluster", cluster.as_str()), ("agent", agent.as_str())]
            }
            Event::TaskCreated { name } | Event::TaskDeleted { name } => vec![("task", name.as_str())],
            Event::ServerListSet { task, cluster, servers } => {
                let mut v = vec![("task", task.as_str()), ("cluster", cluster.as_str())];
                v.extend(servers.iter().map(|s| ("server", s.as_str())));
                v
            }
            Event::LoadBalancingSet { task, cluster, .. } | Event::TaskConfigDeleted { task, cluster } => {
                vec![("task", task.as_str()), ("cluster", cluster.as_str())]
            }
            Event::ListEntryWeighted { task, cluster, server, .. } => {
                vec![("task", task.as_str()), ("cluster", cluster.as_str()), ("server", server.as_str())]
            }
        }
    }
}

impl State {
    /// Folds one event into the state. Does not change the revision: a record's events are
    /// folded, then [`State::apply_record_events`] sets the revision.
    pub fn apply_event(&mut self, event: &Event) {
        match event {
            Event::ServerRegistered { server } | Event::ServerUpdated { server } => {
                self.servers.insert(server.name.clone(), server.clone());
            }
            Event::ServerStatusChanged { name, status } => {
                if let Some(s) = self.servers.get_mut(name) {
                    s.status = *status;
                }
            }
            Event::ServerDeleted { name } => {
                self.servers.remove(name);
            }
            Event::AgentRegistered { id, registered_ms } => {
                self.agents.insert(id.clone(), Agent { id: id.clone(), registered_ms: *registered_ms });
            }
            Event::AgentRemoved { id } => {
                self.agents.remove(id);
            }
            Event::ClusterCreated { name } => {
                self.clusters.insert(name.clone(), AgentCluster::default());
            }
            Event::ClusterDeleted { name } => {
                self.clusters.remove(name);
            }
            Event::AgentAddedToCluster { cluster, agent } => {
                if let Some(c) = self.clusters.get_mut(cluster) {
                    c.agents.insert(agent.clone());
                }
            }
            Event::AgentRemovedFromCluster { cluster, agent } => {
                if let Some(c) = self.clusters.get_mut(cluster) {
                    c.agents.remove(agent);
                }
            }
            Event::TaskCreated { name } => {
                self.tasks.entry(name.clone()).or_default();
            }
            Event::TaskDeleted { name } => {
                self.tasks.remove(name);
            }
            Event::ServerListSet { task, cluster, servers } => {
                let config = self.tasks.entry(task.clone()).or_default().configs.entry(cluster.clone()).or_default();
                config.servers.clone_from(servers);
                if !config.weights.is_empty() {
                    config.weights.retain(|s, _| servers.contains(s));
                }
            }
            Event::ListEntryWeighted { task, cluster, server, priority, weight } => {
                if let Some(config) = self.tasks.get_mut(task).and_then(|t| t.configs.get_mut(cluster)) {
                    let w = Weighting { priority: *priority, weight: *weight };
                    if w.is_default() {
                        config.weights.remove(server);
                    } else {
                        config.weights.insert(server.clone(), w);
                    }
                }
            }
            Event::LoadBalancingSet { task, cluster, enabled } => {
                let config = self.tasks.entry(task.clone()).or_default().configs.entry(cluster.clone()).or_default();
                config.load_balancing = *enabled;
            }
            Event::TaskConfigDeleted { task, cluster } => {
                if let Some(t) = self.tasks.get_mut(task) {
                    t.configs.remove(cluster);
                }
            }
        }
    }

    /// Applies `event` like [`State::apply_event`] and returns what puts the state back as it
    /// was ([`State::undo`]): only the entry the event touches is saved, so validating a
    /// command of many changes in place costs O(changes), not a copy of the state.
    pub fn apply_event_undoable(&mut self, event: &Event) -> Undo {
        let undo = match event {
            Event::ServerRegistered { server } | Event::ServerUpdated { server } => {
                Undo::Server(server.name.clone(), self.servers.get(&server.name).cloned())
            }
            Event::ServerStatusChanged { name, .. } | Event::ServerDeleted { name } => {
                Undo::Server(name.clone(), self.servers.get(name).cloned())
            }
            Event::AgentRegistered { id, .. } | Event::AgentRemoved { id } => Undo::Agent(id.clone(), self.agents.get(id).cloned()),
            Event::ClusterCreated { name } | Event::ClusterDeleted { name } => {
                Undo::Cluster(name.clone(), self.clusters.get(name).cloned())
            }
            Event::AgentAddedToCluster { cluster, agent } | Event::AgentRemovedFromCluster { cluster, agent } => {
                let member = self.clusters.get(cluster).map(|c| c.agents.contains(agent));
                Undo::Member(cluster.clone(), agent.clone(), member)
            }
            Event::TaskCreated { name } | Event::TaskDeleted { name } => Undo::Task(name.clone(), self.tasks.get(name).cloned()),
            Event::ServerListSet { task, cluster, .. }
            | Event::ListEntryWeighted { task, cluster, .. }
            | Event::LoadBalancingSet { task, cluster, .. }
            | Event::TaskConfigDeleted { task, cluster } => {
                let config = self.tasks.get(task).map(|t| t.configs.get(cluster).cloned());
                Undo::Config(task.clone(), cluster.clone(), config)
            }
        };
        self.apply_event(event);
        undo
    }

    /// Puts back what [`State::apply_event_undoable`] saved. Undos are applied newest first.
    pub fn undo(&mut self, undo: Undo) {
        fn put<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, value: Option<V>) {
            match value {
                Some(v) => {
                    map.insert(key, v);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        match undo {
            Undo::Server(name, old) => put(&mut self.servers, name, old),
            Undo::Agent(id, old) => put(&mut self.agents, id, old),
            Undo::Cluster(name, old) => put(&mut self.clusters, name, old),
            Undo::Member(cluster, agent, member) => {
                if let (Some(c), Some(member)) = (self.clusters.get_mut(&cluster), member) {
                    if member {
                        c.agents.insert(agent);
                    } else {
                        c.agents.remove(&agent);
                    }
                }
            }
            Undo::Task(name, old) => put(&mut self.tasks, name, old),
            Undo::Config(task, cluster, old) => match old {
                None => {
                    self.tasks.remove(&task);
                }
                Some(config) => {
                    let t = self.tasks.entry(task).or_default();
                    put(&mut t.configs, cluster, config);
                }
            },
        }
    }

    /// Folds all events of the record at `revision`.
    pub fn apply_record_events(&mut self, revision: u64, events: &[Event]) {
        assert_eq!(revision, self.revision + 1, "history revisions are dense");
        for e in events {
            self.apply_event(e);
        }
        self.revision = revision;
    }

    pub fn config(&self, task: &TaskName, cluster: &ClusterName) -> Option<&TaskConfig> {
        self.tasks.get(task).and_then(|t| t.configs.get(cluster))
    }
}
