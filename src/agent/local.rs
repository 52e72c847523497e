//! The agent's local defaults file (`local.json`): servers for tasks the cluster does not
//! configure, and a default entry for every other task. Read at start, never written after
//! the first run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{ClusterName, ServerName, ServerStatus, TaskName};
use crate::projection::{AgentServer, AgentTask};

/// The local defaults file: servers for tasks the cluster does not configure.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalFile {
    #[serde(default)]
    pub tasks: BTreeMap<TaskName, LocalTask>,
    /// For every task that neither the cluster nor `tasks` configures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<LocalTask>,
}

/// The server of the default entry a new local file is created with: a run-time server on
/// this computer at the product's default port.
pub const LOCAL_DEFAULT_SERVER_URL: &str = "http://localhost:6700/";

impl LocalFile {
    /// What a first run writes: no tasks, and a default entry naming [`LOCAL_DEFAULT_SERVER_URL`].
    pub fn first_run() -> Self {
        let server = LocalServer {
            name: ServerName::new("localhost").expect("valid"),
            url: LOCAL_DEFAULT_SERVER_URL.into(),
            priority: None,
            weight: None,
        };
        LocalFile { tasks: BTreeMap::new(), default: Some(LocalTask { load_balancing: false, servers: vec![server] }) }
    }

    /// The local entry for `task`: its own, else the default entry.
    pub fn task(&self, task: &TaskName) -> Option<&LocalTask> {
        self.tasks.get(task).or(self.default.as_ref())
    }

    /// Every entry, the default one included.
    pub(super) fn entries(&self) -> impl Iterator<Item = &LocalTask> {
        self.tasks.values().chain(self.default.as_ref())
    }

    /// Refuses priorities and weights outside the ranges the cluster allows.
    pub(super) fn check(&self) -> anyhow::Result<()> {
        use crate::domain::{PRIORITY_MAX, PRIORITY_MIN, WEIGHT_MAX, WEIGHT_MIN};
        for s in self.entries().flat_map(|t| &t.servers) {
            if let Some(p) = s.priority.filter(|p| !(PRIORITY_MIN..=PRIORITY_MAX).contains(p)) {
                anyhow::bail!("server {}: priority {p} is out of range ({PRIORITY_MIN}-{PRIORITY_MAX})", s.name);
            }
            if let Some(w) = s.weight.filter(|w| !(WEIGHT_MIN..=WEIGHT_MAX).contains(w)) {
                anyhow::bail!("server {}: weight {w} is out of range ({WEIGHT_MIN}-{WEIGHT_MAX})", s.name);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalTask {
    #[serde(default)]
    pub load_balancing: bool,
    pub servers: Vec<LocalServer>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalServer {
    pub name: ServerName,
    pub url: String,
    /// Priority tier (default 1, first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    /// Load-balancing weight within the tier (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u16>,
}

impl LocalTask {
    pub(super) fn as_agent_task(&self) -> AgentTask {
        AgentTask {
            cluster: ClusterName::new("local").expect("valid"),
            load_balancing: self.load_balancing,
            servers: self
                .servers
                .iter()
                .map(|s| {
                    let mut a = AgentServer::plain(s.name.clone(), s.url.clone(), ServerStatus::Enabled);
                    a.priority = s.priority.unwrap_or(a.priority);
                    a.weight = s.weight.unwrap_or(a.weight);
                    a
                })
                .collect(),
        }
    }
}
