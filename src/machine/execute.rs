//! Executing one decoded command against the live state: the domain's rules decide, this
//! module turns their answer into revisions, changesets, events and token-table writes.

use std::collections::BTreeSet;

use openraft::LogId;
use roster_storage::{codec, Txn};

use crate::domain::changeset::{self, changeset_id, Changeset};
use crate::domain::command::check_expected;
use crate::domain::oplog::{self, Level, OpEvent};
use crate::domain::{tokens, decide_mut, AgentId, Command, CommandBody, HistoryRecord, Outcome, RecordBody};
use crate::projection;

use super::{checkpoint_spacing, Live, CHECKPOINT_EVERY_REVISIONS, SETTING_TOKENS};

/// Records an operational event if its level passes the settings; returns its sequence number.
pub(super) fn record_event(live: &mut Live, txn: &mut Txn<'_>, level: Level, kind: &str, message: String, actor: &str, time_ms: u64) -> Option<u64> {
    if level < live.event_settings.min_level {
        return None;
    }
    let seq = live.event_seq;
    let ev = OpEvent { seq, time_ms, level, kind: kind.to_string(), message, actor: actor.to_string(), revision: live.state.revision };
    txn.put_event(seq, &codec::encode(&ev), live.event_settings.retention);
    live.event_seq += 1;
    Some(seq)
}

/// Runs one command against the live state. Pure apart from the writes into `txn`.
/// `agents` collects the agents whose configuration the command may have changed.
pub(super) fn execute(
    live: &mut Live,
    log_id: &LogId<u64>,
    position: usize,
    cmd: &Command,
    txn: &mut Txn<'_>,
    agents: &mut BTreeSet<AgentId>,
) -> Outcome {
    let result = match &cmd.body {
        CommandBody::Apply { changes } => check_expected(&live.state, cmd.expected_revision)
            .and_then(|()| decide_mut(&mut live.state, changes, cmd.time_ms))
            .map(|events| seal_revision(live, log_id, cmd, None, events, txn, agents)),
        CommandBody::CreateChangeset { description } => changeset::check_create(live.changesets.len()).map(|()| {
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
            Outcome::ChangesetCreated { id }
        }),
        CommandBody::AddToChangeset { id, changes } => match live.changesets.get_mut(id) {
            None => Err(changeset::not_found(id)),
            Some(cs) => changeset::check_add(cs, changes).map(|()| {
                cs.changes.extend(changes.iter().cloned());
                txn.put_changeset(id.as_bytes(), &codec::encode(&*cs));
                Outcome::ChangesetUpdated { id: id.clone(), changes: cs.changes.len() as u32 }
            }),
        },
        CommandBody::ApplyChangeset { id } => match live.changesets.get(id) {
            None => Err(changeset::not_found(id)),
            Some(cs) => {
                let changes = cs.changes.clone();
                check_expected(&live.state, cmd.expected_revision)
                    .and_then(|()| decide_mut(&mut live.state, &changes, cmd.time_ms))
                    .map(|events| {
                        txn.delete_changeset(id.as_bytes());
                        live.changesets.remove(id);
                        seal_revision(live, log_id, cmd, Some(id.clone()), events, txn, agents)
                    })
            }
        },
        CommandBody::DiscardChangeset { id } => match live.changesets.remove(id) {
            None => Err(changeset::not_found(id)),
            Some(_) => {
                txn.delete_changeset(id.as_bytes());
                Ok(Outcome::ChangesetDiscarded { id: id.clone() })
            }
        },
        CommandBody::RecordEvent { level, kind, message } => oplog::check_event(kind, message).map(|()| {
            let seq = record_event(live, txn, *level, kind, message.clone(), &cmd.actor, cmd.time_ms);
            Outcome::EventRecorded { seq }
        }),
        CommandBody::SetEventSettings { settings } => oplog::check_settings(settings).map(|()| {
            live.event_settings = *settings;
            txn.put_event_settings(&codec::encode(settings));
            if live.event_seq > settings.retention {
                txn.trim_events(live.event_seq - settings.retention);
            }
            Outcome::EventSettingsSet
        }),
        CommandBody::CreateToken { token } => {
            tokens::check_create(&live.tokens, live.token_hashes.contains_key(&token.hash), token).map(|()| {
                let mut table = live.tokens.clone();
                table.insert(token.name.clone(), token.clone());
                txn.put_setting(SETTING_TOKENS, &codec::encode(&table));
                live.set_tokens(table);
                let msg = format!("token {} ({}) created", token.name, token.role);
                record_event(live, txn, Level::Info, "token_created", msg, &cmd.actor, cmd.time_ms);
                Outcome::TokenCreated { name: token.name.to_string() }
            })
        }
        CommandBody::RevokeToken { name } => tokens::check_revoke(&live.tokens, name).map(|()| {
            let mut table = live.tokens.clone();
            table.remove(name);
            txn.put_setting(SETTING_TOKENS, &codec::encode(&table));
            live.set_tokens(table);
            record_event(live, txn, Level::Info, "token_revoked", format!("token {name} revoked"), &cmd.actor, cmd.time_ms);
            Outcome::TokenRevoked { name: name.to_string() }
        }),
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
    debug_assert_eq!(live.tree.size() + 1, revision, "the history tree lags the history");
    for (level, index, hash) in live.tree.push(record.hash) {
        txn.put_tree_node(level, index, &hash.0);
    }
    live.state.apply_record_events(revision, &record.body.events);
    projection::candidates(&live.state, &record.body.events, agents);
    live.head = record.hash;
    for (level, kind, message) in implied {
        record_event(live, txn, level, kind, message, &cmd.actor, cmd.time_ms);
    }
    if revision - live.last_checkpoint >= live.checkpoint_spacing.max(CHECKPOINT_EVERY_REVISIONS) {
        // Due: built off the apply path once this batch is written (`checkpoints`).
        live.last_checkpoint = revision;
        live.checkpoint_spacing = checkpoint_spacing(&live.state);
    }
    Outcome::RevisionSealed { revision }
}
