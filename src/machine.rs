//! The Roster state machine application: executes committed commands against the live state,
//! seals history records onto the hash chain and writes everything through the storage
//! transaction. Shared read access for the API goes through [`MachineHandle`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use openraft::LogId;
use roster_raft::{Proposal, Reply, TypeConfig};
use roster_storage::{codec, Application, StateStore, StoreError, Txn};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::domain::command::check_expected;
use crate::domain::oplog::{self, EventSettings, Level, OpEvent, EVENT_MESSAGE_MAX_LEN, EVENT_RETENTION_MAX};
use crate::domain::tokens::{TokenName, TokenRecord, TOKENS_MAX};
use crate::domain::AgentId;
use crate::projection::{self, AgentWakers};
use crate::domain::{
    decide, Change, Command, CommandBody, Hash, HistoryRecord, Outcome, RecordBody, RejectCode,
    Rejection, Replayer, State, OPEN_CHANGESETS_MAX, CHANGES_PER_COMMAND_MAX,
};

/// A checkpoint of the folded state is written every this many revisions, so a restart or a
/// state-at-revision query folds at most this many records.
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

/// A staged set of changes ("Apply All Changes"), kept in the replicated state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changeset {
    pub id: String,
    pub description: String,
    pub created_by: String,
    pub created_ms: u64,
    /// The revision when the changeset was created.
    pub base_revision: u64,
    pub changes: Vec<Change>,
}

/// A command that was rejected, kept for audit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionRecord {
    pub log_index: u64,
    pub time_ms: u64,
    pub actor: String,
    pub comment: String,
    pub rejection: Rejection,
}

/// Stored per idempotency key: what the command was, and what it got.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct IdempotencyEntry {
    fingerprint: Hash,
    outcome: Outcome,
}

/// A persisted fold checkpoint.
#[derive(Deserialize)]
struct Checkpoint {
    state: State,
    head: Hash,
}

/// The same encoding as [`Checkpoint`], written without cloning the state.
#[derive(Serialize)]
struct CheckpointRef<'a> {
    state: &'a State,
    head: &'a Hash,
}

/// The live, applied state of this node.
#[derive(Clone, Debug, Default)]
pub struct Live {
    pub state: State,
    /// Hash of the last history record (all zeros before the first).
    pub head: Hash,
    pub changesets: BTreeMap<String, Changeset>,
    /// Sequence number of the next operational event.
    pub event_seq: u64,
    pub event_settings: EventSettings,
    /// Tokens created through the API, by name.
    pub tokens: BTreeMap<TokenName, TokenRecord>,
    /// Token name by the hash of its secret.
    pub token_hashes: HashMap<[u8; 32], TokenName>,
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
    /// Per-agent change tracking; updated under the `live` write lock.
    projection: Mutex<AgentWakers>,
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

    /// Notified with the revision after every applied revision.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.revision_tx.subscribe()
    }

    /// Notified with the revision at which `agent`'s configuration last changed.
    pub fn subscribe_agent(&self, agent: &AgentId) -> watch::Receiver<u64> {
        self.shared.projection.lock().expect("projection lock poisoned").subscribe(agent)
    }

    /// The revision at which `agent`'s configuration last changed on this node.
    pub fn agent_changed_at(&self, agent: &AgentId) -> u64 {
        *self.shared.projection.lock().expect("projection lock poisoned").subscribe(agent).borrow()
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
}

impl RosterMachine {
    pub fn new() -> (Self, MachineHandle) {
        let (revision_tx, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            live: RwLock::new(Live::default()),
            revision_tx,
            projection: Mutex::new(AgentWakers::default()),
        });
        (Self { shared: shared.clone(), pending_agents: BTreeSet::new(), pending_revision: None }, MachineHandle { shared })
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Invalid(format!("history: {e}"))
}

/// Folds the stored history from its newest checkpoint at or before `upto` (inclusive).
pub fn fold_stored(store: &StateStore, upto: u64) -> Result<(State, Hash), StoreError> {
    let mut replayer = match store.checkpoint_at_or_before(upto)? {
        Some((_, bytes)) => {
            let cp: Checkpoint = codec::decode(&bytes).map_err(corrupt)?;
            Replayer::new(cp.state, cp.head)
        }
        None => Replayer::new(State::default(), Hash::default()),
    };
    let from = replayer.state.revision + 1;
    crate::reader::Reader::new(store.clone()).records(from, |record| {
        if record.body.revision > upto {
            return Ok(false);
        }
        replayer.push(&record).map_err(corrupt)?;
        Ok(true)
    })?;
    Ok((replayer.state, replayer.head))
}

/// The fingerprint that tells a retry (same command) from a reuse of a key for another one.
fn fingerprint(cmd: &Command) -> Hash {
    let mut h = Sha256::new();
    h.update(codec::encode(&(&cmd.actor, &cmd.expected_revision, &cmd.body)));
    Hash(h.finalize().into())
}

impl Application<TypeConfig> for RosterMachine {
    fn load(&mut self, store: &StateStore) -> Result<(), StoreError> {
        let (state, head) = fold_stored(store, u64::MAX)?;
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
        self.shared.projection.lock().expect("projection lock poisoned").rebuild(&state);
        *live = Live { state, head, changesets, event_seq, event_settings, ..Live::default() };
        live.set_tokens(tokens);
        drop(live);
        self.shared.revision_tx.send_replace(revision);
        Ok(())
    }

    /// The batch is written: wake the agents whose configuration changed and publish the new
    /// revision, so a watcher woken at revision N can always read history N.
    fn applied(&mut self) {
        let agents = std::mem::take(&mut self.pending_agents);
        if !agents.is_empty() {
            let live = self.shared.live.read().expect("state machine lock poisoned");
            self.shared.projection.lock().expect("projection lock poisoned").update(&live.state, &agents);
        }
        if let Some(revision) = self.pending_revision.take() {
            self.shared.revision_tx.send_replace(revision);
        }
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
        let outcome = execute(&mut live, log_id, position, &cmd, txn, &mut agents);
        let revision = live.state.revision;
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

/// Records an operational event if its level passes the settings; returns its sequence number.
fn record_event(live: &mut Live, txn: &mut Txn<'_>, level: Level, kind: &str, message: String, actor: &str, time_ms: u64) -> Option<u64> {
    if level < live.event_settings.min_level {
        return None;
    }
    let seq = live.event_seq;
    let ev = OpEvent { seq, time_ms, level, kind: kind.to_string(), message, actor: actor.to_string(), revision: live.state.revision };
    txn.put_event(seq, &codec::encode(&ev), live.event_settings.retention);
    live.event_seq += 1;
    Some(seq)
}

/// A changeset's id: derived from the Raft entry that created it (and the command's position
/// in that entry), so every node derives the same id.
fn changeset_id(log_index: u64, position: usize) -> String {
    if position == 0 {
        format!("cs-{log_index}")
    } else {
        format!("cs-{log_index}-{position}")
    }
}

/// Runs one command against the live state. Pure apart from the writes into `txn`.
/// `agents` collects the agents whose configuration the command may have changed.
fn execute(
    live: &mut Live,
    log_id: &LogId<u64>,
    position: usize,
    cmd: &Command,
    txn: &mut Txn<'_>,
    agents: &mut BTreeSet<AgentId>,
) -> Outcome {
    let result = match &cmd.body {
        CommandBody::Apply { changes } => check_expected(&live.state, cmd.expected_revision)
            .and_then(|()| decide(&live.state, changes, cmd.time_ms))
            .map(|events| seal_revision(live, log_id, cmd, None, events, txn, agents)),
        CommandBody::CreateChangeset { description } => {
            if live.changesets.len() >= OPEN_CHANGESETS_MAX {
                Err(Rejection::new(
                    RejectCode::LimitExceeded,
                    format!("{OPEN_CHANGESETS_MAX} changesets are already staged; apply or discard some"),
                ))
            } else {
                let cs = Changeset {
                    id: changeset_id(log_id.index, position),
                    description: description.clone(),
                    created_by: cmd.actor.clone(),
                    created_ms: cmd.time_ms,
                    base_revision: live.state.revision,
                    changes: Vec::new(),
                };
                txn.put_changeset(cs.id.as_bytes(), &codec::encode(&cs));
                let id = cs.id.clone();
                live.changesets.insert(id.clone(), cs);
                Ok(Outcome::ChangesetCreated { id })
            }
        }
        CommandBody::AddToChangeset { id, changes } => match live.changesets.get_mut(id) {
            None => Err(Rejection::new(RejectCode::NotFound, format!("changeset {id} does not exist"))),
            Some(_) if changes.is_empty() => Err(Rejection::new(RejectCode::Invalid, "no changes given")),
            Some(cs) if cs.changes.len() + changes.len() > CHANGES_PER_COMMAND_MAX => Err(Rejection::new(
                RejectCode::LimitExceeded,
                format!("a changeset holds at most {CHANGES_PER_COMMAND_MAX} changes"),
            )),
            Some(cs) => {
                cs.changes.extend(changes.iter().cloned());
                txn.put_changeset(id.as_bytes(), &codec::encode(&*cs));
                Ok(Outcome::ChangesetUpdated { id: id.clone(), changes: cs.changes.len() as u32 })
            }
        },
        CommandBody::ApplyChangeset { id } => match live.changesets.get(id) {
            None => Err(Rejection::new(RejectCode::NotFound, format!("changeset {id} does not exist"))),
            Some(cs) => {
                let changes = cs.changes.clone();
                check_expected(&live.state, cmd.expected_revision)
                    .and_then(|()| decide(&live.state, &changes, cmd.time_ms))
                    .map(|events| {
                        txn.delete_changeset(id.as_bytes());
                        live.changesets.remove(id);
                        seal_revision(live, log_id, cmd, Some(id.clone()), events, txn, agents)
                    })
            }
        },
        CommandBody::DiscardChangeset { id } => match live.changesets.remove(id) {
            None => Err(Rejection::new(RejectCode::NotFound, format!("changeset {id} does not exist"))),
            Some(_) => {
                txn.delete_changeset(id.as_bytes());
                Ok(Outcome::ChangesetDiscarded { id: id.clone() })
            }
        },
        CommandBody::RecordEvent { level, kind, message } => {
            let valid_kind = !kind.is_empty() && kind.len() <= 64 && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            if !valid_kind {
                Err(Rejection::new(RejectCode::Invalid, "event kind must be 1 to 64 of a-z and '_'"))
            } else if message.len() > EVENT_MESSAGE_MAX_LEN {
                Err(Rejection::new(RejectCode::Invalid, format!("event message longer than {EVENT_MESSAGE_MAX_LEN} bytes")))
            } else {
                let seq = record_event(live, txn, *level, kind, message.clone(), &cmd.actor, cmd.time_ms);
                Ok(Outcome::EventRecorded { seq })
            }
        }
        CommandBody::SetEventSettings { settings } => {
            if settings.retention == 0 || settings.retention > EVENT_RETENTION_MAX {
                Err(Rejection::new(RejectCode::Invalid, format!("retention must be 1 to {EVENT_RETENTION_MAX} events")))
            } else {
                live.event_settings = *settings;
                txn.put_event_settings(&codec::encode(settings));
                if live.event_seq > settings.retention {
                    txn.trim_events(live.event_seq - settings.retention);
                }
                Ok(Outcome::EventSettingsSet)
            }
        }
        CommandBody::CreateToken { token } => {
            if let Err(m) = token.check() {
                Err(Rejection::new(RejectCode::Invalid, m))
            } else if live.tokens.contains_key(&token.name) {
                Err(Rejection::new(RejectCode::AlreadyExists, format!("token {} already exists", token.name)))
            } else if live.token_hashes.contains_key(&token.hash) {
                Err(Rejection::new(RejectCode::AlreadyExists, "a token with this secret already exists"))
            } else if live.tokens.len() >= TOKENS_MAX {
                Err(Rejection::new(RejectCode::LimitExceeded, format!("at most {TOKENS_MAX} tokens")))
            } else {
                let mut tokens = live.tokens.clone();
                tokens.insert(token.name.clone(), token.clone());
                txn.put_setting(SETTING_TOKENS, &codec::encode(&tokens));
                live.set_tokens(tokens);
                let msg = format!("token {} ({}) created", token.name, token.role);
                record_event(live, txn, Level::Info, "token_created", msg, &cmd.actor, cmd.time_ms);
                Ok(Outcome::TokenCreated { name: token.name.to_string() })
            }
        }
        CommandBody::RevokeToken { name } => {
            if !live.tokens.contains_key(name) {
                Err(Rejection::new(RejectCode::NotFound, format!("token {name} does not exist")))
            } else {
                let mut tokens = live.tokens.clone();
                tokens.remove(name);
                txn.put_setting(SETTING_TOKENS, &codec::encode(&tokens));
                live.set_tokens(tokens);
                record_event(live, txn, Level::Info, "token_revoked", format!("token {name} revoked"), &cmd.actor, cmd.time_ms);
                Ok(Outcome::TokenRevoked { name: name.to_string() })
            }
        }
    };
    result.unwrap_or_else(Outcome::Rejected)
}

/// Seals a new revision with `events`, folds it into the live state and stages its writes.
fn seal_revision(
    live: &mut Live,
    log_id: &LogId<u64>,
    cmd: &Command,
    changeset: Option<String>,
    events: Vec<crate::domain::Event>,
    txn: &mut Txn<'_>,
    agents: &mut BTreeSet<AgentId>,
) -> Outcome {
    let revision = live.state.revision + 1;
    projection::candidates(&live.state, &events, agents);
    let body = RecordBody {
        revision,
        log_term: log_id.leader_id.term,
        log_index: log_id.index,
        time_ms: cmd.time_ms,
        actor: cmd.actor.clone(),
        comment: cmd.comment.clone(),
        changeset,
        idempotency_key: cmd.idempotency_key.clone(),
        events,
    };
    let implied = oplog::implied_by(&body.events, body.changeset.as_deref(), revision);
    let record = HistoryRecord::seal(body, live.head);
    txn.put_history(revision, &codec::encode(&record));
    live.state.apply_record_events(revision, &record.body.events);
    projection::candidates(&live.state, &record.body.events, agents);
    live.head = record.hash;
    for (level, kind, message) in implied {
        record_event(live, txn, level, kind, message, &cmd.actor, cmd.time_ms);
    }
    if revision % CHECKPOINT_EVERY_REVISIONS == 0 {
        let cp = CheckpointRef { state: &live.state, head: &live.head };
        txn.put_checkpoint(revision, &codec::encode(&cp));
    }
    Outcome::RevisionSealed { revision }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, ClusterName, ServerName, TaskName};

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
}
