//! Staged changesets ("Apply All Changes"): what one holds, and the rules for staging into it.
//! Applying a changeset is `decide` over its changes, like any other write.

use serde::{Deserialize, Serialize};

use super::command::{Change, RejectCode, Rejection};
use super::names::{CHANGES_PER_COMMAND_MAX, OPEN_CHANGESETS_MAX};

/// A staged set of changes, kept in the replicated state until applied or discarded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Changeset {
    pub id: String,
    pub description: String,
    pub created_by: String,
    pub created_ms: u64,
    /// The revision when the changeset was created.
    pub base_revision: u64,
    pub changes: Vec<Change>,
}

/// A changeset's id: derived from the Raft entry that created it (and the command's position
/// in that entry), so every node derives the same id.
pub fn changeset_id(log_index: u64, position: usize) -> String {
    if position == 0 {
        format!("cs-{log_index}")
    } else {
        format!("cs-{log_index}-{position}")
    }
}

pub fn not_found(id: &str) -> Rejection {
    Rejection::new(RejectCode::NotFound, format!("changeset {id} does not exist"))
}

/// Whether another changeset may be opened while `open` are staged.
pub fn check_create(open: usize) -> Result<(), Rejection> {
    if open >= OPEN_CHANGESETS_MAX {
        return Err(Rejection::new(
            RejectCode::LimitExceeded,
            format!("{OPEN_CHANGESETS_MAX} changesets are already staged; apply or discard some"),
        ));
    }
    Ok(())
}

/// Whether `changes` may be staged into `cs`.
pub fn check_add(cs: &Changeset, changes: &[Change]) -> Result<(), Rejection> {
    if changes.is_empty() {
        return Err(Rejection::new(RejectCode::Invalid, "no changes given"));
    }
    if cs.changes.len() + changes.len() > CHANGES_PER_COMMAND_MAX {
        return Err(Rejection::new(
            RejectCode::LimitExceeded,
            format!("a changeset holds at most {CHANGES_PER_COMMAND_MAX} changes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::oplog::{check_event, check_settings, EventSettings, Level, EVENT_KIND_MAX_LEN, EVENT_MESSAGE_MAX_LEN, EVENT_RETENTION_MAX};
    use crate::domain::tokens::{check_create as token_create, check_revoke, Role, TokenName, TokenRecord};
    use crate::domain::ServerName;
    use std::collections::BTreeMap;

    fn code<T>(r: Result<T, Rejection>) -> Option<RejectCode> {
        r.err().map(|e| e.code)
    }

    fn change() -> Change {
        Change::DisableServer { name: ServerName::new("s1").unwrap() }
    }

    #[test]
    fn staging_rules() {
        assert_eq!(code(check_create(0)), None);
        assert_eq!(code(check_create(OPEN_CHANGESETS_MAX - 1)), None);
        assert_eq!(code(check_create(OPEN_CHANGESETS_MAX)), Some(RejectCode::LimitExceeded));
        let mut cs = Changeset { id: changeset_id(7, 0), description: String::new(), created_by: "a".into(), created_ms: 0, base_revision: 0, changes: vec![] };
        assert_eq!(cs.id, "cs-7");
        assert_eq!(changeset_id(7, 2), "cs-7-2");
        assert_eq!(code(check_add(&cs, &[])), Some(RejectCode::Invalid));
        assert_eq!(code(check_add(&cs, &[change()])), None);
        cs.changes = vec![change(); CHANGES_PER_COMMAND_MAX];
        assert_eq!(code(check_add(&cs, &[change()])), Some(RejectCode::LimitExceeded));
    }

    #[test]
    fn event_rules() {
        assert_eq!(code(check_event("server_failed", "m")), None);
        for bad in ["", "Upper", "sp ace", "dash-ed"] {
            assert_eq!(code(check_event(bad, "m")), Some(RejectCode::Invalid), "{bad:?}");
        }
        assert_eq!(code(check_event(&"k".repeat(EVENT_KIND_MAX_LEN), "m")), None);
        assert_eq!(code(check_event(&"k".repeat(EVENT_KIND_MAX_LEN + 1), "m")), Some(RejectCode::Invalid));
        assert_eq!(code(check_event("k", &"m".repeat(EVENT_MESSAGE_MAX_LEN + 1))), Some(RejectCode::Invalid));
        let settings = |retention| EventSettings { min_level: Level::Info, retention };
        assert_eq!(code(check_settings(&settings(1))), None);
        assert_eq!(code(check_settings(&settings(0))), Some(RejectCode::Invalid));
        assert_eq!(code(check_settings(&settings(EVENT_RETENTION_MAX + 1))), Some(RejectCode::Invalid));
    }

    #[test]
    fn token_rules() {
        let token = |name: &str, role, agent: Option<&str>| TokenRecord {
            name: TokenName::new(name).unwrap(),
            role,
            agent: agent.map(|a| crate::domain::AgentId::new(a).unwrap()),
            hash: [1; 32],
            created_by: "admin".into(),
            created_ms: 0,
        };
        let mut table = BTreeMap::new();
        let ops = token("ops", Role::Operator, None);
        assert_eq!(code(token_create(&table, false, &ops)), None);
        assert_eq!(code(token_create(&table, true, &ops)), Some(RejectCode::AlreadyExists));
        assert_eq!(code(token_create(&table, false, &token("a", Role::Agent, None))), Some(RejectCode::Invalid));
        assert_eq!(code(token_create(&table, false, &token("v", Role::Viewer, Some("pc1")))), Some(RejectCode::Invalid));
        table.insert(ops.name.clone(), ops.clone());
        assert_eq!(code(token_create(&table, false, &ops)), Some(RejectCode::AlreadyExists));
        assert_eq!(code(check_revoke(&table, &ops.name)), None);
        assert_eq!(code(check_revoke(&table, &TokenName::new("nobody").unwrap())), Some(RejectCode::NotFound));
    }
}
