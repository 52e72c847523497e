//! One checker per invariant, each linear in the history (plus one sort by time).
//!
//! (a) one history, (b) acknowledged writes exactly once, (c) real-time order of writes,
//! (d) linearizable reads, (e) agent streams, (f) convergence after healing, (g) liveness.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::model::{Observed, Op, OpKind, Status, Violation};

/// Idempotency keys the harness generates start with this.
pub const KEY_PREFIX: &str = "chaos-";
/// Most messages kept per checker (the count is always exact).
pub const MESSAGES_PER_CHECKER_MAX: usize = 20;

/// The checkers, in report order: (code, name, what it checks).
pub const CHECKERS: [(&str, &str, &str); 8] = [
    ("a", "one-history", "every revision has the same record and hash on every node"),
    ("b", "writes-once", "acknowledged writes appear exactly once, indeterminate at most once, failed never"),
    ("c", "write-order", "a write acknowledged before another began has the smaller revision"),
    ("d", "lin-reads", "a linearizable read sees every write acknowledged before it began"),
    ("e", "agent-streams", "agent streams are ordered, complete, never go backwards, and resume"),
    ("f", "convergence", "after healing all nodes agree and all agents reach the last revision"),
    ("g", "liveness", "after healing, writes succeed again within the bound"),
    ("h", "storage", "every node's data directory is consistent: applied >= purged, no log hole, snapshot files intact"),
];

/// Collects violations for one checker, keeping at most `MESSAGES_PER_CHECKER_MAX` messages.
struct Sink {
    code: &'static str,
    out: Vec<Violation>,
    dropped: usize,
}

impl Sink {
    fn new(code: &'static str) -> Self {
        Self { code, out: Vec::new(), dropped: 0 }
    }
    fn push(&mut self, message: String) {
        if self.out.len() < MESSAGES_PER_CHECKER_MAX {
            self.out.push(Violation { checker: self.code.into(), message });
        } else {
            self.dropped += 1;
        }
    }
    fn finish(mut self) -> Vec<Violation> {
        if self.dropped > 0 {
            let message = format!("... and {} more violations of this invariant", self.dropped);
            self.out.push(Violation { checker: self.code.into(), message });
        }
        self.out
    }
}

/// Runs every checker.
pub fn check_all(obs: &Observed) -> Vec<Violation> {
    let mut v = Vec::new();
    v.extend(check_one_history(obs));
    v.extend(check_writes_once(obs));
    v.extend(check_write_order(obs));
    v.extend(check_lin_reads(obs));
    v.extend(check_agent_streams(obs));
    v.extend(check_convergence(obs));
    v.extend(check_liveness(obs));
    v
}

fn rec_u64(r: &Value, key: &str) -> Option<u64> {
    r.get(key).and_then(Value::as_u64)
}

fn rec_str<'a>(r: &'a Value, key: &str) -> Option<&'a str> {
    r.get(key).and_then(Value::as_str)
}

/// The RFC 9162 Merkle root over the first `size` record hashes of `history` (a record's hash
/// is its leaf hash), or `None` when a hash is not 64 hex digits. Written here from the RFC,
/// apart from the node's code, so the checker does not trust what it checks.
pub fn merkle_root(history: &[Value], size: usize) -> Option<String> {
    use sha2::{Digest, Sha256};
    fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([1u8]);
        h.update(l);
        h.update(r);
        h.finalize().into()
    }
    fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                // The largest power of two below n.
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node(&root(&leaves[..k]), &root(&leaves[k..]))
            }
        }
    }
    let mut leaves = Vec::with_capacity(size);
    for r in history.get(..size)? {
        let mut h = [0u8; 32];
        hex::decode_to_slice(rec_str(r, "hash")?, &mut h).ok()?;
        leaves.push(h);
    }
    Some(hex::encode(root(&leaves)))
}

/// The longest node history: the reference the other checkers use (checker (a) proves the
/// others are prefixes of it).
pub fn reference_history(obs: &Observed) -> &[Value] {
    obs.nodes.iter().map(|n| n.history.as_slice()).max_by_key(|h| h.len()).unwrap_or(&[])
}

/// (a) Every node's history is a dense hash chain, every revision has the same record
/// (body and hash) on every node that has it, and `roster audit verify` accepts the longest
/// history (recomputing every hash and fold) with the nodes' digest.
pub fn check_one_history(obs: &Observed) -> Vec<Violation> {
    let mut s = Sink::new("a");
    for n in &obs.nodes {
        if let Some(e) = &n.error {
            s.push(format!("node {}: history unavailable after healing: {e}", n.node));
        }
        for (i, r) in n.history.iter().enumerate() {
            let want = i as u64 + 1;
            if rec_u64(r, "revision") != Some(want) {
                s.push(format!("node {}: record {} has revision {:?}, expected {want} (history not dense)", n.node, i, rec_u64(r, "revision")));
                break;
            }
            if i > 0 && rec_str(r, "prev_hash") != rec_str(&n.history[i - 1], "hash") {
                s.push(format!("node {}: revision {want}: prev_hash does not link to the hash of revision {}", n.node, want - 1));
                break;
            }
        }
    }
    if let Some(a) = &obs.audit {
        let head = reference_history(obs).len() as u64;
        if !a.ok {
            s.push(format!("`roster audit verify` rejects the exported history: {}", a.output.trim()));
        } else if a.revision != Some(head) {
            s.push(format!("`roster audit verify` ends at revision {:?}, the export has {head} records", a.revision));
        } else {
            for n in obs.nodes.iter().filter(|n| n.revision == Some(head)) {
                if n.digest != a.digest {
                    s.push(format!("node {} reports digest {:?} at revision {head}; folding the exported history gives {:?}", n.node, n.digest, a.digest));
                }
            }
        }
    }
    let reference = reference_history(obs);
    for n in &obs.nodes {
        if let Some((size, root)) = &n.tree {
            if *size != n.history.len() as u64 {
                s.push(format!("node {}: its history tree has {size} leaves but its history {} revisions", n.node, n.history.len()));
            } else if let Some(want) = merkle_root(reference, *size as usize) {
                if *root != want {
                    s.push(format!("node {}: its history tree of {size} revisions has root {root}, the records' hashes give {want}", n.node));
                }
            }
        }
        for (i, r) in n.history.iter().enumerate() {
            if reference[i] != *r {
                let what = if rec_str(r, "hash") != rec_str(&reference[i], "hash") { "hash and record" } else { "record" };
                s.push(format!(
                    "revision {}: node {} has a different {what} than the longest history: {} vs {}",
                    i + 1,
                    n.node,
                    short(r),
                    short(&reference[i])
                ));
                break;
            }
        }
    }
    s.finish()
}

fn short(v: &Value) -> String {
    let mut t = v.to_string();
    if t.len() > 300 {
        t.truncate(300);
        t.push_str("...");
    }
    t
}

/// (b) Every acknowledged write appears exactly once, at the revision it was acknowledged
/// with; an indeterminate one at most once; a failed one never; no record carries a harness
/// key that no operation used.
pub fn check_writes_once(obs: &Observed) -> Vec<Violation> {
    let mut s = Sink::new("b");
    let mut found: HashMap<&str, Vec<u64>> = HashMap::new();
    for r in reference_history(obs) {
        if let Some(k) = rec_str(r, "idempotency_key").filter(|k| k.starts_with(KEY_PREFIX)) {
            found.entry(k).or_default().push(rec_u64(r, "revision").unwrap_or(0));
        }
    }
    let mut used: HashMap<&str, u64> = HashMap::new();
    for op in obs.ops.iter().filter(|o| o.kind().is_write()) {
        let Some(key) = op.key.as_deref() else { continue };
        if let Some(other) = used.insert(key, op.id) {
            s.push(format!("key {key} used by two operations ({other} and {}): harness bug", op.id));
        }
        let revs = found.get(key).map(Vec::as_slice).unwrap_or(&[]);
        match op.status() {
            Status::Ok => {
                if revs.len() != 1 {
                    s.push(format!("acknowledged write {} (key {key}, revision {:?}) appears {} times in the history: {revs:?}", op.id, op.revision, revs.len()));
                } else if op.revision != Some(revs[0]) {
                    s.push(format!("write {} (key {key}) was acknowledged with revision {:?} but the history has it at {}", op.id, op.revision, revs[0]));
                }
            }
            Status::Info if revs.len() > 1 => {
                s.push(format!("indeterminate write {} (key {key}) appears {} times: {revs:?}", op.id, revs.len()));
            }
            Status::Fail if !revs.is_empty() => {
                s.push(format!("failed write {} (key {key}, error {:?}) was applied at {revs:?}", op.id, op.error));
            }
            _ => {}
        }
    }
    for (key, revs) in &found {
        if !used.contains_key(key) {
            s.push(format!("revision(s) {revs:?} carry key {key} that no operation used (phantom write)"));
        }
    }
    s.finish()
}

/// Acknowledged writes in completion order, for the real-time sweeps.
fn acked_writes_by_completion(ops: &[Op]) -> Vec<&Op> {
    let mut w: Vec<&Op> = ops.iter().filter(|o| o.kind().is_write() && o.status() == Status::Ok && o.revision.is_some()).collect();
    w.sort_by_key(|o| o.complete_us);
    w
}

/// (c) A write acknowledged before another began has the smaller revision; a CAS write
/// commits exactly at its expected revision + 1.
pub fn check_write_order(obs: &Observed) -> Vec<Violation> {
    let mut s = Sink::new("c");
    let done = acked_writes_by_completion(&obs.ops);
    let mut started = done.clone();
    started.sort_by_key(|o| o.invoke_us);
    let mut j = 0;
    let mut max: Option<&Op> = None;
    for w in &started {
        while j < done.len() && done[j].complete_us < w.invoke_us {
            if max.is_none_or(|m| done[j].revision > m.revision) {
                max = Some(done[j]);
            }
            j += 1;
        }
        if let Some(m) = max {
            if w.revision < m.revision {
                s.push(format!(
                    "write {} (revision {:?}, began at {} us) began after write {} (revision {:?}) was acknowledged at {} us",
                    w.id, w.revision, w.invoke_us, m.id, m.revision, m.complete_us
                ));
            }
        }
        if w.kind() == OpKind::CasWrite {
            if let (Some(e), Some(r)) = (w.expected, w.revision) {
                if r != e + 1 {
                    s.push(format!("CAS write {} expected revision {e} but committed at {r}", w.id));
                }
            }
        }
    }
    s.finish()
}

/// (d) A linearizable read reflects at least every write acknowledged (and every
/// linearizable read answered) before it began; every read's digest is the state's digest at
/// the revision it names; no read names a revision beyond the history.
pub fn check_lin_reads(obs: &Observed) -> Vec<Violation> {
    let mut s = Sink::new("d");
    let head = reference_history(obs).len() as u64;
    let is_lin = |o: &&Op| o.kind() == OpKind::LinRead && o.status() == Status::Ok && o.revision.is_some();
    let mut done: Vec<&Op> = acked_writes_by_completion(&obs.ops);
    done.extend(obs.ops.iter().filter(is_lin));
    done.sort_by_key(|o| o.complete_us);
    let mut reads: Vec<&Op> = obs.ops.iter().filter(is_lin).collect();
    reads.sort_by_key(|o| o.invoke_us);
    let mut j = 0;
    let mut max: Option<&Op> = None;
    for r in &reads {
        while j < done.len() && done[j].complete_us < r.invoke_us {
            if max.is_none_or(|m| done[j].revision > m.revision) {
                max = Some(done[j]);
            }
            j += 1;
        }
        if let Some(m) = max {
            if r.revision < m.revision {
                s.push(format!(
                    "linearizable read {} (node {:?}, began at {} us) saw revision {:?}, but {} {} (revision {:?}) completed at {} us",
                    r.id,
                    r.node.as_deref().unwrap_or("?"),
                    r.invoke_us,
                    r.revision,
                    m.kind().name(),
                    m.id,
                    m.revision,
                    m.complete_us
                ));
            }
        }
    }
    for r in obs.ops.iter().filter(|o| matches!(o.kind(), OpKind::LinRead | OpKind::LocalRead) && o.status() == Status::Ok) {
        let Some(rev) = r.revision else { continue };
        if head > 0 && rev > head {
            s.push(format!("{} {} saw revision {rev}, beyond the history's last revision {head}", r.kind().name(), r.id));
        }
        if let (Some(d), Some(want)) = (&r.digest, obs.digests.get(&rev)) {
            if d != want {
                s.push(format!("{} {} (node {:?}) returned digest {d} for revision {rev}; the state at {rev} has {want}", r.kind().name(), r.id, r.node));
            }
        }
    }
    s.finish()
}

/// The configuration `agent` should have in `state` (as `GET /v1/state` shows a state):
/// the clusters it belongs to (name order) and, per task, the configuration of the first of
/// them that configures it, with the servers that exist.
pub fn project(state: &Value, agent: &str) -> Value {
    let clusters: Vec<&str> = state["clusters"]
        .as_object()
        .map(|m| {
            let mut v: Vec<&str> = m
                .iter()
                .filter(|(_, c)| c["agents"].as_array().is_some_and(|a| a.iter().any(|x| x.as_str() == Some(agent))))
                .map(|(n, _)| n.as_str())
                .collect();
            v.sort_unstable();
            v
        })
        .unwrap_or_default();
    let servers: HashMap<&str, &Value> = state["servers"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["name"].as_str().map(|n| (n, s))).collect())
        .unwrap_or_default();
    let mut tasks = serde_json::Map::new();
    if let Some(all) = state["tasks"].as_object() {
        for (name, task) in all {
            let hit = clusters.iter().find_map(|c| task["configs"].get(*c).map(|cfg| (*c, cfg)));
            if let Some((cluster, cfg)) = hit {
                let list: Vec<Value> = cfg["servers"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|n| n.as_str().and_then(|n| servers.get(n)))
                            .map(|s| json!({"name": s["name"], "url": s["url"], "status": s["status"]}))
                            .collect()
                    })
                    .unwrap_or_default();
                tasks.insert(name.clone(), json!({"cluster": cluster, "load_balancing": cfg["load_balancing"], "servers": list}));
            }
        }
    }
    json!({"clusters": clusters, "tasks": tasks})
}

/// The part of an agent configuration the checkers compare.
pub fn config_content(config: &Value) -> Value {
    json!({"clusters": config["clusters"], "tasks": config["tasks"]})
}

/// (e) Per agent stream: every answer is newer than the revision the agent had (so the
/// stream never goes backwards), every delivered configuration is the complete configuration
/// at its revision (so no update is missed), after every failed poll the stream resumed, and
/// after every fault it answered again within the liveness bound.
pub fn check_agent_streams(obs: &Observed) -> Vec<Violation> {
    let mut s = Sink::new("e");
    let mut streams: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for o in obs.ops.iter().filter(|o| o.kind() == OpKind::Watch) {
        streams.entry(o.agent.as_deref().unwrap_or(&o.client)).or_default().push(o);
    }
    for (agent, mut ops) in streams {
        ops.sort_by_key(|o| o.invoke_us);
        let mut ok_done: Vec<u64> = ops.iter().filter(|o| o.status() == Status::Ok).map(|o| o.complete_us).collect();
        let mut last: Option<u64> = None;
        let mut failed_since: Option<&Op> = None;
        for o in ops {
            match o.status() {
                Status::Ok => {
                    failed_since = None;
                    let Some(rev) = o.revision else { continue };
                    let after = o.after.unwrap_or(0);
                    if rev <= after {
                        s.push(format!("agent {agent}: watch {} after={after} answered revision {rev} from {:?} (not newer)", o.id, o.node));
                    }
                    if let Some(l) = last {
                        if rev < l {
                            s.push(format!("agent {agent}: watch {} went backwards: revision {rev} after {l} (node {:?})", o.id, o.node));
                        }
                    }
                    last = Some(last.map_or(rev, |l| l.max(rev)));
                    if let (Some(cfg), Some(state)) = (&o.config, obs.states.get(&rev)) {
                        let want = project(state, agent);
                        let got = config_content(cfg);
                        if got != want {
                            s.push(format!(
                                "agent {agent}: watch {} delivered a configuration at revision {rev} that is not the state's: got {} want {}",
                                o.id,
                                short(&got),
                                short(&want)
                            ));
                        }
                    }
                }
                Status::Fail | Status::Info => {
                    failed_since.get_or_insert(o);
                }
            }
        }
        if let Some(f) = failed_since {
            s.push(format!("agent {agent}: the stream never resumed after the failed watch {} at {} us ({:?})", f.id, f.invoke_us, f.error));
        }
        // After every fault the stream answers again within the liveness bound.
        ok_done.sort_unstable();
        for f in obs.faults.iter().filter(|f| f.injected) {
            let i = ok_done.partition_point(|t| *t < f.healed_us);
            let resumed = ok_done.get(i).is_some_and(|t| t - f.healed_us <= obs.liveness_bound_us);
            if !resumed {
                s.push(format!(
                    "agent {agent}: no watch answered within {} ms after fault {} ({} {}) was healed at {} us",
                    obs.liveness_bound_us / 1000,
                    f.id,
                    f.kind,
                    f.variant,
                    f.healed_us
                ));
            }
        }
    }
    s.finish()
}

/// (f) After healing, every node reports the same revision and digest (and a history that
/// long), and every agent deployed the last revision, with the configuration of that state.
pub fn check_convergence(obs: &Observed) -> Vec<Violation> {
    let mut s = Sink::new("f");
    let first = obs.nodes.iter().find(|n| n.revision.is_some());
    for n in &obs.nodes {
        if n.revision.is_none() || n.digest.is_none() {
            s.push(format!("node {} did not report its digest after healing: {:?}", n.node, n.error));
            continue;
        }
        if let Some(f) = first {
            if (n.revision, &n.digest) != (f.revision, &f.digest) {
                s.push(format!(
                    "node {} reports revision {:?} digest {:?}, node {} reports revision {:?} digest {:?}",
                    n.node, n.revision, n.digest, f.node, f.revision, f.digest
                ));
            }
        }
        if n.error.is_none() && n.revision != Some(n.history.len() as u64) {
            s.push(format!("node {} reports revision {:?} but exports {} records", n.node, n.revision, n.history.len()));
        }
        if let (Some(r), Some(d)) = (n.revision, &n.digest) {
            if let Some(want) = obs.digests.get(&r) {
                if want != d {
                    s.push(format!("node {} reports digest {d} at revision {r}; folding the history gives {want}", n.node));
                }
            }
        }
    }
    if obs.marker_revision.is_none() {
        s.push("no write succeeded after healing, so no agent could be checked".into());
    }
    for a in &obs.agents {
        match (a.revision, obs.marker_revision) {
            (Some(r), Some(m)) if r >= m => {}
            (r, m) => s.push(format!("agent {} deployed revision {r:?}, not the last revision {m:?}", a.agent)),
        }
        if let (Some(r), Some(cfg)) = (a.revision, &a.config) {
            if let Some(state) = obs.states.get(&r) {
                let want = project(state, &a.agent);
                let got = config_content(cfg);
                if got != want {
                    s.push(format!("agent {} deployed at revision {r} a configuration that is not the state's: got {} want {}", a.agent, short(&got), short(&want)));
                }
            }
        }
    }
    s.finish()
}

/// (g) After the final heal a write succeeded within the bound, and so did one after every
/// fault.
pub fn check_liveness(obs: &Observed) -> Vec<Violation> {
    let mut s = Sink::new("g");
    let bound = obs.liveness_bound_us;
    match (obs.healed_us, obs.first_write_after_heal_us) {
        (Some(h), Some(w)) if w.saturating_sub(h) <= bound => {}
        (Some(h), Some(w)) => s.push(format!("the first write after healing succeeded {} ms after healing (bound {} ms)", (w - h) / 1000, bound / 1000)),
        (Some(_), None) => s.push(format!("no write succeeded within {} ms after the final heal", bound / 1000)),
        (None, _) => s.push("the run never reached its final heal".into()),
    }
    for f in obs.faults.iter().filter(|f| f.injected) {
        match f.recovered_us {
            Some(r) if r.saturating_sub(f.healed_us) <= bound => {}
            Some(r) => s.push(format!(
                "fault {} ({} {}): a write succeeded only {} ms after healing (bound {} ms)",
                f.id,
                f.kind,
                f.variant,
                r.saturating_sub(f.healed_us) / 1000,
                bound / 1000
            )),
            None => s.push(format!("fault {} ({} {}): no write succeeded within {} ms after healing", f.id, f.kind, f.variant, bound / 1000)),
        }
    }
    s.finish()
}
