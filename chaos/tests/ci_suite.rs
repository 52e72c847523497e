//! The CI chaos suite: short seeded runs against real `roster serve` processes that together
//! inject every fault kind, failing on any violation of the checked invariants.
//!
//! Needs the `roster` binary of the same target dir (`cargo test --release --workspace`
//! builds it; or set ROSTER_BIN). Network faults need root (network namespaces) and
//! nftables; without them those faults are skipped and reported, everything else runs.
//! Longer runs and other seeds: `cargo run --release -p roster-chaos -- --seed N --duration S`.

use std::time::{Duration, Instant};

use roster_chaos::{Config, FaultKind};

fn scenario(seed: u64, nodes: usize, duration_s: u64, faults: &[FaultKind]) -> Config {
    Config { seed, nodes, duration: Duration::from_secs(duration_s), faults: faults.to_vec(), ..Config::default() }
}

#[test]
fn chaos_ci_suite() {
    let bin = roster_chaos::run::default_roster_bin().expect("locate the roster binary");
    assert!(bin.exists(), "{} is missing: build it with `cargo build --release` (or set ROSTER_BIN)", bin.display());
    let started = Instant::now();
    let scenarios = [
        // Every fault kind on 3 nodes.
        scenario(42, 3, 70, &FaultKind::ALL),
        // Partitions (minority/majority and a bridge need 5 to be interesting), one-way loss,
        // membership churn and kills on 5 nodes.
        scenario(7, 5, 35, &[FaultKind::Partition, FaultKind::Oneway, FaultKind::Membership, FaultKind::Kill]),
    ];
    let mut failures = Vec::new();
    let mut table = String::from("seed nodes network          wall   ops    acked  failed indet. faults violations\n");
    for cfg in scenarios {
        let kinds = cfg.faults.clone();
        let report = roster_chaos::run(cfg.clone()).unwrap_or_else(|e| panic!("seed {}: the run failed: {e:#}", cfg.seed));
        println!("{}", report.summary);
        let injected = report.injected();
        let network_ok = report.net.contains("nftables");
        for k in &kinds {
            if (network_ok || !k.needs_net()) && !injected.contains_key(k.name()) {
                failures.push(format!("seed {}: fault kind {} was never injected", cfg.seed, k.name()));
            }
        }
        if !report.violations.is_empty() {
            failures.push(format!("seed {}: {} violation(s); see {}", cfg.seed, report.violations.len(), report.out_dir.join("summary.txt").display()));
        }
        let (t, ok, fail, info) = report.ops.values().fold((0, 0, 0, 0), |a, v| (a.0 + v.0, a.1 + v.1, a.2 + v.2, a.3 + v.3));
        table.push_str(&format!(
            "{:<4} {:<5} {:<16} {:>4.0}s {:>6} {:>6} {:>6} {:>6} {:>6} {}\n",
            cfg.seed,
            cfg.nodes,
            report.net,
            report.elapsed.as_secs_f64(),
            t,
            ok,
            fail,
            info,
            injected.values().sum::<usize>(),
            report.violations.len()
        ));
    }
    println!("{table}total wall time {:.0} s", started.elapsed().as_secs_f64());
    assert!(failures.is_empty(), "chaos suite failed:\n{}", failures.join("\n"));
}
