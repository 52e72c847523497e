//! Property tests of the event-sourced model through a real single-node Raft on RocksDB:
//! for random command sequences (many of them rejected), the state folded from the stored
//! history equals the live state, a rejected command changes nothing, the same commands give
//! the same hash chain on another node, and a restarted node equals the node before.

use std::collections::BTreeMap;

use proptest::prelude::*;
use roster::domain::{
    Change, ClusterName, Command, CommandBody, Host, MoveDirection, Outcome, ServerName, TaskName, AgentId,
};
use roster::machine::fold_stored;
use roster::server::{start, Running, ServeConfig};
use roster_storage::codec;

fn sn(i: u8) -> ServerName {
    ServerName::new(format!("rt{i}")).unwrap()
}
fn cn(i: u8) -> ClusterName {
    ClusterName::new(format!("c{i}")).unwrap()
}
fn tn(i: u8) -> TaskName {
    TaskName::new(format!("t{i}")).unwrap()
}
fn an(i: u8) -> AgentId {
    AgentId::new(format!("a{i}")).unwrap()
}

fn arb_change() -> impl Strategy<Value = Change> {
    prop_oneof![
        2 => (0..5u8, 1..3u16).prop_map(|(s, p)| Change::AddServer {
            name: sn(s), host: Host::new(format!("10.0.0.{s}")).unwrap(), port: p, pool: None, scheme: None }),
        1 => (0..4u8, 0..3u16).prop_map(|(s, p)| Change::UpdateServer {
            name: sn(s), host: None, port: Some(p), pool: None, clear_pool: false, scheme: None }),
        1 => (0..4u8).prop_map(|s| Change::DisableServer { name: sn(s) }),
        1 => (0..4u8).prop_map(|s| Change::EnableServer { name: sn(s) }),
        1 => (0..4u8).prop_map(|s| Change::MarkServerFailed { name: sn(s) }),
        1 => (0..4u8).prop_map(|s| Change::DeleteServer { name: sn(s) }),
        2 => (0..2u8).prop_map(|c| Change::CreateCluster { name: cn(c) }),
        1 => (0..2u8).prop_map(|c| Change::DeleteCluster { name: cn(c) }),
        1 => (0..2u8).prop_map(|a| Change::RegisterAgent { id: an(a) }),
        1 => (0..2u8, 0..2u8).prop_map(|(c, a)| Change::AddAgentToCluster { cluster: cn(c), agent: an(a) }),
        1 => (0..2u8, 0..2u8).prop_map(|(c, a)| Change::RemoveAgentFromCluster { cluster: cn(c), agent: an(a) }),
        1 => (0..2u8).prop_map(|t| Change::CreateTask { name: tn(t) }),
        1 => (0..2u8).prop_map(|t| Change::DeleteTask { name: tn(t) }),
        4 => (0..2u8, 0..2u8, prop::sample::subsequence(vec![0u8, 1, 2, 3], 0..=3).prop_shuffle()).prop_map(|(t, c, s)| Change::SetServers {
            task: tn(t), cluster: cn(c), servers: s.into_iter().map(sn).collect() }),
        2 => (0..2u8, 0..2u8, 0..4u8, prop::option::of(0..3u32)).prop_map(|(t, c, s, position)| Change::AddServerToList {
            task: tn(t), cluster: cn(c), server: sn(s), position }),
        1 => (0..2u8, 0..2u8, 0..4u8).prop_map(|(t, c, s)| Change::RemoveServerFromList { task: tn(t), cluster: cn(c), server: sn(s) }),
        2 => (0..2u8, 0..2u8, 0..4u8, any::<bool>()).prop_map(|(t, c, s, up)| Change::MoveServer {
            task: tn(t), cluster: cn(c), server: sn(s), direction: if up { MoveDirection::Up } else { MoveDirection::Down } }),
        1 => (0..2u8, 0..2u8, any::<bool>()).prop_map(|(t, c, enabled)| Change::SetLoadBalancing { task: tn(t), cluster: cn(c), enabled }),
        1 => (0..2u8, 0..2u8).prop_map(|(t, c)| Change::DeleteTaskConfig { task: tn(t), cluster: cn(c) }),
    ]
}

/// One generated step. Changesets are referred to by their position among the changesets
/// created so far (their real ids are Raft log indexes, known only when the step runs).
#[derive(Clone, Debug)]
enum Step {
    Apply(Vec<Change>),
    Create,
    Add(usize, Vec<Change>),
    ApplyChangeset(usize),
    Discard(usize),
}

fn arb_changes() -> impl Strategy<Value = Vec<Change>> {
    prop_oneof![
        4 => arb_change().prop_map(|c| vec![c]),
        1 => prop::collection::vec(arb_change(), 2..4),
    ]
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => arb_changes().prop_map(Step::Apply),
        1 => Just(Step::Create),
        2 => (0..3usize, arb_changes()).prop_map(|(i, c)| Step::Add(i, c)),
        1 => (0..3usize).prop_map(Step::ApplyChangeset),
        1 => (0..3usize).prop_map(Step::Discard),
    ]
}

/// A generated step with its command metadata.
#[derive(Clone, Debug)]
struct GenCommand {
    step: Step,
    expected_revision: Option<u64>,
    idempotency_key: Option<String>,
    time_ms: u64,
}

fn arb_command() -> impl Strategy<Value = GenCommand> {
    (arb_step(), prop::option::weighted(0.1, 0..8u64), prop::option::weighted(0.1, 0..4u8), 0..1000u64).prop_map(
        |(step, expected_revision, key, t)| GenCommand {
            step,
            expected_revision,
            idempotency_key: key.map(|k| format!("key-{k}")),
            time_ms: 1_700_000_000_000 + t,
        },
    )
}

/// Turns a step into a concrete command, given the ids of the changesets created so far.
fn materialize(g: &GenCommand, created: &[String]) -> Command {
    let pick = |i: usize| created.get(i % created.len().max(1)).cloned().unwrap_or_else(|| "cs-999".into());
    let body = match &g.step {
        Step::Apply(changes) => CommandBody::Apply { changes: changes.clone() },
        Step::Create => CommandBody::CreateChangeset { description: "staged".into() },
        Step::Add(i, changes) => CommandBody::AddToChangeset { id: pick(*i), changes: changes.clone() },
        Step::ApplyChangeset(i) => CommandBody::ApplyChangeset { id: pick(*i) },
        Step::Discard(i) => CommandBody::DiscardChangeset { id: pick(*i) },
    };
    Command {
        actor: "prop".into(),
        time_ms: g.time_ms,
        comment: "generated".into(),
        expected_revision: g.expected_revision,
        idempotency_key: g.idempotency_key.clone(),
        body,
    }
}

async fn node(dir: &std::path::Path) -> Running {
    let config = ServeConfig::new(1, "127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    let running = start(config).await.expect("start node");
    running.node.wait_for_leader(std::time::Duration::from_secs(10)).await.expect("leader");
    // The new leader records a `leader_elected` event through Raft; wait for it so that both
    // nodes of a comparison see the generated commands at the same log indexes.
    let started = std::time::Instant::now();
    let term = running.node.raft.metrics().borrow().current_term;
    let wanted = format!("term {term}");
    loop {
        let latest = running.node.store.events_recent(1, |_| true).unwrap();
        let recorded = latest.first().is_some_and(|(_, b)| {
            let e: roster::domain::oplog::OpEvent = codec::decode(b).unwrap();
            e.kind == "leader_elected" && e.message.ends_with(&wanted)
        });
        if recorded {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "no leader event recorded");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    running
}

/// Everything observable about a node's applied state.
fn snapshot(r: &Running) -> (roster::domain::State, String, Vec<String>, Vec<Vec<u8>>) {
    let live = r.machine.read().clone();
    let mut history = Vec::new();
    r.node.store.history_scan(1, |_, b| {
        history.push(b.to_vec());
        Ok(true)
    })
    .unwrap();
    (live.state, live.head.to_string(), live.changesets.keys().cloned().collect(), history)
}

/// A first command that creates some servers, clusters and agents, so that most generated
/// commands are valid and the rest are rejected for interesting reasons.
fn setup_command() -> Command {
    let mut changes: Vec<Change> = (0..3u8)
        .map(|s| Change::AddServer { name: sn(s), host: Host::new(format!("10.0.0.{s}")).unwrap(), port: 80, pool: None, scheme: None })
        .collect();
    changes.push(Change::CreateCluster { name: cn(0) });
    changes.push(Change::RegisterAgent { id: an(0) });
    Command {
        actor: "setup".into(),
        time_ms: 1_700_000_000_000,
        comment: String::new(),
        expected_revision: None,
        idempotency_key: None,
        body: CommandBody::Apply { changes },
    }
}

/// Runs generated commands on `r`, checking each outcome; returns the concrete commands.
async fn run_generated(r: &Running, generated: &[GenCommand]) -> (Vec<Command>, Vec<Outcome>) {
    let mut created = Vec::new();
    let mut keyed = BTreeMap::new();
    let mut cmds = vec![setup_command()];
    let mut outcomes = run_commands(r, &cmds, &mut keyed).await;
    for g in generated {
        let cmd = materialize(g, &created);
        let outcome = run_commands(r, std::slice::from_ref(&cmd), &mut keyed).await.remove(0);
        if let Outcome::ChangesetCreated { id } = &outcome {
            created.push(id.clone());
        }
        cmds.push(cmd);
        outcomes.push(outcome);
    }
    (cmds, outcomes)
}

/// Runs commands on `r`, checking each outcome against the state before and after it.
/// `keyed` holds the first command and outcome per idempotency key.
async fn run_commands(r: &Running, cmds: &[Command], keyed: &mut BTreeMap<String, (Command, Outcome)>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for cmd in cmds {
        let before = r.machine.read().clone();
        let reply = r.node.write(codec::encode(cmd)).await.expect("write");
        let outcome: Outcome = codec::decode(&reply).unwrap();
        let after = r.machine.read().clone();
        if let Some((first, first_outcome)) = cmd.idempotency_key.as_ref().and_then(|k| keyed.get(k)) {
            let same = (&first.expected_revision, &first.body) == (&cmd.expected_revision, &cmd.body);
            if same {
                assert_eq!(&outcome, first_outcome, "a retry got another outcome");
            } else {
                assert!(matches!(&outcome, Outcome::Rejected(r) if r.code == roster::domain::RejectCode::IdempotencyKeyReused));
            }
            assert_eq!(before.state, after.state, "a retry changed the state");
            assert_eq!(before.changesets, after.changesets, "a retry changed changesets");
            outcomes.push(outcome);
            continue;
        }
        if let Some(k) = &cmd.idempotency_key {
            keyed.insert(k.clone(), (cmd.clone(), outcome.clone()));
        }
        match &outcome {
            Outcome::Rejected(_) => {
                assert_eq!(before.state, after.state, "a rejected command changed the state: {cmd:?}");
                assert_eq!(before.changesets, after.changesets, "a rejected command changed changesets: {cmd:?}");
            }
            Outcome::RevisionSealed { revision } => {
                assert_eq!(*revision, before.state.revision + 1, "revisions are dense");
                assert_eq!(after.state.revision, *revision);
            }
            _ => assert_eq!(before.state, after.state, "a changeset edit changed the configuration"),
        }
        outcomes.push(outcome);
    }
    outcomes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 64, .. ProptestConfig::default() })]

    #[test]
    fn history_fold_equals_live_state_and_survives_restart(generated in prop::collection::vec(arb_command(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let a = node(&dir.path().join("a")).await;
            let (cmds, outcomes) = run_generated(&a, &generated).await;
            let committed = outcomes.iter().filter(|o| matches!(o, Outcome::RevisionSealed { .. })).count();
            eprintln!("{} commands: {committed} committed, {} rejected", cmds.len(),
                outcomes.iter().filter(|o| matches!(o, Outcome::Rejected(_))).count());

            // The fold of the stored history equals the live state.
            let (folded, head) = fold_stored(&a.node.store, u64::MAX).unwrap();
            let live = a.machine.read().clone();
            assert_eq!(folded, live.state);
            assert_eq!(head, live.head);

            // Same commands on another node: same outcomes and the same hash chain.
            let b = node(&dir.path().join("b")).await;
            let outcomes_b = run_commands(&b, &cmds, &mut BTreeMap::new()).await;
            assert_eq!(outcomes, outcomes_b);
            assert_eq!(snapshot(&a), snapshot(&b));
            b.stop().await;

            // A restarted node equals the node before restart.
            let before = snapshot(&a);
            a.stop().await;
            let a2 = node(&dir.path().join("a")).await;
            assert_eq!(snapshot(&a2), before);
            // Retrying a keyed command after restart gives the stored outcome, no new revision.
            if let Some((cmd, outcome)) = cmds.iter().zip(&outcomes).find(|(c, _)| c.idempotency_key.is_some()) {
                let reply = a2.node.write(codec::encode(cmd)).await.expect("write");
                assert_eq!(&codec::decode::<Outcome>(&reply).unwrap(), outcome);
                assert_eq!(snapshot(&a2).0, before.0);
            }
            a2.stop().await;
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    /// The state machine validates a command of several changes in place (`decide_mut`,
    /// undoing as it goes) instead of on a copy of the state (`decide`): both give the same
    /// events or the same rejection, and the state is left exactly as it was.
    #[test]
    fn deciding_in_place_equals_deciding_on_a_copy(setup in prop::collection::vec(arb_change(), 0..30), commands in prop::collection::vec(prop::collection::vec(arb_change(), 1..6), 1..12)) {
        use roster::domain::{decide, decide_mut, State};
        let mut state = State::default();
        for c in &setup {
            if let Ok(events) = decide(&state, std::slice::from_ref(c), 1) {
                let revision = state.revision + 1;
                state.apply_record_events(revision, &events);
            }
        }
        for changes in &commands {
            let before = state.clone();
            let on_copy = decide(&state, changes, 1);
            let in_place = decide_mut(&mut state, changes, 1);
            prop_assert_eq!(&on_copy, &in_place);
            prop_assert_eq!(&state, &before, "decide_mut left the state changed");
            if let Ok(events) = in_place {
                let revision = state.revision + 1;
                state.apply_record_events(revision, &events);
            }
        }
    }
}
