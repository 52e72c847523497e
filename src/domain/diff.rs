//! Differences between two states, as a flat list of added, removed and changed entities.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::model::State;

/// One difference.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DiffEntry {
    /// `added`, `removed` or `changed`.
    pub kind: &'static str,
    /// `server`, `agent`, `cluster` or `task_config`.
    pub entity: &'static str,
    /// The entity's key (`task/cluster` for a task configuration).
    pub key: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

fn flatten(state: &State) -> BTreeMap<(&'static str, String), Value> {
    let mut out = BTreeMap::new();
    for (name, s) in &state.servers {
        out.insert(("server", name.to_string()), json!({"url": s.url(), "status": s.status}));
    }
    for name in state.agents.keys() {
        out.insert(("agent", name.to_string()), json!({}));
    }
    for (name, c) in &state.clusters {
        out.insert(("cluster", name.to_string()), json!({"agents": c.agents}));
    }
    for (task, t) in &state.tasks {
        if t.configs.is_empty() {
            out.insert(("task", task.to_string()), json!({}));
        }
        for (cluster, c) in &t.configs {
            let mut v = json!({"servers": c.servers, "load_balancing": c.load_balancing});
            // Only weighted lists carry `weights`, so unweighted ones read as before.
            if !c.weights.is_empty() {
                v["weights"] = c.weights.iter().map(|(s, w)| (s.to_string(), json!({"priority": w.priority, "weight": w.weight}))).collect();
            }
            out.insert(("task_config", format!("{task}/{cluster}")), v);
        }
    }
    out
}

/// What changed from `before` to `after`, ordered by entity kind and key.
pub fn diff(before: &State, after: &State) -> Vec<DiffEntry> {
    let a = flatten(before);
    let mut b = flatten(after);
    let mut out = Vec::new();
    for ((entity, key), va) in a {
        match b.remove(&(entity, key.clone())) {
            None => out.push(DiffEntry { kind: "removed", entity, key, before: Some(va), after: None }),
            Some(vb) if vb != va => {
                out.push(DiffEntry { kind: "changed", entity, key, before: Some(va), after: Some(vb) })
            }
            Some(_) => {}
        }
    }
    for ((entity, key), vb) in b {
        out.push(DiffEntry { kind: "added", entity, key, before: None, after: Some(vb) });
    }
    out.sort_by(|x, y| (x.entity, &x.key).cmp(&(y.entity, &y.key)));
    out
}
