//! Commands (what a client asks for) and `decide`: the pure validation that turns a list of
//! changes into events or a rejection, against the state at apply time.

use serde::{Deserialize, Serialize};

use super::model::{Event, Server, ServerStatus, State, PRIORITY_MAX, PRIORITY_MIN, WEIGHT_MAX, WEIGHT_MIN};
use super::names::{
    AgentId, ClusterName, Host, PoolName, Scheme, ServerName, TaskName, AGENTS_PER_CLUSTER_MAX,
    CHANGES_PER_COMMAND_MAX, SERVERS_PER_LIST_MAX,
};

/// Direction of a move within a failover list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MoveDirection {
    Up,
    Down,
}

/// One configuration change. A command carries a list of them, applied together as one
/// revision or not at all.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    AddServer {
        name: ServerName,
        host: Host,
        /// Default: [`super::names::DEFAULT_SERVER_PORT`] (6700).
        #[serde(default = "super::names::default_server_port")]
        port: u16,
        #[serde(default)]
        pool: Option<PoolName>,
        #[serde(default)]
        scheme: Option<Scheme>,
    },
    UpdateServer {
        name: ServerName,
        #[serde(default)]
        host: Option<Host>,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        pool: Option<PoolName>,
        /// Removes the pool (ignored when `pool` is given).
        #[serde(default)]
        clear_pool: bool,
        #[serde(default)]
        scheme: Option<Scheme>,
    },
    EnableServer { name: ServerName },
    DisableServer { name: ServerName },
    MarkServerFailed { name: ServerName },
    DeleteServer { name: ServerName },
    RegisterAgent { id: AgentId },
    CreateCluster { name: ClusterName },
    DeleteCluster { name: ClusterName },
    AddAgentToCluster { cluster: ClusterName, agent: AgentId },
    RemoveAgentFromCluster { cluster: ClusterName, agent: AgentId },
    CreateTask { name: TaskName },
    DeleteTask { name: TaskName },
    /// Replaces the whole failover list (creating the task and configuration if needed).
    SetServers { task: TaskName, cluster: ClusterName, servers: Vec<ServerName> },
    /// Adds a server at `position` (0-based; default: the end).
    AddServerToList {
        task: TaskName,
        cluster: ClusterName,
        server: ServerName,
        #[serde(default)]
        position: Option<u32>,
    },
    RemoveServerFromList { task: TaskName, cluster: ClusterName, server: ServerName },
    MoveServer { task: TaskName, cluster: ClusterName, server: ServerName, direction: MoveDirection },
    SetLoadBalancing { task: TaskName, cluster: ClusterName, enabled: bool },
    DeleteTaskConfig { task: TaskName, cluster: ClusterName },
    /// Forgets an agent: takes it out of every cluster, then drops its registration (its
    /// tokens stay; a running agent registers again on its next contact). Appended last:
    /// the codec numbers variants by position.
    RemoveAgent { id: AgentId },
    /// Sets a failover-list entry's priority tier and load-balancing weight; an omitted one
    /// keeps its current value. Appended last: the codec numbers variants by position.
    SetServerWeight {
        task: TaskName,
        cluster: ClusterName,
        server: ServerName,
        #[serde(default)]
        priority: Option<u16>,
        #[serde(default)]
        weight: Option<u16>,
    },
}

/// What a command does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandBody {
    /// Apply these changes now as one revision.
    Apply { changes: Vec<Change> },
    /// Stage a new, empty changeset; its id is derived from the Raft log index.
    CreateChangeset { description: String },
    /// Append changes to a staged changeset (validated in full only when applied).
    AddToChangeset { id: String, changes: Vec<Change> },
    /// Apply a staged changeset as one revision ("Apply All Changes") and remove it.
    ApplyChangeset { id: String },
    DiscardChangeset { id: String },
    /// Record an operational event (not a configuration change: no revision).
    RecordEvent { level: super::oplog::Level, kind: String, message: String },
    /// Change which events are kept.
    SetEventSettings { settings: super::oplog::EventSettings },
    /// Add an API token (only its hash travels); not a configuration change.
    CreateToken { token: super::tokens::TokenRecord },
    /// Remove an API token by name.
    RevokeToken { name: super::tokens::TokenName },
}

/// A write as proposed to Raft. Actor and time are stamped by the node that accepted it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub actor: String,
    pub time_ms: u64,
    pub comment: String,
    pub expected_revision: Option<u64>,
    pub idempotency_key: Option<String>,
    pub body: CommandBody,
}

/// Why a command was rejected. Each code maps to one API error code and HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    NotFound,
    AlreadyExists,
    Invalid,
    RevisionMismatch,
    LimitExceeded,
    IdempotencyKeyReused,
}

impl RejectCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::NotFound => "not_found",
            RejectCode::AlreadyExists => "already_exists",
            RejectCode::Invalid => "invalid",
            RejectCode::RevisionMismatch => "revision_mismatch",
            RejectCode::LimitExceeded => "limit_exceeded",
            RejectCode::IdempotencyKeyReused => "idempotency_key_reused",
        }
    }
}

/// A rejection with its reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Rejection {
    pub code: RejectCode,
    pub message: String,
}

impl Rejection {
    pub fn new(code: RejectCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// The state machine's answer to a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The command became revision `revision` (a history record sealed onto the chain).
    /// Its wire name stays `committed`, as API clients know it.
    #[serde(rename = "committed")]
    RevisionSealed { revision: u64 },
    ChangesetCreated { id: String },
    ChangesetUpdated { id: String, changes: u32 },
    ChangesetDiscarded { id: String },
    EventRecorded { seq: Option<u64> },
    EventSettingsSet,
    Rejected(Rejection),
    TokenCreated { name: String },
    TokenRevoked { name: String },
}

fn not_found(what: &str, name: impl std::fmt::Display) -> Rejection {
    Rejection::new(RejectCode::NotFound, format!("{what} {name} does not exist"))
}

/// Checks `expected_revision` against the state.
pub fn check_expected(state: &State, expected: Option<u64>) -> Result<(), Rejection> {
    match expected {
        Some(r) if r != state.revision => Err(Rejection::new(
            RejectCode::RevisionMismatch,
            format!("expected revision {r}, but the current revision is {}", state.revision),
        )),
        _ => Ok(()),
    }
}

/// The state `changes` would produce from `state` (at the next revision), with their events;
/// or why they would be rejected. For previews: nothing is recorded.
pub fn simulate(state: &State, changes: &[Change], time_ms: u64) -> Result<(State, Vec<Event>), Rejection> {
    let events = decide(state, changes, time_ms)?;
    let mut after = state.clone();
    after.apply_record_events(state.revision + 1, &events);
    Ok((after, events))
}

/// Validates `changes` against `state` and returns the events that apply them all, or the
/// first reason one of them cannot be applied. Later changes see the effect of earlier ones.
pub fn decide(state: &State, changes: &[Change], time_ms: u64) -> Result<Vec<Event>, Rejection> {
    check_count(changes)?;
    if let [only] = changes {
        return decide_one(state, only, time_ms);
    }
    // Why a scratch copy: later changes must be validated against the effect of earlier ones,
    // and a rejection must leave the state untouched. The state machine uses `decide_mut`,
    // which needs no copy.
    let mut scratch = state.clone();
    decide_mut(&mut scratch, changes, time_ms)
}

fn check_count(changes: &[Change]) -> Result<(), Rejection> {
    if changes.is_empty() {
        return Err(Rejection::new(RejectCode::Invalid, "a command needs at least one change"));
    }
    if changes.len() > CHANGES_PER_COMMAND_MAX {
        return Err(Rejection::new(
            RejectCode::LimitExceeded,
            format!("{} changes exceed the limit of {CHANGES_PER_COMMAND_MAX} per command", changes.len()),
        ));
    }
    Ok(())
}

/// [`decide`] on a state it may change while it validates: each change's events are applied
/// in place so later changes see them, and every one is undone before it returns, so the
/// state is as it was whatever the outcome. Costs O(changes), where [`decide`] copies the
/// state for a command of several changes.
pub fn decide_mut(state: &mut State, changes: &[Change], time_ms: u64) -> Result<Vec<Event>, Rejection> {
    check_count(changes)?;
    if let [only] = changes {
        return decide_one(state, only, time_ms);
    }
    let mut undo = Vec::new();
    let mut events = Vec::new();
    let mut outcome = Ok(());
    for (i, change) in changes.iter().enumerate() {
        match decide_one(state, change, time_ms) {
            Ok(evs) => {
                undo.extend(evs.iter().map(|e| state.apply_event_undoable(e)));
                events.extend(evs);
            }
            Err(r) => {
                outcome = Err(Rejection::new(r.code, format!("change {}: {}", i + 1, r.message)));
                break;
            }
        }
    }
    while let Some(u) = undo.pop() {
        state.undo(u);
    }
    outcome.map(|()| events)
}

fn server<'a>(state: &'a State, name: &ServerName) -> Result<&'a Server, Rejection> {
    state.servers.get(name).ok_or_else(|| not_found("server", name))
}

fn require_cluster(state: &State, name: &ClusterName) -> Result<(), Rejection> {
    state.clusters.contains_key(name).then_some(()).ok_or_else(|| not_found("agent cluster", name))
}

fn current_list(state: &State, task: &TaskName, cluster: &ClusterName) -> Result<Vec<ServerName>, Rejection> {
    state
        .config(task, cluster)
        .map(|c| c.servers.clone())
        .ok_or_else(|| Rejection::new(RejectCode::NotFound, format!("task {task} has no configuration for agent cluster {cluster}")))
}

/// Where `name` stands in the failover list of `task` for `cluster`.
fn listed_at(list: &[ServerName], name: &ServerName, task: &TaskName, cluster: &ClusterName) -> Result<usize, Rejection> {
    list.iter()
        .position(|s| s == name)
        .ok_or_else(|| Rejection::new(RejectCode::NotFound, format!("server {name} is not in the list of {task} for {cluster}")))
}

/// Validates a complete failover list.
fn check_list(state: &State, servers: &[ServerName]) -> Result<(), Rejection> {
    if servers.len() > SERVERS_PER_LIST_MAX {
        return Err(Rejection::new(
            RejectCode::LimitExceeded,
            format!("{} servers exceed the limit of {SERVERS_PER_LIST_MAX} per failover list", servers.len()),
        ));
    }
    for (i, s) in servers.iter().enumerate() {
        server(state, s)?;
        if servers[..i].contains(s) {
            return Err(Rejection::new(RejectCode::Invalid, format!("server {s} appears twice in the failover list")));
        }
    }
    Ok(())
}

/// Events for setting a list, creating the task first when it does not exist yet.
fn list_events(state: &State, task: &TaskName, cluster: &ClusterName, servers: Vec<ServerName>) -> Vec<Event> {
    let mut events = Vec::with_capacity(2);
    if !state.tasks.contains_key(task) {
        events.push(Event::TaskCreated { name: task.clone() });
    }
    events.push(Event::ServerListSet { task: task.clone(), cluster: cluster.clone(), servers });
    events
}

/// A new server's host must make a URL: a name or IPv4 address (no ':' or brackets), or an
/// IPv6 address, bare or in brackets. (Older records may hold other hosts; they still load.)
fn check_host_shape(host: &Host) -> Result<(), Rejection> {
    let h = host.as_str();
    let inner = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(h);
    let ok = if h.contains([':', '[', ']']) { inner.parse::<std::net::Ipv6Addr>().is_ok() } else { !h.starts_with(['.', '-']) };
    if ok {
        return Ok(());
    }
    Err(Rejection::new(RejectCode::Invalid, format!("host {h:?} is neither a host name, an IPv4 address nor an IPv6 address")))
}

fn check_scheme_allowed(scheme: &Scheme) -> Result<(), Rejection> {
    if crate::domain::names::SCHEMES_ALLOWED.contains(&scheme.as_str()) {
        return Ok(());
    }
    Err(Rejection::new(
        RejectCode::Invalid,
        format!("scheme {} is not allowed; use one of {}", scheme.as_str(), crate::domain::names::SCHEMES_ALLOWED.join(", ")),
    ))
}

fn decide_one(state: &State, change: &Change, time_ms: u64) -> Result<Vec<Event>, Rejection> {
    use Change::*;
    let events = match change {
        AddServer { name, host, port, pool, scheme } => {
            if let Some(sc) = scheme {
                check_scheme_allowed(sc)?;
            }
            check_host_shape(host)?;
            if state.servers.contains_key(name) {
                return Err(Rejection::new(RejectCode::AlreadyExists, format!("server {name} already exists")));
            }
            if *port == 0 {
                return Err(Rejection::new(RejectCode::Invalid, "port must be between 1 and 65535"));
            }
            vec![Event::ServerRegistered {
                server: Server {
                    name: name.clone(),
                    scheme: scheme.clone().unwrap_or_else(Scheme::http),
                    host: host.clone(),
                    port: *port,
                    pool: pool.clone(),
                    status: ServerStatus::Enabled,
                },
            }]
        }
        UpdateServer { name, host, port, pool, clear_pool, scheme } => {
            let mut s = server(state, name)?.clone();
            if host.is_none() && port.is_none() && pool.is_none() && !*clear_pool && scheme.is_none() {
                return Err(Rejection::new(RejectCode::Invalid, "nothing to update: give a host, port, pool, clear_pool or scheme"));
            }
            if *port == Some(0) {
                return Err(Rejection::new(RejectCode::Invalid, "port must be between 1 and 65535"));
            }
            if let Some(h) = host {
                check_host_shape(h)?;
                s.host = h.clone();
            }
            if let Some(p) = port {
                s.port = *p;
            }
            if let Some(p) = pool {
                s.pool = Some(p.clone());
            } else if *clear_pool {
                s.pool = None;
            }
            if let Some(sc) = scheme {
                check_scheme_allowed(sc)?;
                s.scheme = sc.clone();
            }
            vec![Event::ServerUpdated { server: s }]
        }
        EnableServer { name } => {
            server(state, name)?;
            vec![Event::ServerStatusChanged { name: name.clone(), status: ServerStatus::Enabled }]
        }
        DisableServer { name } => {
            server(state, name)?;
            vec![Event::ServerStatusChanged { name: name.clone(), status: ServerStatus::Disabled }]
        }
        MarkServerFailed { name } => {
            let s = server(state, name)?;
            if s.status != ServerStatus::Enabled {
                return Err(Rejection::new(
                    RejectCode::Invalid,
                    format!("server {name} is {}; only an enabled server can be marked failed", s.status.as_str()),
                ));
            }
            vec![Event::ServerStatusChanged { name: name.clone(), status: ServerStatus::Failed }]
        }
        DeleteServer { name } => {
            server(state, name)?;
            let mut events = Vec::new();
            for (task_name, task) in &state.tasks {
                for (cluster, config) in &task.configs {
                    if config.servers.contains(name) {
                        let servers = config.servers.iter().filter(|s| *s != name).cloned().collect();
                        events.push(Event::ServerListSet { task: task_name.clone(), cluster: cluster.clone(), servers });
                    }
                }
            }
            events.push(Event::ServerDeleted { name: name.clone() });
            events
        }
        RegisterAgent { id } => {
            if state.agents.contains_key(id) {
                return Err(Rejection::new(RejectCode::AlreadyExists, format!("agent {id} is already registered")));
            }
            vec![Event::AgentRegistered { id: id.clone(), registered_ms: time_ms }]
        }
        CreateCluster { name } => {
            if state.clusters.contains_key(name) {
                return Err(Rejection::new(RejectCode::AlreadyExists, format!("agent cluster {name} already exists")));
            }
            vec![Event::ClusterCreated { name: name.clone() }]
        }
        DeleteCluster { name } => {
            require_cluster(state, name)?;
            let mut events: Vec<Event> = state
                .tasks
                .iter()
                .filter(|(_, t)| t.configs.contains_key(name))
                .map(|(task, _)| Event::TaskConfigDeleted { task: task.clone(), cluster: name.clone() })
                .collect();
            events.push(Event::ClusterDeleted { name: name.clone() });
            events
        }
        AddAgentToCluster { cluster, agent } => {
            require_cluster(state, cluster)?;
            if !state.agents.contains_key(agent) {
                return Err(not_found("agent", agent));
            }
            let members = &state.clusters[cluster].agents;
            if members.contains(agent) {
                return Err(Rejection::new(RejectCode::AlreadyExists, format!("agent {agent} is already in {cluster}")));
            }
            if members.len() >= AGENTS_PER_CLUSTER_MAX {
                return Err(Rejection::new(
                    RejectCode::LimitExceeded,
                    format!("agent cluster {cluster} already has the maximum of {AGENTS_PER_CLUSTER_MAX} agents"),
                ));
            }
            vec![Event::AgentAddedToCluster { cluster: cluster.clone(), agent: agent.clone() }]
        }
        RemoveAgent { id } => {
            if !state.agents.contains_key(id) {
                return Err(not_found("agent", id));
            }
            let mut events: Vec<Event> = state
                .clusters
                .iter()
                .filter(|(_, c)| c.agents.contains(id))
                .map(|(name, _)| Event::AgentRemovedFromCluster { cluster: name.clone(), agent: id.clone() })
                .collect();
            events.push(Event::AgentRemoved { id: id.clone() });
            events
        }
        RemoveAgentFromCluster { cluster, agent } => {
            require_cluster(state, cluster)?;
            if !state.clusters[cluster].agents.contains(agent) {
                return Err(Rejection::new(RejectCode::NotFound, format!("agent {agent} is not in {cluster}")));
            }
            vec![Event::AgentRemovedFromCluster { cluster: cluster.clone(), agent: agent.clone() }]
        }
        CreateTask { name } => {
            if state.tasks.contains_key(name) {
                return Err(Rejection::new(RejectCode::AlreadyExists, format!("task {name} already exists")));
            }
            vec![Event::TaskCreated { name: name.clone() }]
        }
        DeleteTask { name } => {
            let task = state.tasks.get(name).ok_or_else(|| not_found("task", name))?;
            let mut events: Vec<Event> = task
                .configs
                .keys()
                .map(|cluster| Event::TaskConfigDeleted { task: name.clone(), cluster: cluster.clone() })
                .collect();
            events.push(Event::TaskDeleted { name: name.clone() });
            events
        }
        SetServers { task, cluster, servers } => {
            require_cluster(state, cluster)?;
            check_list(state, servers)?;
            list_events(state, task, cluster, servers.clone())
        }
        AddServerToList { task, cluster, server: name, position } => {
            require_cluster(state, cluster)?;
            let mut list = state.config(task, cluster).map(|c| c.servers.clone()).unwrap_or_default();
            let at = position.map(|p| p as usize).unwrap_or(list.len());
            if at > list.len() {
                return Err(Rejection::new(
                    RejectCode::Invalid,
                    format!("position {at} is past the end of a list of {}", list.len()),
                ));
            }
            list.insert(at, name.clone());
            check_list(state, &list)?;
            list_events(state, task, cluster, list)
        }
        RemoveServerFromList { task, cluster, server: name } => {
            let mut list = current_list(state, task, cluster)?;
            let i = listed_at(&list, name, task, cluster)?;
            list.remove(i);
            vec![Event::ServerListSet { task: task.clone(), cluster: cluster.clone(), servers: list }]
        }
        MoveServer { task, cluster, server: name, direction } => {
            let mut list = current_list(state, task, cluster)?;
            let i = listed_at(&list, name, task, cluster)?;
            let j = match direction {
                MoveDirection::Up if i > 0 => i - 1,
                MoveDirection::Down if i + 1 < list.len() => i + 1,
                _ => {
                    return Err(Rejection::new(
                        RejectCode::Invalid,
                        format!("server {name} is already at the {} of the list", if *direction == MoveDirection::Up { "top" } else { "bottom" }),
                    ))
                }
            };
            list.swap(i, j);
            vec![Event::ServerListSet { task: task.clone(), cluster: cluster.clone(), servers: list }]
        }
        SetLoadBalancing { task, cluster, enabled } => {
            require_cluster(state, cluster)?;
            let mut events = Vec::new();
            if !state.tasks.contains_key(task) {
                events.push(Event::TaskCreated { name: task.clone() });
            }
            events.push(Event::LoadBalancingSet { task: task.clone(), cluster: cluster.clone(), enabled: *enabled });
            events
        }
        DeleteTaskConfig { task, cluster } => {
            current_list(state, task, cluster)?;
            vec![Event::TaskConfigDeleted { task: task.clone(), cluster: cluster.clone() }]
        }
        SetServerWeight { task, cluster, server: name, priority, weight } => {
            listed_at(&current_list(state, task, cluster)?, name, task, cluster)?;
            if priority.is_none() && weight.is_none() {
                return Err(Rejection::new(RejectCode::Invalid, "give a priority, a weight or both"));
            }
            let current = state.config(task, cluster).map(|c| c.weighting(name)).unwrap_or_default();
            let priority = priority.unwrap_or(current.priority);
            let weight = weight.unwrap_or(current.weight);
            if !(PRIORITY_MIN..=PRIORITY_MAX).contains(&priority) {
                return Err(Rejection::new(
                    RejectCode::Invalid,
                    format!("priority {priority} is out of range: tiers are {PRIORITY_MIN} (first) to {PRIORITY_MAX}"),
                ));
            }
            if !(WEIGHT_MIN..=WEIGHT_MAX).contains(&weight) {
                return Err(Rejection::new(RejectCode::Invalid, format!("weight {weight} is out of range: weights are {WEIGHT_MIN} to {WEIGHT_MAX}")));
            }
            vec![Event::ListEntryWeighted { task: task.clone(), cluster: cluster.clone(), server: name.clone(), priority, weight }]
        }
    };
    Ok(events)
}

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn outcomes_keep_their_wire_names() {
        let json = |o: Outcome| serde_json::to_value(o).unwrap();
        assert_eq!(json(Outcome::RevisionSealed { revision: 7 }), serde_json::json!({"committed": {"revision": 7}}));
        assert_eq!(json(Outcome::ChangesetCreated { id: "cs-1".into() }), serde_json::json!({"changeset_created": {"id": "cs-1"}}));
    }
}
