//! API tokens and roles. Only a token's SHA-256 hash is ever stored or replicated; the secret
//! is shown once, when the token is created.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::names::TokenName;
use super::command::{RejectCode, Rejection};
use super::AgentId;

/// Most tokens created through the API (tokens from a node's file are not counted).
pub const TOKENS_MAX: usize = 1_000;


/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including cluster membership, tokens and event settings.
    Admin,
    /// Configuration changes and changesets, and every read.
    Operator,
    /// Reads everything, including history and export; no writes.
    Auditor,
    /// Only its own agent endpoints.
    Agent,
    /// Reads the current configuration.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::Operator, Role::Auditor, Role::Agent, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Agent => "agent",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token as the cluster knows it: identity, role and the hash of its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: TokenName,
    pub role: Role,
    /// For the agent role: the one agent this token speaks for.
    pub agent: Option<AgentId>,
    /// SHA-256 of the secret.
    pub hash: [u8; 32],
    pub created_by: String,
    pub created_ms: u64,
}

impl TokenRecord {
    /// An agent token must name its agent; no other role may.
    pub fn check(&self) -> Result<(), String> {
        match (self.role, &self.agent) {
            (Role::Agent, None) => Err("an agent token must name its agent".into()),
            (Role::Agent, Some(_)) | (_, None) => Ok(()),
            (r, Some(_)) => Err(format!("only agent tokens name an agent, not {r} tokens")),
        }
    }
}

/// Whether `token` may join the cluster's `tokens`; `secret_in_use` says whether a token with
/// the same secret hash already exists.
pub fn check_create(tokens: &BTreeMap<TokenName, TokenRecord>, secret_in_use: bool, token: &TokenRecord) -> Result<(), Rejection> {
    token.check().map_err(|m| Rejection::new(RejectCode::Invalid, m))?;
    if tokens.contains_key(&token.name) {
        return Err(Rejection::new(RejectCode::AlreadyExists, format!("token {} already exists", token.name)));
    }
    if secret_in_use {
        return Err(Rejection::new(RejectCode::AlreadyExists, "a token with this secret already exists"));
    }
    if tokens.len() >= TOKENS_MAX {
        return Err(Rejection::new(RejectCode::LimitExceeded, format!("at most {TOKENS_MAX} tokens")));
    }
    Ok(())
}

/// Whether the token `name` may be revoked.
pub fn check_revoke(tokens: &BTreeMap<TokenName, TokenRecord>, name: &TokenName) -> Result<(), Rejection> {
    if !tokens.contains_key(name) {
        return Err(Rejection::new(RejectCode::NotFound, format!("token {name} does not exist")));
    }
    Ok(())
}

/// SHA-256 of a token secret.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes()).into()
}
