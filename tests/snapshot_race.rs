//! Snapshot build ∥ install ∥ reading the current snapshot, on a multi-thread runtime: no
//! error, every file handed out is complete and intact, and the current snapshot never moves
//! backwards.

use std::sync::Arc;

use openraft::storage::{RaftStateMachine, SnapshotMeta};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use roster::machine::RosterMachine;
use roster_raft::TypeConfig;
use roster_storage::StateMachineStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Sm = StateMachineStore<TypeConfig, RosterMachine>;

fn open(dir: &std::path::Path) -> Sm {
    let db = roster_storage::open(&dir.join("db")).unwrap();
    let (machine, _handle) = RosterMachine::new();
    StateMachineStore::open(db, machine, dir.join("snapshots")).unwrap()
}

fn blank(index: u64) -> Entry<TypeConfig> {
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank }
}

/// An entry registering `n` servers, one revision each.
fn writes(index: u64, n: u64) -> Entry<TypeConfig> {
    use roster::domain::{Change, Command, CommandBody, Host, ServerName};
    let commands = (0..n)
        .map(|i| {
            let cmd = Command {
                actor: "test".into(),
                time_ms: 1,
                comment: String::new(),
                expected_revision: None,
                idempotency_key: None,
                body: CommandBody::Apply {
                    changes: vec![Change::AddServer { name: ServerName::new(format!("s{index}-{i}")).unwrap(), host: Host::new("h").unwrap(), port: 80, pool: None, scheme: None }],
                },
            };
            roster_storage::codec::encode(&cmd)
        })
        .collect();
    Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(roster_raft::Proposal { commands }) }
}

fn files(dir: &std::path::Path, ext: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// Successive snapshots share their history segments: a build writes only the records since
/// the last one, the newest segments are merged eight at a time, every built snapshot reads as
/// one intact stream and installs on another node with the same history, and a damaged
/// segment is never sent: the snapshot is rebuilt with its history written afresh.
#[test]
fn snapshots_share_history_segments_and_install_whole() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        let mut last_files: Vec<std::path::PathBuf> = Vec::new();
        let mut revisions = 0;
        for round in 1..=9u64 {
            sm.apply(vec![writes(round, 10)]).await.unwrap();
            revisions += 10;
            let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
            let bytes = read_all(*built.snapshot).await;
            let summary = roster_storage::codec::stream::verify(&bytes[..]).expect("a built snapshot is intact");
            let segs = files(dir.path(), "hist");
            if round < 8 {
                // One more segment per build; the earlier ones are the same files.
                assert_eq!(segs.len(), round as usize, "round {round}: {segs:?}");
                assert_eq!(&segs[..last_files.len()], &last_files[..], "round {round}: earlier segments were rewritten");
            } else if round == 8 {
                // Eight segments of one tier became one.
                assert_eq!(segs.len(), 1, "round 8: {segs:?}");
            } else {
                assert_eq!(segs.len(), 2, "round 9: {segs:?}");
                assert_eq!(segs[0], last_files[0], "round 9: the merged segment was rewritten");
            }
            last_files = segs;
            // History frames: one per revision, plus the other families in the snapshot's own file.
            assert!(summary.frames >= revisions, "round {round}: {} frames for {revisions} revisions", summary.frames);
            assert_eq!(files(dir.path(), "snap").len(), 1);
        }

        // The chain installs on an empty node: same history, same state.
        let other = tempfile::tempdir().unwrap();
        let mut dst = open(other.path());
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        let mut file = dst.begin_receiving_snapshot().await.unwrap();
        let bytes = read_all(*current.snapshot).await;
        use tokio::io::AsyncWriteExt as _;
        file.write_all(&bytes).await.unwrap();
        dst.install_snapshot(&current.meta, file).await.unwrap();
        let (a, b) = (sm.state_store(), dst.state_store());
        for revision in [1, 45, revisions] {
            assert_eq!(a.history_get(revision).unwrap(), b.history_get(revision).unwrap(), "revision {revision}");
        }
        assert!(b.history_get(revisions + 1).unwrap().is_none());
        // The installed node's next build writes its history as segments.
        dst.apply(vec![writes(100, 3)]).await.unwrap();
        dst.get_snapshot_builder().await.build_snapshot().await.unwrap();
        assert_eq!(files(other.path(), "hist").len(), 1);
        assert!(b.history_get(revisions + 3).unwrap().is_some());

        // A damaged segment: the current snapshot is rebuilt, its history written afresh.
        let seg = files(dir.path(), "hist")[0].clone();
        let mut damaged = std::fs::read(&seg).unwrap();
        damaged[20] ^= 0xFF;
        std::fs::write(&seg, damaged).unwrap();
        let served = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_ne!(served.meta.snapshot_id, current.meta.snapshot_id, "the damaged segment was sent");
        let bytes = read_all(*served.snapshot).await;
        assert!(roster_storage::codec::stream::verify(&bytes[..]).unwrap().frames >= revisions);
        let segs = files(dir.path(), "hist");
        assert_eq!(segs.len(), 1, "{segs:?}");
        assert!(!segs.contains(&seg), "the damaged segment is still used");
    });
}

async fn read_all(mut f: roster_storage::SnapshotFile) -> Vec<u8> {
    let mut out = Vec::new();
    f.read_to_end(&mut out).await.unwrap();
    out
}

#[test]
fn build_install_and_read_race_without_errors_or_going_backwards() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap();
    rt.block_on(async {
        let src_dir = tempfile::tempdir().unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        let mut src = open(src_dir.path());
        // Snapshots of the source at increasing log ids, to install on the target in order.
        let mut shipped: Vec<(SnapshotMeta<u64, openraft::BasicNode>, Vec<u8>)> = Vec::new();
        for round in 0..25u64 {
            src.apply((round * 10 + 1..=round * 10 + 10).map(blank).collect::<Vec<_>>()).await.unwrap();
            let snap = src.get_snapshot_builder().await.build_snapshot().await.unwrap();
            let bytes = read_all(*snap.snapshot).await;
            roster_storage::codec::stream::verify(&bytes[..]).expect("a built snapshot is intact");
            shipped.push((snap.meta, bytes));
        }

        let dst = Arc::new(tokio::sync::Mutex::new(open(dst_dir.path())));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Builders run concurrently with everything (openraft runs them in their own task).
        let mut builders = Vec::new();
        for _ in 0..2 {
            let mut b = dst.lock().await.get_snapshot_builder().await;
            let stop = stop.clone();
            builders.push(tokio::spawn(async move {
                let mut built = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let s = b.build_snapshot().await.expect("build during installs");
                    let bytes = read_all(*s.snapshot).await;
                    roster_storage::codec::stream::verify(&bytes[..]).expect("a built snapshot is intact");
                    built += 1;
                }
                built
            }));
        }
        // A reader, as the leader's replication asks for the current snapshot.
        let reader = {
            let dst = dst.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut last: Option<LogId<u64>> = None;
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let cur = dst.lock().await.get_current_snapshot().await.expect("current snapshot");
                    if let Some(s) = cur {
                        assert!(s.meta.last_log_id >= last, "the current snapshot moved back from {last:?} to {:?}", s.meta.last_log_id);
                        last = s.meta.last_log_id;
                        let bytes = read_all(*s.snapshot).await;
                        roster_storage::codec::stream::verify(&bytes[..]).expect("the current snapshot is intact");
                        reads += 1;
                    }
                    tokio::task::yield_now().await;
                }
                reads
            })
        };
        for (meta, bytes) in &shipped {
            let mut sm = dst.lock().await;
            // The receive path: openraft writes the chunks into the file the store handed out.
            let mut file = sm.begin_receiving_snapshot().await.unwrap();
            file.write_all(bytes).await.unwrap();
            sm.install_snapshot(meta, file).await.expect("install during builds");
            let (applied, _) = sm.applied_state().await.unwrap();
            assert_eq!(applied, meta.last_log_id);
            drop(sm);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut built = 0;
        for b in builders {
            built += b.await.unwrap();
        }
        let reads = reader.await.unwrap();
        assert!(built > 0 && reads > 0, "the race did not run: {built} builds, {reads} reads");
        let last = dst.lock().await.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(last.meta.last_log_id, shipped.last().unwrap().0.last_log_id);
        // Only the current snapshot's file is left.
        let snaps = std::fs::read_dir(dst_dir.path().join("snapshots"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
            .count();
        assert_eq!(snaps, 1, "pruning left {snaps} snapshot files");
    });
}

/// A current snapshot whose file was damaged on disk is never sent: reading the current
/// snapshot finds the damage and serves a fresh build from the state machine instead.
#[test]
fn a_damaged_current_snapshot_is_rebuilt_not_sent() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = open(dir.path());
        sm.apply((1..=10).map(blank).collect::<Vec<_>>()).await.unwrap();
        let built = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let path = dir.path().join("snapshots").join(format!("{}.snap", built.meta.snapshot_id));
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF; // the trailer's checksum no longer matches
        std::fs::write(&path, bytes).unwrap();
        let served = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(served.meta.last_log_id, built.meta.last_log_id);
        assert_ne!(served.meta.snapshot_id, built.meta.snapshot_id, "the damaged file was served");
        roster_storage::codec::stream::verify(&read_all(*served.snapshot).await[..]).expect("the served snapshot is intact");
    });
}
