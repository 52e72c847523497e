//! Picking the server a task should use now. Pure: no I/O, so the rules are tested as data.
//!
//! - Disabled and failed servers are skipped, and so are servers a client reported as failing
//!   on this agent (until the cluster's own status takes over).
//! - Failover (no load balancing): the first usable server in list order.
//! - Load balancing: successive requests rotate through the usable servers in list order.

use std::collections::{HashMap, HashSet};

use crate::domain::{ServerName, ServerStatus};
use crate::projection::{AgentServer, AgentTask};

/// Per-task rotation and locally reported failures.
#[derive(Default, Debug)]
pub struct Resolver {
    next: HashMap<String, usize>,
    failed: HashSet<ServerName>,
}

impl Resolver {
    fn usable(&self, s: &AgentServer) -> bool {
        s.status == ServerStatus::Enabled && !self.failed.contains(&s.name)
    }

    /// The server `task` should use now, or `None` when no server in its list is usable.
    pub fn pick<'a>(&mut self, task: &str, cfg: &'a AgentTask) -> Option<&'a AgentServer> {
        let n = cfg.servers.len();
        if !cfg.load_balancing {
            return cfg.servers.iter().find(|s| self.usable(s));
        }
        let start = self.next.get(task).copied().unwrap_or(0) % n.max(1);
        for j in 0..n {
            let i = (start + j) % n;
            if self.usable(&cfg.servers[i]) {
                self.next.insert(task.to_string(), i + 1);
                return Some(&cfg.servers[i]);
            }
        }
        None
    }

    /// A client could not use `server`: stop using it on this agent at once. Returns whether
    /// the mark is new; refuses a new mark past `max` marked servers.
    pub fn report_failure(&mut self, server: &ServerName, max: usize) -> Result<bool, ()> {
        if self.failed.contains(server) {
            return Ok(false);
        }
        if self.failed.len() >= max {
            return Err(());
        }
        self.failed.insert(server.clone());
        Ok(true)
    }

    /// Keeps only the local marks `keep` accepts (servers some configuration still names).
    pub fn retain_failed(&mut self, keep: impl Fn(&ServerName) -> bool) {
        self.failed.retain(|s| keep(s));
    }

    /// A new configuration arrived: where the cluster itself now excludes a server (failed or
    /// disabled), its status governs and the local mark is dropped, so that an operator's
    /// re-enabling later restores it.
    pub fn on_new_config<'a>(&mut self, servers: impl Iterator<Item = &'a AgentServer>) {
        for s in servers {
            if s.status != ServerStatus::Enabled {
                self.failed.remove(&s.name);
            }
        }
    }

    pub fn locally_failed(&self) -> Vec<&ServerName> {
        let mut v: Vec<_> = self.failed.iter().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ClusterName;

    fn task(lb: bool, servers: &[(&str, ServerStatus)]) -> AgentTask {
        AgentTask {
            cluster: ClusterName::new("c").unwrap(),
            load_balancing: lb,
            servers: servers
                .iter()
                .map(|(n, st)| AgentServer { name: ServerName::new(*n).unwrap(), url: format!("http://{n}/"), status: *st })
                .collect(),
        }
    }

    /// Picks `count` times, reporting `fail` as failed before the first pick.
    fn check(lb: bool, servers: &[(&str, ServerStatus)], fail: &[&str], count: usize, expected: &[Option<&str>]) {
        let cfg = task(lb, servers);
        let mut r = Resolver::default();
        for f in fail {
            r.report_failure(&ServerName::new(*f).unwrap(), 1024).unwrap();
        }
        let got: Vec<Option<String>> = (0..count).map(|_| r.pick("t", &cfg).map(|s| s.name.to_string())).collect();
        let want: Vec<Option<String>> = expected.iter().map(|e| e.map(String::from)).collect();
        assert_eq!(got, want, "lb={lb} servers={servers:?} fail={fail:?}");
    }

    use ServerStatus::{Disabled as D, Enabled as E, Failed as F};

    #[test]
    fn failover_order() {
        check(false, &[("a", E), ("b", E), ("c", E)], &[], 3, &[Some("a"), Some("a"), Some("a")]);
        check(false, &[("a", D), ("b", E), ("c", E)], &[], 2, &[Some("b"), Some("b")]);
        check(false, &[("a", F), ("b", D), ("c", E)], &[], 1, &[Some("c")]);
        check(false, &[("a", E), ("b", E), ("c", E)], &["a"], 2, &[Some("b"), Some("b")]);
        check(false, &[("a", E), ("b", E)], &["a", "b"], 1, &[None]);
        check(false, &[("a", D), ("b", F)], &[], 1, &[None]);
        check(false, &[], &[], 1, &[None]);
    }

    #[test]
    fn load_balancing_rotation() {
        check(true, &[("a", E), ("b", E), ("c", E)], &[], 7, &[Some("a"), Some("b"), Some("c"), Some("a"), Some("b"), Some("c"), Some("a")]);
        check(true, &[("a", E), ("b", D), ("c", E)], &[], 4, &[Some("a"), Some("c"), Some("a"), Some("c")]);
        check(true, &[("a", E), ("b", E), ("c", F)], &["a"], 3, &[Some("b"), Some("b"), Some("b")]);
        check(true, &[("a", D), ("b", D)], &[], 2, &[None, None]);
        check(true, &[], &[], 1, &[None]);
    }

    #[test]
    fn failure_then_cluster_status_then_reenable() {
        let mut r = Resolver::default();
        let rt1 = ServerName::new("rt1").unwrap();
        r.report_failure(&rt1, 1024).unwrap();
        let enabled = task(false, &[("rt1", E), ("rt2", E)]);
        assert_eq!(r.pick("t", &enabled).unwrap().name.as_str(), "rt2", "locally failed server is skipped at once");
        // The cluster marks it failed: the cluster's status now governs.
        let failed = task(false, &[("rt1", F), ("rt2", E)]);
        r.on_new_config(failed.servers.iter());
        assert_eq!(r.pick("t", &failed).unwrap().name.as_str(), "rt2");
        // An operator re-enables it: it is used again.
        r.on_new_config(enabled.servers.iter());
        assert_eq!(r.pick("t", &enabled).unwrap().name.as_str(), "rt1");
    }

    #[test]
    fn local_failure_marks_are_bounded_and_pruned() {
        let mut r = Resolver::default();
        let name = |n: &str| ServerName::new(n).unwrap();
        assert_eq!(r.report_failure(&name("a"), 2), Ok(true));
        assert_eq!(r.report_failure(&name("a"), 2), Ok(false), "a repeat is not a new mark");
        assert_eq!(r.report_failure(&name("b"), 2), Ok(true));
        assert_eq!(r.report_failure(&name("c"), 2), Err(()), "a mark past the bound is refused");
        r.retain_failed(|s| s.as_str() != "a");
        assert_eq!(r.locally_failed(), vec![&name("b")]);
        assert_eq!(r.report_failure(&name("c"), 2), Ok(true), "room again after pruning");
    }
}
