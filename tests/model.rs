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
use roster_raft::Proposal;
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
        3 => (0..4u8, 1..3u16).prop_map(|(s, p)| Change::AddServer {
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
        3 => (0..2u8, 0..2u8, prop::collection::vec(0..4u8, 0..4)).prop_map(|(t, c, s)| Change::SetServers {
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

fn arb_body() -> impl Strategy<Value = CommandBody> {
    // Changeset ids are cs-<log index>; small indexes hit existing changesets often enough.
    prop_oneof![
        6 => prop::collection::vec(arb_change(), 1..4).prop_map(|changes| CommandBody::Apply { changes }),
        1 => Just(CommandBody::CreateChangeset { description: "staged".into() }),
        2 => (2..30u32, prop::collection::vec(arb_change(), 1..3))
            .prop_map(|(i, changes)| CommandBody::AddToChangeset { id: format!("cs-{i}"), changes }),
        1 => (2..30u32).prop_map(|i| CommandBody::ApplyChangeset { id: format!("cs-{i}") }),
        1 => (2..30u32).prop_map(|i| CommandBody::DiscardChangeset { id: format!("cs-{i}") }),
    ]
}

fn arb_command() -> impl Strategy<Value = Command> {
    (arb_body(), prop::option::weighted(0.15, 0..6u64), prop::option::weighted(0.2, 0..4u8), 0..1000u64).prop_map(
        |(body, expected_revision, key, t)| Command {
            actor: "prop".into(),
            time_ms: 1_700_000_000_000 + t,
            comment: "generated".into(),
            expected_revision,
            idempotency_key: key.map(|k| format!("key-{k}")),
            body,
        },
    )
}

async fn node(dir: &std::path::Path) -> Running {
    let config = ServeConfig {
        node_id: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        data_dir: dir.to_path_buf(),
        peers: BTreeMap::new(),
    };
    let running = start(config).await.expect("start node");
    running.node.wait_for_leader(std::time::Duration::from_secs(10)).await.expect("leader");
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

async fn run_commands(r: &Running, cmds: &[Command]) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for cmd in cmds {
        let before = r.machine.read().clone();
        let reply = r.node.write(Proposal(codec::encode(cmd))).await.expect("write");
        let outcome: Outcome = codec::decode(&reply.0).unwrap();
        let after = r.machine.read().clone();
        match &outcome {
            Outcome::Rejected(_) => {
                assert_eq!(before.state, after.state, "a rejected command changed the state: {cmd:?}");
                assert_eq!(before.changesets, after.changesets, "a rejected command changed changesets: {cmd:?}");
            }
            Outcome::Committed { revision } => {
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
    #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 64, .. ProptestConfig::default() })]

    #[test]
    fn history_fold_equals_live_state_and_survives_restart(cmds in prop::collection::vec(arb_command(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let a = node(&dir.path().join("a")).await;
            let outcomes = run_commands(&a, &cmds).await;

            // The fold of the stored history equals the live state.
            let (folded, head) = fold_stored(&a.node.store, u64::MAX).unwrap();
            let live = a.machine.read().clone();
            assert_eq!(folded, live.state);
            assert_eq!(head, live.head);

            // Same commands on another node: same outcomes and the same hash chain.
            let b = node(&dir.path().join("b")).await;
            let outcomes_b = run_commands(&b, &cmds).await;
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
                let again = run_commands(&a2, std::slice::from_ref(cmd)).await;
                assert_eq!(&again[0], outcome);
                assert_eq!(snapshot(&a2).0, before.0);
            }
            a2.stop().await;
        });
    }
}
