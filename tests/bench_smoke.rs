//! The benchmarks that start agents run end to end at a tiny size: they start their nodes,
//! connect every simulated agent, and print each figure they promise. Only that the lines are
//! there and the agents all acknowledged is checked, never a figure (figures are measured,
//! never asserted).

use std::process::Command;

/// One benchmark at a time: each starts nodes and hundreds of connections on loopback.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bench(args: &[&str]) -> String {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_roster")).arg("bench").args(args).output().expect("running roster bench");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "roster bench {args:?} failed:\n{stdout}\n{stderr}");
    stdout.into_owned()
}

#[test]
fn bench_agents_runs_end_to_end() {
    let out = bench(&["agents", "--agents", "30", "--applies", "2"]);
    for line in [
        "30 agents connected: node RSS",
        "node CPU while idle with 30 held watches",
        "apply 2: revision",
        "acknowledged by all 30 agents",
        "time to all 30 acknowledged over 2 applies",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
}

#[test]
fn bench_learners_puts_the_agents_on_learners_and_measures_the_voters() {
    let out = bench(&["learners", "--agents", "40", "--learners", "2", "--clients", "4", "--duration-secs", "1", "--applies", "1"]);
    for line in [
        "2 learners",
        "writes without agents:",
        "learner 4: 20 agents, RSS",
        "learner 5: 20 agents, RSS",
        "writes with 40 agents on the learners:",
        "acknowledged by all 40 agents",
        "writes without agents, again:",
        "the voters' write throughput with the agents:",
    ] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }
    // Bad input is refused before anything starts.
    let refused = Command::new(env!("CARGO_BIN_EXE_roster")).args(["bench", "learners", "--learners", "0"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--learners must be 1..=10"), "{}", String::from_utf8_lossy(&refused.stderr));
}

/// The simulated-agent processes of `bench learners` end when their parent does (their
/// standard input closes), so agents never outlive a benchmark that was killed.
#[test]
fn agent_sim_ends_when_its_parent_goes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
        .args(["bench", "agent-sim", "--nodes", "http://127.0.0.1:1", "--first", "0", "--count", "2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("starting agent-sim");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(child.try_wait().unwrap().is_none(), "agent-sim ended while its parent was there");
    drop(child.stdin.take());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("agent-sim went on after its standard input closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}
