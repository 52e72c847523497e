//! Who may call what: bearer tokens (from a node's token file or created through the API,
//! both kept only as SHA-256 hashes), roles, and the per-route access check.
//!
//! Every route of the API is declared with an [`Access`] rule (see `api::route_table`); the
//! check runs before the handler, so an unauthenticated request gets 401 and a request with
//! the wrong role 403 before anything is parsed. The authenticated token's name becomes the
//! actor of every write made with it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::{FromRequestParts, RawPathParams, Request};

use crate::domain::tokens::{hash_secret, Role, TokenName, TokenRecord};
use crate::domain::AgentId;
use crate::machine::MachineHandle;
use crate::session::{Session, SessionKey};

/// The rule a route is declared with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials (health checks).
    Open,
    /// `/metrics`: open with `--metrics-public`, otherwise like [`READ_CONFIG`].
    Metrics,
    /// A token with one of these roles.
    Roles(&'static [Role]),
    /// An admin token, or the agent token of the agent named by the `{id}` path parameter.
    AgentSelf,
    /// Another node of the cluster (the cluster secret).
    Peer,
}

/// Reading the current configuration.
pub const READ_CONFIG: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor, Role::Viewer];
/// Reading history, rejections, events and past states.
pub const READ_AUDIT: &[Role] = &[Role::Admin, Role::Operator, Role::Auditor];
/// Changing configuration and changesets.
pub const WRITE_CONFIG: &[Role] = &[Role::Admin, Role::Operator];
/// Cluster membership, tokens, event settings.
pub const ADMIN: &[Role] = &[Role::Admin];
/// Any token at all.
pub const ANY_ROLE: &[Role] = &Role::ALL;

impl Access {
    /// Whether `role` passes this rule (for [`Access::AgentSelf`]: for some agent).
    pub fn allows_role(self, role: Role, metrics_public: bool) -> bool {
        match self {
            Access::Open => true,
            Access::Metrics => metrics_public || READ_CONFIG.contains(&role),
            Access::Roles(roles) => roles.contains(&role),
            Access::AgentSelf => matches!(role, Role::Admin | Role::Agent),
            Access::Peer => false,
        }
    }
}

/// The authenticated caller of a request, available to handlers as a request extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub role: Role,
    pub agent: Option<AgentId>,
}

/// Authentication settings and the token file of this node.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<AuthInner>,
}

struct AuthInner {
    /// Off only in the explicitly insecure mode.
    enabled: bool,
    metrics_public: bool,
    cluster_secret: Option<String>,
    file_tokens: HashMap<[u8; 32], TokenRecord>,
    machine: MachineHandle,
    /// Signs console sessions and CSRF tokens.
    session_key: SessionKey,
}

impl Auth {
    /// No authentication at all (`--insecure`).
    pub fn disabled(machine: MachineHandle) -> Self {
        Self {
            inner: Arc::new(AuthInner {
                enabled: false,
                metrics_public: true,
                cluster_secret: None,
                file_tokens: HashMap::new(),
                machine,
                session_key: SessionKey::random(),
            }),
        }
    }

    pub fn enabled(machine: MachineHandle, file_tokens: Vec<TokenRecord>, cluster_secret: String, metrics_public: bool) -> Self {
        let file_tokens = file_tokens.into_iter().map(|t| (t.hash, t)).collect();
        Self {
            inner: Arc::new(AuthInner {
                enabled: true,
                metrics_public,
                session_key: SessionKey::from_cluster_secret(&cluster_secret),
                cluster_secret: Some(cluster_secret),
                file_tokens,
                machine,
            }),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// Whether a token of this name comes from the node's token file.
    pub fn file_token_named(&self, name: &TokenName) -> bool {
        self.inner.file_tokens.values().any(|t| &t.name == name)
    }

    /// Tokens from the node's token file.
    pub fn file_tokens(&self) -> Vec<TokenRecord> {
        let mut v: Vec<_> = self.inner.file_tokens.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// The key console sessions and CSRF tokens are signed with.
    pub fn session_key(&self) -> &SessionKey {
        &self.inner.session_key
    }

    /// The token a secret belongs to (console sign-in): its identity and its secret's hash.
    pub fn user_for_secret(&self, secret: &str) -> Option<(Identity, [u8; 32])> {
        let hash = hash_secret(secret);
        match self.resolve(secret)? {
            Principal::User(id) => Some((id, hash)),
            Principal::Peer => None,
        }
    }

    /// The identity a console session stands for, while its token exists with the same secret.
    pub fn user_for_session(&self, session: &Session) -> Option<Identity> {
        let identity = |t: &TokenRecord| Identity { name: t.name.to_string(), role: t.role, agent: t.agent.clone() };
        if let Some(t) = self.inner.file_tokens.values().find(|t| t.name.as_str() == session.name && session.matches(&t.hash)) {
            return Some(identity(t));
        }
        let live = self.inner.machine.read();
        let t = live.tokens.values().find(|t| t.name.as_str() == session.name && session.matches(&t.hash))?;
        Some(identity(t))
    }

    /// Who presents `secret`: another node, a token's identity, or nobody known.
    fn resolve(&self, secret: &str) -> Option<Principal> {
        if let Some(cs) = &self.inner.cluster_secret {
            if roster_raft::transport::secrets_equal(secret.as_bytes(), cs.as_bytes()) {
                return Some(Principal::Peer);
            }
        }
        let hash = hash_secret(secret);
        let identity = |t: &TokenRecord| Identity { name: t.name.to_string(), role: t.role, agent: t.agent.clone() };
        if let Some(t) = self.inner.file_tokens.get(&hash) {
            return Some(Principal::User(identity(t)));
        }
        let live = self.inner.machine.read();
        live.token_by_hash(&hash).map(|t| Principal::User(identity(t)))
    }
}

enum Principal {
    Peer,
    User(Identity),
}

/// Why a request is refused before its handler runs. The API turns it into its JSON error
/// (401 with a `WWW-Authenticate` challenge, 403, or 400); this module knows nothing of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, or one that is unknown or revoked (401).
    Unauthenticated(String),
    /// A known caller whose role may not use the route (403).
    Forbidden(String),
    /// The credentials themselves are malformed, e.g. given twice (400).
    Malformed(String),
}

fn unauthenticated(message: &str) -> Denied {
    Denied::Unauthenticated(message.to_string())
}

fn forbidden(message: String) -> Denied {
    Denied::Forbidden(message)
}

/// The access check run before a route's handler (installed by `api::router`): the request
/// to pass on, with the caller's [`Identity`] attached, or the 401/403 answer.
pub async fn authorize(auth: &Auth, access: Access, req: Request) -> Result<Request, Denied> {
    if !auth.inner.enabled || access == Access::Open || (access == Access::Metrics && auth.inner.metrics_public) {
        return Ok(req);
    }
    if req.headers().get_all(axum::http::header::AUTHORIZATION).iter().nth(1).is_some() {
        return Err(Denied::Malformed("the request carries more than one Authorization header".into()));
    }
    let Some(secret) = roster_raft::transport::bearer(req.headers()) else {
        return Err(unauthenticated("this route needs a bearer token (Authorization: Bearer ...)"));
    };
    let principal = match auth.resolve(secret) {
        Some(p) => p,
        None => return Err(unauthenticated("the token is not valid (unknown or revoked)")),
    };
    let identity = match (principal, access) {
        (Principal::Peer, Access::Peer) => return Ok(req),
        (Principal::Peer, _) => return Err(forbidden("the cluster secret is only for node-to-node routes".into())),
        (Principal::User(id), Access::Peer) => return Err(forbidden(format!("{} is not a cluster node", id.name))),
        (Principal::User(id), _) => id,
    };
    if !access.allows_role(identity.role, auth.inner.metrics_public) {
        return Err(forbidden(format!("{} has role {}, which may not use this route", identity.name, identity.role)));
    }
    let (mut parts, body) = req.into_parts();
    if access == Access::AgentSelf && identity.role == Role::Agent {
        let params = match RawPathParams::from_request_parts(&mut parts, &()).await {
            Ok(p) => p,
            Err(_) => return Err(forbidden("this route names no agent".into())),
        };
        let target = params.iter().find(|(k, _)| *k == "id").map(|(_, v)| v.to_string());
        if target.as_deref() != identity.agent.as_ref().map(AgentId::as_str) {
            return Err(forbidden(format!("{} may only use the endpoints of its own agent", identity.name)));
        }
    }
    parts.extensions.insert(identity);
    Ok(Request::from_parts(parts, body))
}

/// A token file line: `NAME ROLE SHA256-HEX`, or `NAME agent:AGENT-ID SHA256-HEX`.
/// Blank lines and lines starting with '#' are ignored.
pub fn parse_token_file(text: &str) -> anyhow::Result<Vec<TokenRecord>> {
    let mut out: Vec<TokenRecord> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("token file line {}", n + 1);
        let fields: Vec<&str> = line.split_whitespace().collect();
        anyhow::ensure!(fields.len() == 3, "{}: expected NAME ROLE SHA256, got {} fields", at(), fields.len());
        let name = TokenName::new(fields[0]).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        let (role, agent) = match fields[1].split_once(':') {
            Some(("agent", id)) => (Role::Agent, Some(AgentId::new(id).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?)),
            _ => (
                Role::parse(fields[1]).with_context(|| format!("{}: unknown role {:?} (admin, operator, auditor, agent:ID, viewer)", at(), fields[1]))?,
                None,
            ),
        };
        let bytes = hex::decode(fields[2]).ok().filter(|b| b.len() == 32);
        let hash: [u8; 32] = bytes
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{}: the hash must be 64 hex digits (SHA-256 of the secret)", at()))?;
        let t = TokenRecord { name, role, agent, hash, created_by: "token file".into(), created_ms: 0 };
        t.check().map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
        anyhow::ensure!(!out.iter().any(|o| o.name == t.name), "{}: token {} appears twice", at(), t.name);
        out.push(t);
    }
    Ok(out)
}

/// Reads and parses a token file.
pub fn load_token_file(path: &Path) -> anyhow::Result<Vec<TokenRecord>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?;
    parse_token_file(&text).with_context(|| format!("in {}", path.display()))
}

/// A new random token secret.
pub fn new_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("rst_{}", hex::encode(bytes))
}

/// The token file line for a token.
pub fn token_file_line(name: &str, role: Role, agent: Option<&str>, secret: &str) -> String {
    let role = match agent {
        Some(a) => format!("agent:{a}"),
        None => role.to_string(),
    };
    format!("{name} {role} {}", hex::encode(hash_secret(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file() {
        let line = token_file_line("ops", Role::Operator, None, "s1");
        let agent = token_file_line("host-7", Role::Agent, Some("host-7"), "s2");
        let parsed = parse_token_file(&format!("# comment\n\n{line}\n{agent}\n")).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].role, Role::Operator);
        assert_eq!(parsed[0].hash, hash_secret("s1"));
        assert_eq!(parsed[1].agent.as_ref().unwrap().as_str(), "host-7");
        for bad in ["a admin", "a wizard 00", "a admin xyz", "a agent 0000000000000000000000000000000000000000000000000000000000000000"] {
            assert!(parse_token_file(bad).is_err(), "{bad}");
        }
        assert!(parse_token_file(&format!("{line}\n{line}")).is_err(), "duplicate names");
    }

    #[test]
    fn role_rules() {
        assert!(Access::Roles(WRITE_CONFIG).allows_role(Role::Operator, false));
        assert!(!Access::Roles(WRITE_CONFIG).allows_role(Role::Auditor, false));
        assert!(!Access::Metrics.allows_role(Role::Agent, false));
        assert!(Access::Metrics.allows_role(Role::Agent, true));
        assert!(!Access::AgentSelf.allows_role(Role::Operator, false));
        assert!(!Access::Peer.allows_role(Role::Admin, false));
    }
}
