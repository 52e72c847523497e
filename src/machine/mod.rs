//! The Roster state machine application: executes committed commands against the live state,
//! seals history records onto the hash chain and writes everything through the storage
//! transaction. Shared read access for the API goes through [`MachineHandle`].

mod checkpoints;
mod execute;
mod records;
pub mod upgrade;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use openraft::LogId;
use roster_raft::{Proposal, Reply, TypeConfig};
use roster_storage::{codec, Application, StateStore, StoreError, Txn};
use tokio::sync::watch;

use crate::domain::merkle::Frontier;
use crate::domain::oplog::EventSettings;
use crate::domain::tokens::{TokenName, TokenRecord};
use crate::domain::{AgentId, Command, Hash, Outcome, RejectCode, Rejection, State};
use crate::projection::{AgentWakers, Mark, MarkChanges};

pub use crate::domain::Changeset;
pub use records::{fold_stored, RejectionRecord};
use records::{corrupt, fingerprint, IdempotencyEntry};

/// A checkpoint of the folded state is written at least this many revisions after the last
/// one, and, for a large configuration, only once as many revisions as the configuration had
/// items ([`checkpoint_spacing`]): encoding the state costs O(state), so spacing checkpoints by
/// the state's size keeps a write's cost O(1) on average, not O(state). A restart or a
/// state-at-revision query folds at most that many records (folding one costs O(1)).
pub const CHECKPOINT_EVERY_REVISIONS: u64 = 10_000;
/// An idempotency key's outcome is kept this long (by command time): a retry with the same
/// key within it gets the first outcome; after it, the key is free again.
pub const IDEMPOTENCY_KEEP_MS: u64 = 24 * 3600 * 1000;
/// Expired idempotency outcomes are dropped every this many log entries...
pub const IDEMPOTENCY_EXPIRE_EVERY_LOG_ENTRIES: u64 = 1024;
/// ...at most this many at a time.
pub const IDEMPOTENCY_EXPIRE_BATCH_MAX: usize = 10_000;
/// Rejections are kept for this many Raft log entries.
pub const REJECTIONS_KEEP_LOG_ENTRIES: u64 = 100_000;

/// The live, applied state of this node.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub state: State,
    /// Hash of the last history record (all zeros before the first).
    pub head: Hash,
    /// The right edge of the history's Merkle tree (its size is the revision).
    pub tree: Frontier,
    pub changesets: BTreeMap<String, Changeset>,
    /// Sequence number of the next operational event.
    pub event_seq: u64,
    pub event_settings: EventSettings,
    /// Tokens created through the API, by name.
    pub tokens: BTreeMap<TokenName, TokenRecord>,
    /// Token name by the hash of its secret.
    pub token_hashes: HashMap<[u8; 32], TokenName>,
    /// The revision of this node's newest fold checkpoint, written or falling due (0: none),
    /// and how many revisions after it the next one is due ([`checkpoint_spacing`]).
    pub last_checkpoint: u64,
    pub checkpoint_spacing: u64,
}

/// How many revisions after a fold checkpoint the next one is due: [`CHECKPOINT_EVERY_REVISIONS`],
/// or as many as `state` (the state checkpointed) has items — servers, agents, clusters, tasks
/// and task configurations — if that is more. A configuration growing by g items per revision
/// is checkpointed every (1 + g)× more revisions, never less often than that, so the encoding
/// costs O(1 + g) per revision on average and a restart folds at most that many records.
pub fn checkpoint_spacing(state: &State) -> u64 {
    let configs: usize = state.tasks.values().map(|t| t.configs.len()).sum();
    let items = state.servers.len() + state.agents.len() + state.clusters.len() + state.tasks.len() + configs;
    CHECKPOINT_EVERY_REVISIONS.max(items as u64)
}

impl Live {
    fn set_tokens(&mut self, tokens: BTreeMap<TokenName, TokenRecord>) {
        self.token_hashes = tokens.values().map(|t| (t.hash, t.name.clone())).collect();
        self.tokens = tokens;
    }

    /// The API token whose secret hashes to `hash`.
    pub fn token_by_hash(&self, hash: &[u8; 32]) -> Option<&TokenRecord> {
        self.tokens.get(self.token_hashes.get(hash)?)
    }
}

/// Key of the token table among the state machine's settings.
const SETTING_TOKENS: &str = "tokens";

struct Shared {
    live: RwLock<Live>,
    revision_tx: watch::Sender<u64>,
    /// The next operational event's sequence number (moves when an event is recorded).
    events_tx: watch::Sender<u64>,
    /// Per-agent change tracking; updated under the `live` write lock.
    projection: Mutex<AgentWakers>,
    /// What the last load upgraded in the data dir, for the event log.
    upgrade_note: Mutex<Option<String>>,
    /// The revision of the newest fold checkpoint written in the background.
    checkpoint_tx: watch::Sender<u64>,
    /// Agents' configurations rendered once per revision and set of clusters.
    rendered: crate::projection::RenderedConfigs,
}

/// Read access to the live state from the API, cheap to clone.
#[derive(Clone)]
pub struct MachineHandle {
    shared: Arc<Shared>,
}

impl MachineHandle {
    pub fn read(&self) -> RwLockReadGuard<'_, Live> {
        // A poisoned lock means apply panicked, which already stops the node.
        self.shared.live.read().expect("state machine lock poisoned")
    }

    /// The shared renderings of agents' configurations (config watches answer from them).
    pub fn rendered_configs(&self) -> &crate::projection::RenderedConfigs {
        &self.shared.rendered
    }

    /// Notified with the revision after every applied revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.revision_tx.subscribe()
    }

    /// Notified with the next operational event's sequence number whenever events are recorded.
    pub fn subscribe_events(&self) -> watch::Receiver<u64> {
        self.shared.events_tx.subscribe()
    }

    /// Notified with the revision at which `agent`'s configuration last changed.
    pub fn subscribe_agent(&self, agent: &AgentId) -> watch::Receiver<u64> {
        self.shared.projection.lock().expect("projection lock poisoned").subscribe(agent)
    }

    /// The revision at which `agent`'s configuration last changed on this node.
    pub fn agent_changed_at(&self, agent: &AgentId) -> u64 {
        *self.shared.projection.lock().expect("projection lock poisoned").subscribe(agent).borrow()
    }

    /// Blocks until the newest fold checkpoint that fell due is written, at most `limit`;
    /// true if it was. For offline tools (data dir generation) and tests: a node never waits.
    pub fn wait_for_checkpoints(&self, limit: std::time::Duration) -> bool {
        let due = self.read().last_checkpoint;
        let written = self.shared.checkpoint_tx.subscribe();
        let deadline = std::time::Instant::now() + limit;
        while *written.borrow() < due {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }

    /// What loading upgraded in the data dir (once; `None` when nothing was upgraded).
    pub fn take_upgrade_note(&self) -> Option<String> {
        self.shared.upgrade_note.lock().expect("upgrade note lock poisoned").take()
    }

    /// How many agents the last revision woke.
    pub fn last_woken(&self) -> usize {
        self.shared.projection.lock().expect("projection lock poisoned").last_woken
    }
}

/// The application plugged into the storage crate's state machine.
pub struct RosterMachine {
    shared: Arc<Shared>,
    /// Agents whose configuration the applied-but-not-yet-written batch may change.
    pending_agents: BTreeSet<AgentId>,
    /// The newest revision of that batch, published once it is written.
    pending_revision: Option<u64>,
    /// Where the agents' configuration marks are kept (set at load).
    store: Option<StateStore>,
    /// A fold checkpoint that fell due in the batch, built once the batch is written.
    checkpoint_due: Option<u64>,
    checkpoints: checkpoints::Checkpointer,
}

impl RosterMachine {
    pub fn new() -> (Self, MachineHandle) {
        let (revision_tx, _) = watch::channel(0);
        let (events_tx, _) = watch::channel(0);
        let (checkpoint_tx, _) = watch::channel(0);
        let checkpoints = checkpoints::Checkpointer::new(checkpoint_tx.clone());
        let shared = Arc::new(Shared {
            live: RwLock::new(Live::default()),
            revision_tx,
            events_tx,
            projection: Mutex::new(AgentWakers::default()),
            upgrade_note: Mutex::new(None),
            checkpoint_tx,
            rendered: crate::projection::RenderedConfigs::default(),
        });
        let machine = Self {
            shared: shared.clone(),
            pending_agents: BTreeSet::new(),
            pending_revision: None,
            store: None,
            checkpoint_due: None,
            checkpoints,
        };
        (machine, MachineHandle { shared })
    }
}

impl Application<TypeConfig> for RosterMachine {
    fn load(&mut self, store: &StateStore) -> Result<(), StoreError> {
        let stored_format = upgrade::check_data_format(store)?;
        let rewritten = upgrade::upgrade_history(store)?;
        let old_checkpoints = stored_format.is_some_and(|f| f < upgrade::CHECKPOINT_FORMAT);
        if old_checkpoints {
            // Encoded in an earlier layout of the state: derived data, refolded from the history.
            store.clear_checkpoints()?;
        }
        let (state, head) = fold_stored(store, u64::MAX)?;
        if old_checkpoints && state.revision > 0 {
            // One checkpoint at the head now, so the next start does not refold the history.
            store.put_checkpoint(state.revision, &codec::encode(&records::CheckpointRef { state: &state, head: &head }))?;
        }
        let last_checkpoint = store.checkpoint_at_or_before(u64::MAX)?.map_or(0, |(revision, _)| revision);
        let tree = upgrade::catch_up_tree(store, state.revision)?;
        if stored_format != Some(upgrade::DATA_FORMAT) {
            let from = stored_format.unwrap_or(1);
            if state.revision > 0 || stored_format.is_some() {
                let note = if from >= 2 {
                    format!(
                        "data dir upgraded from format {from} to {}: fold checkpoints dropped{}, history unchanged",
                        upgrade::DATA_FORMAT,
                        if old_checkpoints { " (rebuilt as revisions are applied)" } else { "" }
                    )
                } else {
                    format!(
                        "data dir upgraded from format {from} to {}: {rewritten} history records rehashed in record format {}, the history tree built",
                        upgrade::DATA_FORMAT,
                        crate::domain::HISTORY_FORMAT
                    )
                };
                tracing::info!("{note}");
                *self.shared.upgrade_note.lock().expect("upgrade note lock poisoned") = Some(note);
            }
            store.set_data_format(upgrade::DATA_FORMAT)?;
        }
        let mut changesets = BTreeMap::new();
        for (_, bytes) in store.changesets()? {
            let cs: Changeset = codec::decode(&bytes).map_err(corrupt)?;
            changesets.insert(cs.id.clone(), cs);
        }
        let event_seq = store.events_next_seq()?;
        let event_settings = match store.event_settings()? {
            Some(b) => codec::decode(&b).map_err(corrupt)?,
            None => EventSettings::default(),
        };
        let tokens: BTreeMap<TokenName, TokenRecord> = match store.setting(SETTING_TOKENS)? {
            Some(b) => codec::decode(&b).map_err(corrupt)?,
            None => BTreeMap::new(),
        };
        let revision = state.revision;
        let mut live = self.shared.live.write().expect("state machine lock poisoned");
        let marks = load_marks(store)?;
        let changes = self.shared.projection.lock().expect("projection lock poisoned").rebuild(&state, &marks);
        store_marks(store, changes);
        self.store = Some(store.clone());
        let checkpoint_spacing = checkpoint_spacing(&state);
        *live = Live { state, head, tree, changesets, event_seq, event_settings, last_checkpoint, checkpoint_spacing, ..Live::default() };
        live.set_tokens(tokens);
        drop(live);
        self.shared.revision_tx.send_replace(revision);
        self.shared.events_tx.send_replace(event_seq);
        self.shared.checkpoint_tx.send_replace(last_checkpoint);
        Ok(())
    }

    /// The batch is written: wake the agents whose configuration changed and publish the new
    /// revision, so a watcher woken at revision N can always read history N.
    fn applied(&mut self) {
        let agents = std::mem::take(&mut self.pending_agents);
        if !agents.is_empty() {
            let live = self.shared.live.read().expect("state machine lock poisoned");
            let changes = self.shared.projection.lock().expect("projection lock poisoned").update(&live.state, &agents);
            drop(live);
            if let Some(store) = &self.store {
                store_marks(store, changes);
            }
        }
        if let Some(revision) = self.pending_revision.take() {
            self.shared.revision_tx.send_replace(revision);
        }
        if let (Some(revision), Some(store)) = (self.checkpoint_due.take(), &self.store) {
            self.checkpoints.request(store, revision);
        }
        let event_seq = self.shared.live.read().expect("state machine lock poisoned").event_seq;
        self.shared.events_tx.send_if_modified(|seq| std::mem::replace(seq, event_seq) != event_seq);
    }

    fn apply(&mut self, log_id: &LogId<u64>, data: &Proposal, txn: &mut Txn<'_>) -> Reply {
        let results = data
            .commands
            .iter()
            .enumerate()
            .map(|(position, bytes)| codec::encode(&self.apply_command(log_id, position, bytes, txn)))
            .collect();
        Reply { results }
    }
}

/// The agents' stored configuration marks; an undecodable one is ignored (the agent then
/// counts as changed at the head, as without a mark).
fn load_marks(store: &StateStore) -> Result<HashMap<AgentId, Mark>, StoreError> {
    let mut marks = HashMap::new();
    for (key, bytes) in store.deployment_marks()? {
        let id = String::from_utf8(key).ok().and_then(|k| AgentId::new(k).ok());
        if let (Some(id), Ok(mark)) = (id, codec::decode::<Mark>(&bytes)) {
            marks.insert(id, mark);
        }
    }
    Ok(marks)
}

/// Stores the marks an update changed. A failure only costs precision after a restart (the
/// marks are checked at load), so it is logged, not fatal.
fn store_marks(store: &StateStore, changes: MarkChanges) {
    if changes.set.is_empty() && changes.removed.is_empty() {
        return;
    }
    let put: Vec<(Vec<u8>, Vec<u8>)> = changes.set.iter().map(|(id, m)| (id.as_str().as_bytes().to_vec(), codec::encode(m))).collect();
    let delete: Vec<Vec<u8>> = changes.removed.iter().map(|id| id.as_str().as_bytes().to_vec()).collect();
    if let Err(e) = store.write_deployment_marks(&put, &delete) {
        tracing::warn!("could not store the agents' configuration marks: {e}");
    }
}

impl RosterMachine {
    /// Applies the command at `position` within the Raft entry `log_id`.
    fn apply_command(&mut self, log_id: &LogId<u64>, position: usize, bytes: &[u8], txn: &mut Txn<'_>) -> Outcome {
        let cmd: Command = match codec::decode(bytes) {
            Ok(c) => c,
            Err(e) => return Outcome::Rejected(Rejection::new(RejectCode::Invalid, format!("undecodable command: {e}"))),
        };
        if cmd.idempotency_key.as_ref().is_some_and(|k| k.is_empty() || k.as_bytes()[0] == 0) {
            return Outcome::Rejected(Rejection::new(RejectCode::Invalid, "an idempotency key must not be empty or start with a 0 byte"));
        }
        let fp = cmd.idempotency_key.as_ref().map(|_| fingerprint(&cmd));
        if let (Some(key), Some(fp)) = (&cmd.idempotency_key, fp) {
            match txn.idempotency_get(key.as_bytes()) {
                Ok(Some(bytes)) => {
                    let entry: IdempotencyEntry =
                        codec::decode(&bytes).expect("idempotency entries are written by this state machine");
                    return if entry.fingerprint == fp {
                        entry.outcome
                    } else {
                        Outcome::Rejected(Rejection::new(
                            RejectCode::IdempotencyKeyReused,
                            format!("idempotency key {key:?} was already used for a different command"),
                        ))
                    };
                }
                Ok(None) => {}
                // A read error here would make this node's answer differ from its peers';
                // stopping is the only safe choice.
                Err(e) => panic!("reading idempotency outcome: {e}"),
            }
        }

        let mut live = self.shared.live.write().expect("state machine lock poisoned");
        let mut agents = BTreeSet::new();
        let checkpointed = live.last_checkpoint;
        let outcome = execute::execute(&mut live, log_id, position, &cmd, txn, &mut agents);
        let revision = live.state.revision;
        if live.last_checkpoint != checkpointed {
            self.checkpoint_due = Some(live.last_checkpoint);
        }
        drop(live);
        // Agents are woken in `applied`, once the batch holding this revision is written.
        self.pending_agents.append(&mut agents);

        if let Outcome::Rejected(r) = &outcome {
            let rec = RejectionRecord {
                log_index: log_id.index,
                time_ms: cmd.time_ms,
                actor: cmd.actor.clone(),
                comment: cmd.comment.clone(),
                rejection: r.clone(),
            };
            txn.put_rejection(log_id.index, position as u32, &codec::encode(&rec), REJECTIONS_KEEP_LOG_ENTRIES);
        }
        if let (Some(key), Some(fingerprint)) = (&cmd.idempotency_key, fp) {
            let entry = IdempotencyEntry { fingerprint, outcome: outcome.clone() };
            txn.put_idempotency(key.as_bytes(), &codec::encode(&entry), cmd.time_ms);
        }
        // Old outcomes expire: every so many log entries, by the (replicated) command time, so
        // every node drops the same ones.
        if position == 0 && log_id.index % IDEMPOTENCY_EXPIRE_EVERY_LOG_ENTRIES == 0 {
            let before = cmd.time_ms.saturating_sub(IDEMPOTENCY_KEEP_MS);
            if let Err(e) = txn.expire_idempotency(before, IDEMPOTENCY_EXPIRE_BATCH_MAX) {
                // Same reasoning as a failed idempotency read: the node must not diverge.
                panic!("expiring idempotency outcomes: {e}");
            }
        }
        if matches!(outcome, Outcome::RevisionSealed { .. }) {
            self.pending_revision = Some(revision);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, ClusterName, CommandBody, ServerName, TaskName};

    fn proposal(changes: Vec<Change>) -> Proposal {
        let cmd = Command {
            actor: "test".into(),
            time_ms: 1,
            comment: String::new(),
            expected_revision: None,
            idempotency_key: None,
            body: CommandBody::Apply { changes },
        };
        Proposal { commands: vec![codec::encode(&cmd)] }
    }

    /// Apply, then wake: neither the published revision nor an agent's waker moves while the
    /// batch is only staged; both move once it is written (`applied`).
    #[test]
    fn watchers_are_woken_only_after_the_batch_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(roster_storage::open(&dir.path().join("db")).unwrap());
        let (mut machine, handle) = RosterMachine::new();
        machine.load(&store).unwrap();
        let a1 = AgentId::new("a1").unwrap();
        let (eu, rt1, billing) = (ClusterName::new("eu").unwrap(), ServerName::new("rt1").unwrap(), TaskName::new("billing").unwrap());
        let mut revision = handle.subscribe();
        let agent = handle.subscribe_agent(&a1);
        let log_id = LogId::new(openraft::CommittedLeaderId::new(1, 1), 1);
        let mut txn = store.offline_txn();
        machine.apply(
            &log_id,
            &proposal(vec![
                Change::RegisterAgent { id: a1.clone() },
                Change::AddServer { name: rt1.clone(), host: crate::domain::Host::new("h").unwrap(), port: 80, pool: None, scheme: None },
                Change::CreateCluster { name: eu.clone() },
                Change::AddAgentToCluster { cluster: eu.clone(), agent: a1.clone() },
                Change::SetServers { task: billing, cluster: eu, servers: vec![rt1] },
            ]),
            &mut txn,
        );
        assert!(!revision.has_changed().unwrap(), "the revision was published before its batch was written");
        assert!(!agent.has_changed().unwrap(), "an agent was woken before the batch was written");
        let membership = openraft::StoredMembership::default();
        store.offline_commit::<TypeConfig>(txn, &Some(log_id), &membership).unwrap();
        machine.applied();
        assert!(revision.has_changed().unwrap() && *revision.borrow_and_update() == 1);
        assert!(agent.has_changed().unwrap(), "the agent was not woken after the batch was written");
        assert!(store.history_get(1).unwrap().is_some());
    }

    /// Fold checkpoints are spaced by the configuration's size: a configuration growing with
    /// every revision is checkpointed less often as it grows (never O(state) per revision on
    /// average), they are written in the background with the state the apply had, and a
    /// restart picks up the spacing from the newest checkpoint.
    #[test]
    fn checkpoints_are_spaced_by_the_configurations_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(roster_storage::open(&dir.path().join("db")).unwrap());
        let (mut machine, handle) = RosterMachine::new();
        machine.load(&store).unwrap();
        let membership = openraft::StoredMembership::default();
        // Each revision registers two servers, so the state outgrows the revision count.
        let total = 40_000u64;
        for revision in 1..=total {
            let log_id = LogId::new(openraft::CommittedLeaderId::new(1, 1), revision);
            let host = crate::domain::Host::new("h").unwrap();
            let changes = (0..2)
                .map(|i| Change::AddServer { name: ServerName::new(format!("s{revision}-{i}")).unwrap(), host: host.clone(), port: 80, pool: None, scheme: None })
                .collect();
            let mut txn = store.offline_txn();
            machine.apply(&log_id, &proposal(changes), &mut txn);
            store.offline_commit::<TypeConfig>(txn, &Some(log_id), &membership).unwrap();
            machine.applied();
        }
        // Checkpoints are written in the background once their batch is: wait for the last.
        assert!(handle.wait_for_checkpoints(std::time::Duration::from_secs(60)), "the checkpoints were not written in 60 s");
        let mut at = Vec::new();
        let mut upto = total;
        while let Some((revision, _)) = store.checkpoint_at_or_before(upto).unwrap() {
            at.push(revision);
            if revision == 0 {
                break;
            }
            upto = revision - 1;
        }
        at.reverse();
        // 10,000 (the floor), then 20,000 items later, then 60,000 items later (past the run).
        assert_eq!(at, vec![10_000, 30_000], "checkpoints at {at:?}");
        let live = handle.read();
        assert_eq!((live.last_checkpoint, live.checkpoint_spacing), (30_000, 60_000));
        // The background fold wrote the state the apply had: folding on from the checkpoint
        // gives the live state and head.
        let (state, head) = fold_stored(&store, total).unwrap();
        assert!(state == live.state && head == live.head, "the fold from the checkpoint differs from the live state");
        drop(live);
        // A restart starts from the newest checkpoint and keeps the spacing of the state it loads.
        let (mut again, handle) = RosterMachine::new();
        again.load(&store).unwrap();
        let live = handle.read();
        assert_eq!((live.state.revision, live.last_checkpoint, live.checkpoint_spacing), (total, 30_000, 80_000));
    }
}
