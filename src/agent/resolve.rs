//! Picking the server a task should use now. Pure: no I/O, so the rules are tested as data.
//!
//! - Disabled and failed servers are skipped, and so are servers a client reported as failing
//!   on this agent (until the cluster's own status takes over).
//! - Priority tiers: only the lowest tier (priority number) that has a usable server is used;
//!   a list whose entries all have the default tier is one tier.
//! - Failover (no load balancing): the first usable server of that tier, in list order.
//! - Load balancing with equal weights in the tier: successive requests rotate through its
//!   usable servers in list order (the rule from before weights existed).
//! - Load balancing with unequal weights: smooth weighted round-robin. Each pick adds every
//!   usable server's weight to its score, takes the highest score (the first in list order on
//!   a tie) and subtracts the total weight from it. Over any run of W picks (W = the total
//!   weight) each server is picked exactly its weight's number of times, interleaved rather
//!   than in bursts, and the sequence is deterministic.

use std::collections::{HashMap, HashSet};

use crate::domain::{ServerName, ServerStatus};
use crate::projection::{AgentServer, AgentTask};

/// Per-task rotation and locally reported failures.
#[derive(Default, Debug)]
pub struct Resolver {
    /// Equal weights: the position in the tier to try first on the next pick.
    next: HashMap<String, usize>,
    /// Unequal weights: each server's running score, per task.
    scores: HashMap<String, HashMap<ServerName, i64>>,
    failed: HashSet<ServerName>,
}

impl Resolver {
    fn usable(&self, s: &AgentServer) -> bool {
        s.status == ServerStatus::Enabled && !self.failed.contains(&s.name)
    }

    /// The server `task` should use now, or `None` when no server in its list is usable.
    pub fn pick<'a>(&mut self, task: &str, cfg: &'a AgentTask) -> Option<&'a AgentServer> {
        let tier = cfg.servers.iter().filter(|s| self.usable(s)).map(|s| s.priority).min()?;
        let members: Vec<&'a AgentServer> = cfg.servers.iter().filter(|s| s.priority == tier).collect();
        if !cfg.load_balancing {
            return members.into_iter().find(|s| self.usable(s));
        }
        if members.iter().all(|s| s.weight == members[0].weight) {
            let n = members.len();
            let start = self.next.get(task).copied().unwrap_or(0) % n;
            let i = (0..n).map(|j| (start + j) % n).find(|&i| self.usable(members[i]))?;
            self.next.insert(task.to_string(), i + 1);
            return Some(members[i]);
        }
        let usable: Vec<&'a AgentServer> = members.into_iter().filter(|s| self.usable(s)).collect();
        let scores = self.scores.entry(task.to_string()).or_default();
        if scores.len() > cfg.servers.len() {
            scores.retain(|name, _| cfg.servers.iter().any(|s| &s.name == name));
        }
        let mut total = 0i64;
        let mut best: Option<(&'a AgentServer, i64)> = None;
        for s in usable {
            let score = scores.entry(s.name.clone()).or_insert(0);
            *score += i64::from(s.weight);
            total += i64::from(s.weight);
            if best.is_none_or(|(_, b)| *score > b) {
                best = Some((s, *score));
            }
        }
        let (chosen, _) = best?;
        *scores.get_mut(&chosen.name).expect("scored above") -= total;
        Some(chosen)
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
                .map(|(n, st)| AgentServer::plain(ServerName::new(*n).unwrap(), format!("http://{n}/"), *st))
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

    fn weighted(lb: bool, servers: &[(&str, ServerStatus, u16, u16)]) -> AgentTask {
        AgentTask {
            cluster: ClusterName::new("c").unwrap(),
            load_balancing: lb,
            servers: servers
                .iter()
                .map(|(n, st, p, w)| {
                    let mut s = AgentServer::plain(ServerName::new(*n).unwrap(), format!("http://{n}/"), *st);
                    s.priority = *p;
                    s.weight = *w;
                    s
                })
                .collect(),
        }
    }

    fn picks(r: &mut Resolver, cfg: &AgentTask, count: usize) -> String {
        (0..count).map(|_| r.pick("t", cfg).map_or("-".to_string(), |s| s.name.to_string())).collect::<Vec<_>>().join(",")
    }

    #[test]
    fn only_the_lowest_tier_with_a_usable_server_is_used() {
        // Without load balancing: failover order within the tier, the next tier only when the
        // whole first tier is unusable.
        let cfg = weighted(false, &[("a", E, 2, 1), ("b", E, 1, 1), ("c", E, 1, 1)]);
        assert_eq!(picks(&mut Resolver::default(), &cfg, 2), "b,b");
        let cfg = weighted(false, &[("a", E, 2, 1), ("b", D, 1, 1), ("c", F, 1, 1)]);
        assert_eq!(picks(&mut Resolver::default(), &cfg, 2), "a,a");
        let mut r = Resolver::default();
        r.report_failure(&ServerName::new("b").unwrap(), 8).unwrap();
        let cfg = weighted(false, &[("a", E, 2, 1), ("b", E, 1, 1), ("c", E, 1, 1)]);
        assert_eq!(picks(&mut r, &cfg, 1), "c");
        // With load balancing: rotation within the first tier only.
        let cfg = weighted(true, &[("a", E, 1, 1), ("x", E, 3, 1), ("b", E, 1, 1)]);
        assert_eq!(picks(&mut Resolver::default(), &cfg, 4), "a,b,a,b");
        let cfg = weighted(true, &[("a", D, 1, 1), ("x", E, 3, 1), ("y", E, 3, 1), ("b", D, 1, 1)]);
        assert_eq!(picks(&mut Resolver::default(), &cfg, 3), "x,y,x");
    }

    #[test]
    fn unequal_weights_rotate_smoothly() {
        // 5:1:1 gives the interleaved sequence of smooth weighted round-robin, not a burst.
        let cfg = weighted(true, &[("a", E, 1, 5), ("b", E, 1, 1), ("c", E, 1, 1)]);
        assert_eq!(picks(&mut Resolver::default(), &cfg, 7), "a,a,b,a,c,a,a");
        // An unusable server is left out; the others share by weight.
        let cfg = weighted(true, &[("a", E, 1, 2), ("b", F, 1, 5), ("c", E, 1, 1)]);
        assert_eq!(picks(&mut Resolver::default(), &cfg, 6), "a,c,a,a,c,a");
        // Weights only matter with load balancing.
        let cfg = weighted(false, &[("a", E, 1, 1), ("b", E, 1, 9)]);
        assert_eq!(picks(&mut Resolver::default(), &cfg, 3), "a,a,a");
    }

    #[test]
    fn shares_over_ten_thousand_resolutions_match_the_weights() {
        let weights = [("a", 50u16), ("b", 30), ("c", 15), ("d", 4), ("e", 1)];
        let list: Vec<(&str, ServerStatus, u16, u16)> = weights.iter().map(|(n, w)| (*n, E, 1, *w)).collect();
        let cfg = weighted(true, &list);
        let mut r = Resolver::default();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for _ in 0..10_000 {
            *counts.entry(r.pick("t", &cfg).unwrap().name.to_string()).or_default() += 1;
        }
        for (n, w) in weights {
            let share = counts[n] as f64 / 10_000.0;
            let want = f64::from(w) / 100.0;
            assert!((share - want).abs() <= 0.01, "{n}: share {share}, weight share {want}");
        }
    }

    /// The rules from before tiers and weights, kept verbatim as the reference.
    #[derive(Default)]
    struct Reference {
        next: HashMap<String, usize>,
        failed: HashSet<ServerName>,
    }

    impl Reference {
        fn pick<'a>(&mut self, task: &str, cfg: &'a AgentTask) -> Option<&'a AgentServer> {
            let usable = |s: &AgentServer| s.status == ServerStatus::Enabled && !self.failed.contains(&s.name);
            let n = cfg.servers.len();
            if !cfg.load_balancing {
                return cfg.servers.iter().find(|s| usable(s));
            }
            let start = self.next.get(task).copied().unwrap_or(0) % n.max(1);
            for j in 0..n {
                let i = (start + j) % n;
                if usable(&cfg.servers[i]) {
                    self.next.insert(task.to_string(), i + 1);
                    return Some(&cfg.servers[i]);
                }
            }
            None
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Pick,
        Fail(usize),
        Status(usize, u8),
        ToggleBalancing,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => Just(Op::Pick),
            1 => (0..6usize).prop_map(Op::Fail),
            1 => (0..6usize, 0..3u8).prop_map(|(i, s)| Op::Status(i, s)),
            1 => Just(Op::ToggleBalancing),
        ]
    }

    proptest::proptest! {
        /// A list without tiers or weights, or with one tier and one weight for every entry,
        /// resolves exactly as before: same picks, through status changes, local failure
        /// reports and load balancing switched on and off.
        #[test]
        fn lists_without_weights_or_tiers_behave_as_before(
            statuses in proptest::collection::vec(0..3u8, 0..6),
            same in proptest::option::of((1..=100u16, 1..=1000u16)),
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let status = |s: u8| [E, D, F][s as usize];
            let list: Vec<(String, ServerStatus)> = statuses.iter().enumerate().map(|(i, s)| (format!("s{i}"), status(*s))).collect();
            let (p, w) = same.unwrap_or((1, 1));
            let build = |list: &[(String, ServerStatus)], lb: bool| {
                let rows: Vec<(&str, ServerStatus, u16, u16)> = list.iter().map(|(n, st)| (n.as_str(), *st, p, w)).collect();
                weighted(lb, &rows)
            };
            let (mut list, mut lb) = (list, false);
            let (mut new, mut old) = (Resolver::default(), Reference::default());
            for op in ops {
                match op {
                    Op::Pick => {
                        let cfg = build(&list, lb);
                        let a = new.pick("t", &cfg).map(|s| s.name.clone());
                        let b = old.pick("t", &cfg).map(|s| s.name.clone());
                        proptest::prop_assert_eq!(a, b);
                    }
                    Op::Fail(i) if i < list.len() => {
                        let name = ServerName::new(list[i].0.clone()).unwrap();
                        new.report_failure(&name, 1024).unwrap();
                        old.failed.insert(name);
                    }
                    Op::Status(i, s) if i < list.len() => list[i].1 = status(s),
                    Op::ToggleBalancing => lb = !lb,
                    _ => {}
                }
            }
        }
    }
}
