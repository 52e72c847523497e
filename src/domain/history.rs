//! History records and their hash chain.
//!
//! Each record's hash covers the previous record's hash and the record's own content, so
//! editing, dropping or reordering any record breaks every later link. The hashed bytes are
//! canonical JSON, specified in `docs/history-format.md`, so programs that are not Roster can
//! check them; a record's hash is also its leaf hash in the Merkle tree ([`super::merkle`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use super::model::{Agent, AgentCluster, Event, Server, State};
use super::names::{AgentId, ClusterName, ServerName, TaskName};

/// A SHA-256 digest: hex in JSON, raw bytes in the binary codec.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// Lowercase hex, without allocating (hashes are written on every apply).
    fn hex(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        hex::encode_to_slice(self.0, &mut out).expect("64 hex digits for 32 bytes");
        out
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.hex()).expect("hex digits are ASCII"))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", hex::encode(&self.0[..6]))
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(std::str::from_utf8(&self.hex()).expect("hex digits are ASCII"))
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let mut out = [0u8; 32];
            hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
            Ok(Hash(out))
        } else {
            Ok(Hash(<[u8; 32]>::deserialize(d)?))
        }
    }
}

/// Everything a revision records except its hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBody {
    pub revision: u64,
    /// The Raft log id of the entry that produced this revision.
    pub log_term: u64,
    pub log_index: u64,
    pub time_ms: u64,
    pub actor: String,
    pub comment: String,
    pub changeset: Option<String>,
    pub idempotency_key: Option<String>,
    pub events: Vec<Event>,
}

/// The members a record's hash covers: the body's, `prev_hash` and `format`. Written out
/// rather than `#[serde(flatten)]`, which goes through a map with allocated keys on every
/// apply; the exhaustive destructuring below stops compiling when [`RecordBody`] gains a field.
struct Hashed<'a> {
    body: &'a RecordBody,
    prev_hash: &'a Hash,
}

impl Serialize for Hashed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let RecordBody { revision, log_term, log_index, time_ms, actor, comment, changeset, idempotency_key, events } = self.body;
        let mut st = s.serialize_struct("Record", 11)?;
        st.serialize_field("revision", revision)?;
        st.serialize_field("log_term", log_term)?;
        st.serialize_field("log_index", log_index)?;
        st.serialize_field("time_ms", time_ms)?;
        st.serialize_field("actor", actor)?;
        st.serialize_field("comment", comment)?;
        st.serialize_field("changeset", changeset)?;
        st.serialize_field("idempotency_key", idempotency_key)?;
        st.serialize_field("events", events)?;
        st.serialize_field("prev_hash", self.prev_hash)?;
        st.serialize_field("format", &HISTORY_FORMAT)?;
        st.end()
    }
}

/// One revision of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    pub body: RecordBody,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// The record format this build writes (`docs/history-format.md`).
pub const HISTORY_FORMAT: u64 = 2;

/// The domain of format-1 hashes, kept to recognise and upgrade an old history.
const HASH_DOMAIN_V1: &[u8] = b"roster-history-v1";

/// The RFC 9162 leaf prefix: a record's hash is its Merkle leaf hash.
const LEAF_PREFIX: u8 = 0x00;

impl HistoryRecord {
    /// Seals `body` onto the chain after `prev_hash`.
    pub fn seal(body: RecordBody, prev_hash: Hash) -> Self {
        let hash = Self::compute_hash(&body, &prev_hash);
        Self { body, prev_hash, hash }
    }

    /// The record bytes: the canonical JSON (RFC 8785) of the record without its `hash`.
    pub fn record_bytes(body: &RecordBody, prev_hash: &Hash) -> Vec<u8> {
        super::canonical::to_vec_of(&Hashed { body, prev_hash }).expect("record bodies hold integers only")
    }

    /// `SHA-256(0x00 || record bytes)`: the chain hash and the Merkle leaf hash.
    pub fn compute_hash(body: &RecordBody, prev_hash: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update([LEAF_PREFIX]);
        h.update(Self::record_bytes(body, prev_hash));
        Hash(h.finalize().into())
    }

    /// The format-1 hash (a binary encoding only this code can reproduce), for upgrades.
    pub fn compute_hash_v1(body: &RecordBody, prev_hash: &Hash) -> Hash {
        let mut h = Sha256::new();
        h.update(HASH_DOMAIN_V1);
        h.update(prev_hash.0);
        h.update(roster_codec::encode(body));
        Hash(h.finalize().into())
    }

    /// Whether the stored hash matches the body and `prev_hash`.
    pub fn hash_is_valid(&self) -> bool {
        Self::compute_hash(&self.body, &self.prev_hash) == self.hash
    }

    /// The record as one flat JSON object: the body's fields plus `format`, `prev_hash` and
    /// `hash`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.body).expect("record bodies are JSON-encodable");
        if let Some(o) = v.as_object_mut() {
            o.insert("format".into(), HISTORY_FORMAT.into());
            o.insert("prev_hash".into(), self.prev_hash.to_string().into());
            o.insert("hash".into(), self.hash.to_string().into());
        }
        v
    }

    /// Parses the flat JSON form written by [`HistoryRecord::to_json`]. A record of another
    /// format is refused: its hash cannot be checked.
    pub fn from_json(mut v: serde_json::Value) -> Result<Self, String> {
        let obj = v.as_object_mut().ok_or("a record must be a JSON object")?;
        match obj.remove("format") {
            Some(f) if f.as_u64() == Some(HISTORY_FORMAT) => {}
            Some(f) => return Err(format!("unknown record format {f} (this build knows format {HISTORY_FORMAT})")),
            None => {
                return Err(format!(
                    "the record has no format member: it was exported before format {HISTORY_FORMAT}; export it again from an upgraded cluster"
                ))
            }
        }
        let mut take_hash = |key: &str| -> Result<Hash, String> {
            let s = obj.remove(key).ok_or_else(|| format!("missing {key}"))?;
            serde_json::from_value(s).map_err(|e| format!("{key}: {e}"))
        };
        let prev_hash = take_hash("prev_hash")?;
        let hash = take_hash("hash")?;
        let body: RecordBody = serde_json::from_value(v).map_err(|e| e.to_string())?;
        Ok(Self { body, prev_hash, hash })
    }

    /// Whether any event touches `(kind, name)`.
    pub fn touches(&self, kind: &str, name: &str) -> bool {
        self.body.events.iter().any(|e| e.entities().iter().any(|(k, n)| *k == kind && *n == name))
    }
}

/// A deterministic digest of a state: the SHA-256 of its canonical encoding (all maps are
/// ordered), so equal states on any node give equal digests.
///
/// Versioned so that a digest never changes under an upgrade: while no failover-list entry
/// carries a priority or weight, the state is hashed in its first layout (`roster-state-v1`,
/// without the weights), as every earlier build did; otherwise in the current layout
/// (`roster-state-v2`).
pub fn state_digest(state: &State) -> Hash {
    let mut h = Sha256::new();
    if state.tasks.values().all(|t| t.configs.values().all(|c| c.weights.is_empty())) {
        h.update(b"roster-state-v1");
        h.update(roster_codec::encode(&StateV1::of(state)));
    } else {
        h.update(b"roster-state-v2");
        h.update(roster_codec::encode(state));
    }
    Hash(h.finalize().into())
}

/// [`State`] as it was laid out before failover lists had weights (for [`state_digest`]).
#[derive(Serialize)]
struct StateV1<'a> {
    revision: u64,
    servers: &'a BTreeMap<ServerName, Server>,
    agents: &'a BTreeMap<AgentId, Agent>,
    clusters: &'a BTreeMap<ClusterName, AgentCluster>,
    tasks: BTreeMap<&'a TaskName, BTreeMap<&'a ClusterName, ConfigV1<'a>>>,
}

#[derive(Serialize)]
struct ConfigV1<'a> {
    servers: &'a Vec<ServerName>,
    load_balancing: bool,
}

impl<'a> StateV1<'a> {
    fn of(s: &'a State) -> Self {
        let tasks = s
            .tasks
            .iter()
            .map(|(name, t)| {
                let configs = t
                    .configs
                    .iter()
                    .map(|(c, cfg)| (c, ConfigV1 { servers: &cfg.servers, load_balancing: cfg.load_balancing }))
                    .collect();
                (name, configs)
            })
            .collect();
        StateV1 { revision: s.revision, servers: &s.servers, agents: &s.agents, clusters: &s.clusters, tasks }
    }
}

/// Why a sequence of records does not form a valid history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("revision {found} follows revision {previous}: records are missing or out of order")]
    Gap { previous: u64, found: u64 },
    #[error("revision {revision}: its hash does not match its content")]
    BadHash { revision: u64 },
    #[error("revision {revision}: its previous-hash link does not match revision {}", revision - 1)]
    BrokenLink { revision: u64 },
}

/// Folds records in order while checking the hash chain: the shared core of restart, offline
/// replay and audit verification.
pub struct Replayer {
    pub state: State,
    pub head: Hash,
}

impl Replayer {
    pub fn new(state: State, head: Hash) -> Self {
        Self { state, head }
    }

    pub fn push(&mut self, record: &HistoryRecord) -> Result<(), ChainError> {
        let revision = record.body.revision;
        if revision != self.state.revision + 1 {
            return Err(ChainError::Gap { previous: self.state.revision, found: revision });
        }
        if record.prev_hash != self.head {
            return Err(ChainError::BrokenLink { revision });
        }
        if !record.hash_is_valid() {
            return Err(ChainError::BadHash { revision });
        }
        self.state.apply_record_events(revision, &record.body.events);
        self.head = record.hash;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClusterName, Event, ServerName, TaskName};

    fn record() -> HistoryRecord {
        let body = RecordBody {
            revision: 2,
            log_term: 3,
            log_index: 9,
            time_ms: 1_795_678_813_594,
            actor: "ops \"night\" \\ é".into(),
            comment: "line\nbreak".into(),
            changeset: Some("cs-9-0".into()),
            idempotency_key: None,
            events: vec![
                Event::ClusterCreated { name: ClusterName::new("eu").unwrap() },
                Event::ServerListSet {
                    task: TaskName::new("billing").unwrap(),
                    cluster: ClusterName::new("eu").unwrap(),
                    servers: vec![ServerName::new("rt1").unwrap(), ServerName::new("rt2").unwrap()],
                },
                Event::LoadBalancingSet { task: TaskName::new("billing").unwrap(), cluster: ClusterName::new("eu").unwrap(), enabled: true },
            ],
        };
        HistoryRecord::seal(body, Hash([0xab; 32]))
    }

    /// The hashed bytes are the canonical form of the exported record without its `hash`,
    /// exactly as docs/history-format.md tells a verifier to rebuild them.
    #[test]
    fn record_bytes_are_the_canonical_export_without_its_hash() {
        let r = record();
        let mut exported = r.to_json();
        exported.as_object_mut().unwrap().remove("hash");
        let bytes = HistoryRecord::record_bytes(&r.body, &r.prev_hash);
        assert_eq!(bytes, crate::domain::canonical::to_vec(&exported).unwrap());
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            concat!(
                r#"{"actor":"ops \"night\" \\ é","changeset":"cs-9-0","comment":"line\nbreak","#,
                r#""events":[{"cluster_created":{"name":"eu"}},"#,
                r#"{"server_list_set":{"cluster":"eu","servers":["rt1","rt2"],"task":"billing"}},"#,
                r#"{"load_balancing_set":{"cluster":"eu","enabled":true,"task":"billing"}}],"#,
                r#""format":2,"idempotency_key":null,"log_index":9,"log_term":3,"#,
                r#""prev_hash":"abababababababababababababababababababababababababababababababab","#,
                r#""revision":2,"time_ms":1795678813594}"#
            )
        );
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(HistoryRecord::record_bytes(&r.body, &r.prev_hash));
        assert_eq!(r.hash, Hash(h.finalize().into()));
        assert!(r.hash_is_valid());
        assert_eq!(HistoryRecord::from_json(r.to_json()).unwrap(), r);
    }
}
