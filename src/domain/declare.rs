//! Declarative configuration: the whole configuration as one document ([`Declared`]), and
//! the changes that turn a state into what a document declares ([`plan`]).
//!
//! The document holds what operators decide: servers (address, and `enabled: false` for a
//! drained one), agent clusters with their members, and per task and agent cluster the
//! failover list, load-balancing flag and the entries' priority tiers and weights (only those
//! that differ from tier 1, weight 1). It leaves out what the system records by itself:
//! agent registrations (an agent named in a cluster is registered when needed) and failures
//! (`failed` is an operational status that `servers enable` clears; a failed server counts
//! as enabled here).
//!
//! A plan changes only what differs. Without `prune` it adds and updates; entities the
//! document does not name are left alone. With `prune` the document is the whole
//! configuration: servers, clusters, tasks and task configurations it does not name are
//! deleted. A declared cluster's member list, and a declared list's order and flag, are
//! always taken as written.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::Change;
use super::model::{ServerStatus, State, Weighting};
use super::names::{AgentId, ClusterName, Host, PoolName, Scheme, ServerName, TaskName};

/// The configuration as a document (JSON or YAML).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    #[serde(default)]
    pub servers: BTreeMap<ServerName, DeclaredServer>,
    #[serde(default)]
    pub clusters: BTreeMap<ClusterName, DeclaredCluster>,
    /// Task → agent cluster → list; a task with no configuration is `{}`.
    #[serde(default)]
    pub tasks: BTreeMap<TaskName, BTreeMap<ClusterName, DeclaredList>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredServer {
    pub host: Host,
    pub port: u16,
    #[serde(default = "Scheme::http", skip_serializing_if = "is_http")]
    pub scheme: Scheme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolName>,
    /// `false`: drained (disabled). Default `true`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredCluster {
    #[serde(default)]
    pub agents: BTreeSet<AgentId>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredList {
    /// Failover order.
    pub servers: Vec<ServerName>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub load_balancing: bool,
    /// Priority tier and weight of the entries that do not have the defaults (tier 1, weight 1).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub weights: BTreeMap<ServerName, DeclaredWeight>,
}

/// A list entry's priority tier and load-balancing weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclaredWeight {
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub priority: u16,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u16,
}

impl From<DeclaredWeight> for Weighting {
    fn from(d: DeclaredWeight) -> Self {
        Weighting { priority: d.priority, weight: d.weight }
    }
}

fn one() -> u16 {
    1
}
fn is_one(v: &u16) -> bool {
    *v == 1
}

fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}
fn is_http(s: &Scheme) -> bool {
    *s == Scheme::http()
}

/// The document that declares `state`'s configuration.
pub fn export(state: &State) -> Declared {
    let servers = state
        .servers
        .iter()
        .map(|(name, s)| {
            let declared = DeclaredServer {
                host: s.host.clone(),
                port: s.port,
                scheme: s.scheme.clone(),
                pool: s.pool.clone(),
                enabled: s.status != ServerStatus::Disabled,
            };
            (name.clone(), declared)
        })
        .collect();
    let clusters = state.clusters.iter().map(|(name, c)| (name.clone(), DeclaredCluster { agents: c.agents.clone() })).collect();
    let tasks = state
        .tasks
        .iter()
        .map(|(name, t)| {
            let configs = t
                .configs
                .iter()
                .map(|(c, cfg)| {
                    let weights = cfg
                        .weights
                        .iter()
                        .map(|(s, w)| (s.clone(), DeclaredWeight { priority: w.priority, weight: w.weight }))
                        .collect();
                    (c.clone(), DeclaredList { servers: cfg.servers.clone(), load_balancing: cfg.load_balancing, weights })
                })
                .collect();
            (name.clone(), configs)
        })
        .collect();
    Declared { servers, clusters, tasks }
}

/// Checks that the document's references resolve: every listed server and every configured
/// cluster is declared, or (without `prune`) exists already.
pub fn check(state: &State, doc: &Declared, prune: bool) -> Result<(), String> {
    let where_ = if prune { "declared (with --prune, everything used must be declared)" } else { "declared or already registered" };
    for (task, configs) in &doc.tasks {
        for (cluster, list) in configs {
            if !doc.clusters.contains_key(cluster) && (prune || !state.clusters.contains_key(cluster)) {
                return Err(format!("task {task} is configured for agent cluster {cluster}, which is not {where_}"));
            }
            let mut seen = BTreeSet::new();
            for s in &list.servers {
                if !seen.insert(s) {
                    return Err(format!("task {task}, cluster {cluster}: server {s} is listed twice"));
                }
                if !doc.servers.contains_key(s) && (prune || !state.servers.contains_key(s)) {
                    return Err(format!("task {task}, cluster {cluster}: server {s} is not {where_}"));
                }
            }
            if let Some(s) = list.weights.keys().find(|s| !list.servers.contains(s)) {
                return Err(format!("task {task}, cluster {cluster}: weights name server {s}, which is not in the list"));
            }
        }
    }
    Ok(())
}

/// The changes, in an order `decide` accepts, that make `state` what `doc` declares.
pub fn plan(state: &State, doc: &Declared, prune: bool) -> Result<Vec<Change>, String> {
    check(state, doc, prune)?;
    let mut changes = Vec::new();
    // Servers first: lists refer to them.
    for (name, d) in &doc.servers {
        match state.servers.get(name) {
            None => changes.push(Change::AddServer {
                name: name.clone(),
                host: d.host.clone(),
                port: d.port,
                pool: d.pool.clone(),
                scheme: Some(d.scheme.clone()),
            }),
            Some(s) => {
                if s.host != d.host || s.port != d.port || s.pool != d.pool || s.scheme != d.scheme {
                    changes.push(Change::UpdateServer {
                        name: name.clone(),
                        host: Some(d.host.clone()),
                        port: Some(d.port),
                        pool: d.pool.clone(),
                        clear_pool: d.pool.is_none() && s.pool.is_some(),
                        scheme: Some(d.scheme.clone()),
                    });
                }
            }
        }
        let disabled = state.servers.get(name).is_some_and(|s| s.status == ServerStatus::Disabled);
        if d.enabled && disabled {
            changes.push(Change::EnableServer { name: name.clone() });
        } else if !d.enabled && !disabled {
            changes.push(Change::DisableServer { name: name.clone() });
        }
    }
    // Clusters and their members (an unknown agent is registered first).
    let mut registered: BTreeSet<&AgentId> = state.agents.keys().collect();
    for (name, d) in &doc.clusters {
        let current = state.clusters.get(name);
        if current.is_none() {
            changes.push(Change::CreateCluster { name: name.clone() });
        }
        let have = current.map(|c| &c.agents);
        for agent in &d.agents {
            if registered.insert(agent) {
                changes.push(Change::RegisterAgent { id: agent.clone() });
            }
            if !have.is_some_and(|h| h.contains(agent)) {
                changes.push(Change::AddAgentToCluster { cluster: name.clone(), agent: agent.clone() });
            }
        }
        for agent in have.into_iter().flatten().filter(|a| !d.agents.contains(*a)) {
            changes.push(Change::RemoveAgentFromCluster { cluster: name.clone(), agent: agent.clone() });
        }
    }
    // Task configurations.
    for (task, configs) in &doc.tasks {
        let current = state.tasks.get(task);
        if current.is_none() && configs.is_empty() {
            changes.push(Change::CreateTask { name: task.clone() });
        }
        for (cluster, list) in configs {
            let have = current.and_then(|t| t.configs.get(cluster));
            if have.is_none_or(|h| h.servers != list.servers) {
                changes.push(Change::SetServers { task: task.clone(), cluster: cluster.clone(), servers: list.servers.clone() });
            }
            if have.map_or(list.load_balancing, |h| h.load_balancing != list.load_balancing) {
                changes.push(Change::SetLoadBalancing { task: task.clone(), cluster: cluster.clone(), enabled: list.load_balancing });
            }
            // A server kept in the list keeps its weighting through SetServers; a new one has
            // the default.
            for server in &list.servers {
                let want: Weighting = list.weights.get(server).copied().map(Into::into).unwrap_or_default();
                let current = have.filter(|h| h.servers.contains(server)).map(|h| h.weighting(server)).unwrap_or_default();
                if want != current {
                    changes.push(Change::SetServerWeight {
                        task: task.clone(),
                        cluster: cluster.clone(),
                        server: server.clone(),
                        priority: Some(want.priority),
                        weight: Some(want.weight),
                    });
                }
            }
        }
    }
    if prune {
        for (task, t) in &state.tasks {
            match doc.tasks.get(task) {
                None => changes.push(Change::DeleteTask { name: task.clone() }),
                Some(configs) => {
                    for cluster in t.configs.keys().filter(|c| !configs.contains_key(*c)) {
                        changes.push(Change::DeleteTaskConfig { task: task.clone(), cluster: cluster.clone() });
                    }
                }
            }
        }
        for name in state.clusters.keys().filter(|c| !doc.clusters.contains_key(*c)) {
            changes.push(Change::DeleteCluster { name: name.clone() });
        }
        for name in state.servers.keys().filter(|s| !doc.servers.contains_key(*s)) {
            changes.push(Change::DeleteServer { name: name.clone() });
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::decide;

    fn apply(state: &State, changes: &[Change]) -> State {
        let mut next = state.clone();
        if changes.is_empty() {
            return next;
        }
        let events = decide(state, changes, 1).unwrap_or_else(|r| panic!("{r:?} for {changes:?}"));
        next.apply_record_events(state.revision + 1, &events);
        next
    }

    fn doc(text: &str) -> Declared {
        serde_yaml::from_str(text).unwrap()
    }

    const SITE: &str = r#"
servers:
  rt1: {host: 10.0.0.1, port: 6700}
  rt2: {host: 10.0.0.2, port: 6700, pool: blue, scheme: https}
  rt3: {host: 10.0.0.3, port: 6701, enabled: false}
clusters:
  east: {agents: [host-a, host-b]}
  west: {}
tasks:
  payroll:
    east: {servers: [rt2, rt1], load_balancing: true, weights: {rt2: {weight: 3}, rt1: {priority: 2}}}
    west: {servers: [rt3]}
  reports: {}
"#;

    #[test]
    fn a_document_applied_to_an_empty_state_exports_as_itself_and_then_plans_nothing() {
        let d = doc(SITE);
        let s = apply(&State::default(), &plan(&State::default(), &d, true).unwrap());
        assert_eq!(export(&s), d);
        assert_eq!(plan(&s, &d, true).unwrap(), vec![]);
        assert_eq!(s.servers[&ServerName::new("rt3").unwrap()].status, ServerStatus::Disabled);
        // YAML and JSON forms of the export read back the same.
        let yaml = serde_yaml::to_string(&export(&s)).unwrap();
        assert_eq!(serde_yaml::from_str::<Declared>(&yaml).unwrap(), d);
        let json = serde_json::to_string(&export(&s)).unwrap();
        assert_eq!(serde_json::from_str::<Declared>(&json).unwrap(), d);
    }

    #[test]
    fn only_differences_are_planned_and_prune_deletes_the_undeclared() {
        let s = apply(&State::default(), &plan(&State::default(), &doc(SITE), true).unwrap());
        let next = doc(
            r#"
servers:
  rt1: {host: 10.0.0.9, port: 6700}
  rt2: {host: 10.0.0.2, port: 6700, scheme: https}
  rt3: {host: 10.0.0.3, port: 6701}
clusters:
  east: {agents: [host-b, host-c]}
tasks:
  payroll:
    east: {servers: [rt1, rt2], load_balancing: true}
"#,
        );
        let kinds = |cs: &[Change]| cs.iter().map(|c| serde_json::to_value(c).unwrap().as_object().unwrap().keys().next().unwrap().clone()).collect::<Vec<_>>();
        let additive = plan(&s, &next, false).unwrap();
        assert_eq!(
            kinds(&additive),
            [
                "update_server",
                "update_server",
                "enable_server",
                "register_agent",
                "add_agent_to_cluster",
                "remove_agent_from_cluster",
                "set_servers",
                "set_server_weight",
                "set_server_weight"
            ]
        );
        let after = apply(&s, &additive);
        assert!(after.clusters.contains_key(&ClusterName::new("west").unwrap()), "without prune nothing is deleted");
        let pruned = plan(&s, &next, true).unwrap();
        let after = apply(&s, &pruned);
        assert_eq!(export(&after), next);
        assert_eq!(plan(&after, &next, true).unwrap(), vec![]);
    }

    #[test]
    fn dangling_references_are_refused_by_name() {
        let s = State::default();
        let bad = doc("tasks: {payroll: {east: {servers: [rt1]}}}\nclusters: {east: {}}");
        assert!(plan(&s, &bad, false).unwrap_err().contains("server rt1 is not declared"));
        let bad = doc("servers: {rt1: {host: h, port: 1}}\ntasks: {payroll: {east: {servers: [rt1]}}}");
        assert!(plan(&s, &bad, false).unwrap_err().contains("agent cluster east"));
        let bad = doc("servers: {rt1: {host: h, port: 1}}\nclusters: {east: {}}\ntasks: {payroll: {east: {servers: [rt1, rt1]}}}");
        assert!(plan(&s, &bad, false).unwrap_err().contains("listed twice"));
        assert!(serde_yaml::from_str::<Declared>("servers: {rt1: {host: h, port: 1, colour: red}}").is_err());
        let bad = doc("servers: {rt1: {host: h, port: 1}}\nclusters: {east: {}}\ntasks: {payroll: {east: {servers: [rt1], weights: {rt2: {weight: 2}}}}}");
        assert!(plan(&s, &bad, false).unwrap_err().contains("weights name server rt2"));
        assert!(serde_yaml::from_str::<Declared>("servers: {'bad name': {host: h, port: 1}}").is_err());
    }
}
