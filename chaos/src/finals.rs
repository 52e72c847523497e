//! What a chaos run collects after healing: each node's digest, history and tree head, the
//! canonical digests and states the checkers compare against, `roster audit verify` on the
//! exported history, and `roster check-data-dir` on every stopped node.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::checker::reference_history;
use crate::client::get_json;
use crate::model::{NodeFinal, Observed, OpKind, Status};

/// Runs `roster check-data-dir` on a stopped node's data directory (bounded to two minutes);
/// `Some(problem)` when it finds one. A directory without a database (a wiped, retired node)
/// has nothing to check.
pub(crate) async fn check_data_dir(bin: &Path, data_dir: &Path) -> Option<String> {
    if !data_dir.join("db").is_dir() {
        return None;
    }
    let run = tokio::process::Command::new(bin).arg("check-data-dir").arg(data_dir).kill_on_drop(true).output();
    match tokio::time::timeout(Duration::from_secs(120), run).await {
        Err(_) => Some("check-data-dir did not finish within 120 s".into()),
        Ok(Err(e)) => Some(format!("check-data-dir could not run: {e}")),
        Ok(Ok(out)) if out.status.success() => None,
        Ok(Ok(out)) => {
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let problems = report["problems"].as_array().map(|p| p.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join("; "));
            Some(problems.unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).trim().to_string()))
        }
    }
}

/// Writes the longest history to `OUT/export.jsonl` and runs `roster audit verify` on it
/// (bounded to two minutes).
pub(crate) async fn audit_export(bin: &Path, out: &Path, obs: &Observed) -> Option<crate::model::AuditResult> {
    let history = reference_history(obs);
    if history.is_empty() {
        return None;
    }
    let path = out.join("export.jsonl");
    let written = (|| -> std::io::Result<()> {
        let mut h = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for r in history {
            writeln!(h, "{r}")?;
        }
        h.flush()
    })();
    if let Err(e) = written {
        eprintln!("chaos: writing {}: {e}", path.display());
        return None;
    }
    let child = tokio::process::Command::new(bin).args(["audit", "verify"]).arg(&path).kill_on_drop(true).output();
    let output = match tokio::time::timeout(Duration::from_secs(120), child).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return Some(crate::model::AuditResult { ok: false, output: format!("could not run roster audit verify: {e}"), ..Default::default() }),
        Err(_) => return Some(crate::model::AuditResult { ok: false, output: "roster audit verify took over 120 s".into(), ..Default::default() }),
    };
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let field = |prefix: &str| text.lines().find_map(|l| l.strip_prefix(prefix)).map(|v| v.trim().to_string());
    Some(crate::model::AuditResult {
        ok: output.status.success(),
        revision: field("final revision ").and_then(|v| v.parse().ok()),
        digest: field("state digest "),
        output: text,
    })
}


/// Digest and full history of one node from its own applied state.
pub(crate) async fn node_final(http: &reqwest::Client, name: &str, addr: &str) -> NodeFinal {
    let mut nf = NodeFinal { node: name.to_string(), ..NodeFinal::default() };
    match get_json(http, &format!("http://{addr}/v1/state/digest?consistency=local"), 10_000).await {
        Ok(v) => {
            nf.revision = v["revision"].as_u64();
            nf.digest = v["digest"].as_str().map(str::to_string);
        }
        Err(e) => nf.error = Some(format!("digest: {e}")),
    }
    let export = async {
        let r = http
            .get(format!("http://{addr}/v1/history/export?consistency=local"))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("HTTP {}", r.status()));
        }
        let text = r.text().await.map_err(|e| e.to_string())?;
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<Value>(l).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()
    }
    .await;
    match export {
        Ok(h) => nf.history = h,
        Err(e) => nf.error = Some(format!("export: {e}")),
    }
    match get_json(http, &format!("http://{addr}/v1/history/tree-head?consistency=local"), 10_000).await {
        Ok(v) => nf.tree = v["tree_size"].as_u64().zip(v["root_hash"].as_str().map(str::to_string)),
        Err(e) => nf.error = Some(format!("tree head: {e}")),
    }
    nf
}

/// Evenly spaced sample of at most `max` items (always keeping the last).
pub(crate) fn sample(mut v: Vec<u64>, max: usize) -> Vec<u64> {
    v.sort_unstable();
    v.dedup();
    if v.len() <= max {
        return v;
    }
    let step = v.len() as f64 / max as f64;
    let mut out: Vec<u64> = (0..max).map(|i| v[(i as f64 * step) as usize]).collect();
    out.push(*v.last().expect("non-empty"));
    out.dedup();
    out
}

/// Revisions whose digest / state the checkers compare against (bounded samples).
pub const DIGEST_SAMPLE_MAX: usize = 1000;
pub const STATE_SAMPLE_MAX: usize = 500;

pub(crate) async fn fetch_canonical(http: &reqwest::Client, addr: &str, obs: &mut Observed, _seed: u64) {
    let head = reference_history(obs).len() as u64;
    let reads: Vec<u64> = obs
        .ops
        .iter()
        .filter(|o| matches!(o.kind(), OpKind::LinRead | OpKind::LocalRead) && o.status() == Status::Ok)
        .filter_map(|o| o.revision)
        .chain(obs.nodes.iter().filter_map(|n| n.revision))
        .filter(|r| *r <= head && *r > 0)
        .collect();
    let mut states: Vec<u64> = obs.ops.iter().filter(|o| o.kind() == OpKind::Watch).filter_map(|o| o.revision).filter(|r| *r <= head).collect();
    let must: Vec<u64> = obs.agents.iter().filter_map(|a| a.revision).filter(|r| *r <= head).collect();
    states = sample(states, STATE_SAMPLE_MAX);
    states.extend(must);
    let start = Instant::now();
    for r in sample(reads, DIGEST_SAMPLE_MAX) {
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        if let Ok(v) = get_json(http, &format!("http://{addr}/v1/state/digest?revision={r}&consistency=local"), 10_000).await {
            if let (Some(rev), Some(d)) = (v["revision"].as_u64(), v["digest"].as_str()) {
                obs.digests.insert(rev, d.to_string());
            }
        }
    }
    let start = Instant::now();
    for r in states {
        if obs.states.contains_key(&r) {
            continue;
        }
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        if let Ok(v) = get_json(http, &format!("http://{addr}/v1/state?revision={r}&consistency=local"), 10_000).await {
            if let Some(d) = v["digest"].as_str() {
                obs.digests.insert(r, d.to_string());
            }
            obs.states.insert(r, v);
        }
    }
}
