//! The files a chaos run writes: `history.jsonl` (operations, faults, finals) and
//! `summary.txt`, and the [`Report`] it returns.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use crate::checker::reference_history;
use crate::model::{Observed, Op, OpKind, Status, Violation};
use crate::run::{Config, Report};

fn op_counts(ops: &[Op]) -> BTreeMap<&'static str, (usize, usize, usize, usize)> {
    let mut m = BTreeMap::new();
    for k in OpKind::ALL {
        m.insert(k.name(), (0, 0, 0, 0));
    }
    for o in ops {
        let e = m.entry(o.kind().name()).or_insert((0, 0, 0, 0));
        e.0 += 1;
        match o.status() {
            Status::Ok => e.1 += 1,
            Status::Fail => e.2 += 1,
            Status::Info => e.3 += 1,
        }
    }
    m
}

pub(crate) fn write_report(cfg: &Config, out: &Path, net: &str, obs: &Observed, violations: Vec<Violation>, elapsed: Duration, unexpected: &[String]) -> Result<Report> {
    // The history file: one JSON object per line.
    let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("history.jsonl"))?);
    let meta = json!({
        "type": "run", "seed": cfg.seed, "nodes": cfg.nodes, "duration_s": cfg.duration.as_secs(), "network": net,
        "faults": cfg.faults.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "marker_revision": obs.marker_revision, "healed_us": obs.healed_us, "first_write_after_heal_us": obs.first_write_after_heal_us,
    });
    writeln!(f, "{meta}")?;
    for fr in &obs.faults {
        let mut v = serde_json::to_value(fr)?;
        v["type"] = json!("fault");
        writeln!(f, "{v}")?;
    }
    let mut ops: Vec<&Op> = obs.ops.iter().collect();
    ops.sort_by_key(|o| (o.invoke_us, o.id));
    for o in ops {
        let mut v = serde_json::to_value(o)?;
        v["type"] = json!("op");
        writeln!(f, "{v}")?;
    }
    for n in &obs.nodes {
        writeln!(f, "{}", json!({"type": "node", "node": n.node, "revision": n.revision, "digest": n.digest, "records": n.history.len(), "error": n.error}))?;
    }
    for a in &obs.agents {
        writeln!(f, "{}", json!({"type": "agent", "agent": a.agent, "revision": a.revision}))?;
    }
    for v in &violations {
        writeln!(f, "{}", json!({"type": "violation", "checker": v.checker, "message": v.message}))?;
    }
    f.flush()?;

    let counts = op_counts(&obs.ops);
    let mut s = String::new();
    s.push_str(&format!(
        "roster chaos run: seed {}, {} nodes, network {}, fault phase {} s, faults [{}], wall time {:.0} s\n\n",
        cfg.seed,
        cfg.nodes,
        net,
        cfg.duration.as_secs(),
        cfg.faults.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
        elapsed.as_secs_f64()
    ));
    s.push_str("FAULTS      injected  skipped  recovered  max recovery ms\n");
    let mut kinds: BTreeMap<&str, (usize, usize, usize, u64)> = BTreeMap::new();
    for fr in &obs.faults {
        let e = kinds.entry(fr.kind.as_str()).or_default();
        if fr.injected {
            e.0 += 1;
            if let Some(r) = fr.recovered_us {
                e.2 += 1;
                e.3 = e.3.max(r.saturating_sub(fr.healed_us) / 1000);
            }
        } else {
            e.1 += 1;
        }
    }
    for (k, (inj, skip, rec, max)) in &kinds {
        s.push_str(&format!("{k:<11} {inj:>8}  {skip:>7}  {rec:>9}  {max:>15}\n"));
    }
    let total_inj: usize = kinds.values().map(|v| v.0).sum();
    s.push_str(&format!("{:<11} {total_inj:>8}\n\n", "total"));
    s.push_str("OPERATIONS     total   acked  failed  indeterminate\n");
    let mut tot = (0, 0, 0, 0);
    for (k, (t, ok, fail, info)) in &counts {
        s.push_str(&format!("{k:<12} {t:>7} {ok:>7} {fail:>7} {info:>14}\n"));
        tot = (tot.0 + t, tot.1 + ok, tot.2 + fail, tot.3 + info);
    }
    s.push_str(&format!("{:<12} {:>7} {:>7} {:>7} {:>14}\n\n", "total", tot.0, tot.1, tot.2, tot.3));
    s.push_str("CHECKERS\n");
    for (code, name, what) in crate::checker::CHECKERS {
        let n = violations.iter().filter(|v| v.checker == code).count();
        let verdict = if n == 0 { "ok".to_string() } else { format!("{n} VIOLATION(S)") };
        s.push_str(&format!("({code}) {name:<14} {verdict:<16} {what}\n"));
    }
    s.push_str(&format!(
        "\nhistory: {} revisions on {} nodes; marker revision {:?}; {} digests and {} states verified; roster audit verify: {}\n",
        reference_history(obs).len(),
        obs.nodes.len(),
        obs.marker_revision,
        obs.digests.len(),
        obs.states.len(),
        match &obs.audit {
            Some(a) if a.ok => format!("ok, digest {}", a.digest.as_deref().unwrap_or("?")),
            Some(_) => "FAILED".to_string(),
            None => "not run".to_string(),
        }
    ));
    if !unexpected.is_empty() {
        s.push_str(&format!("unexpected node exits: {}\n", unexpected.len()));
    }
    s.push_str(&format!("violations: {}\n", violations.len()));
    for v in &violations {
        s.push_str(&format!("  ({}) {}\n", v.checker, v.message));
    }
    s.push_str(&format!("files: {}/history.jsonl (operations, faults, finals), summary.txt, export.jsonl, nodes/*.log\n", out.display()));
    s.push_str(&format!(
        "reproduce: roster-chaos --seed {} --duration {} --nodes {} --faults {}\n",
        cfg.seed,
        cfg.duration.as_secs(),
        cfg.nodes,
        if cfg.faults.is_empty() { "none".to_string() } else { cfg.faults.iter().map(|k| k.name()).collect::<Vec<_>>().join(",") }
    ));
    std::fs::write(out.join("summary.txt"), &s)?;
    Ok(Report {
        seed: cfg.seed,
        out_dir: out.to_path_buf(),
        net: net.to_string(),
        violations,
        faults: obs.faults.clone(),
        ops: counts,
        summary: s,
        elapsed,
    })
}
