//! Console sessions and CSRF tokens, both stateless so that any node can check them.
//!
//! The key is derived from the cluster secret (every node holds it), so a session made on one
//! node is honoured by the others — an operator keeps working through another node when one
//! stops. A session names a token and the first bytes of its secret's hash: revoking the
//! token (or re-creating it with another secret) ends every session made with it.
//!
//! Cookie value: `base64url(name "|" expiry_ms "|" hash16) "." base64url(HMAC-SHA256)`.
//! CSRF token: `HMAC(key, "csrf|" payload)`, bound to the session, so a token taken from one
//! session is worthless in another.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// How long a console session lasts after sign-in.
pub const SESSION_TTL_MS: u64 = 8 * 3600 * 1000;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "roster_session";
/// Hex digits of the token hash a session carries.
const HASH_PREFIX_HEX: usize = 16;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The console's signing key.
#[derive(Clone)]
pub struct SessionKey([u8; 32]);

impl SessionKey {
    /// Derived from the cluster secret: the same on every node.
    pub fn from_cluster_secret(secret: &str) -> Self {
        Self(hmac_sha256(secret.as_bytes(), b"roster-console-session-v1"))
    }

    /// A key of this process alone (the insecure mode, where only CSRF tokens are signed).
    pub fn random() -> Self {
        use rand::RngCore;
        let mut k = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut k);
        Self(k)
    }

    fn mac(&self, message: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, message)
    }

    /// A session cookie value for the token `name` whose secret hashes to `hash`.
    pub fn issue(&self, name: &str, hash: &[u8; 32], now_ms: u64) -> String {
        let payload = format!("{name}|{}|{}", now_ms + SESSION_TTL_MS, &hex(hash)[..HASH_PREFIX_HEX]);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&payload), URL_SAFE_NO_PAD.encode(self.mac(payload.as_bytes())))
    }

    /// The session a cookie value names, if its signature holds and it has not expired.
    pub fn open(&self, cookie: &str, now_ms: u64) -> Option<Session> {
        let (payload_b64, mac_b64) = cookie.split_once('.')?;
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload_b64).ok()?).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac_b64).ok()?;
        if !roster_raft::transport::secrets_equal(&mac, &self.mac(payload.as_bytes())) {
            return None;
        }
        let mut parts = payload.splitn(3, '|');
        let name = parts.next()?.to_string();
        let expires_ms: u64 = parts.next()?.parse().ok()?;
        let hash_prefix = parts.next()?.to_string();
        (expires_ms > now_ms).then_some(Session { name, hash_prefix, payload })
    }

    /// The CSRF token of a session (or of the insecure console, `payload` = "insecure").
    pub fn csrf(&self, payload: &str) -> String {
        hex(&self.mac(format!("csrf|{payload}").as_bytes()))[..32].to_string()
    }

    pub fn csrf_ok(&self, payload: &str, presented: &str) -> bool {
        roster_raft::transport::secrets_equal(self.csrf(payload).as_bytes(), presented.as_bytes())
    }
}

/// A signed-in console session.
#[derive(Clone, Debug)]
pub struct Session {
    pub name: String,
    /// Hex prefix of the token's secret hash.
    pub hash_prefix: String,
    /// The signed payload (what CSRF tokens are bound to).
    pub payload: String,
}

impl Session {
    /// Whether a token with this secret hash is the one the session was made with.
    pub fn matches(&self, hash: &[u8; 32]) -> bool {
        hex(hash).starts_with(&self.hash_prefix)
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn sessions_are_signed_expire_and_bind_csrf_tokens() {
        let key = SessionKey::from_cluster_secret("s3cret");
        let hash = [7u8; 32];
        let cookie = key.issue("ops", &hash, 1_000);
        let s = key.open(&cookie, 2_000).expect("a fresh session opens");
        assert_eq!(s.name, "ops");
        assert!(s.matches(&hash) && !s.matches(&[8u8; 32]));
        assert!(key.open(&cookie, 1_000 + SESSION_TTL_MS).is_none(), "expired");
        assert!(SessionKey::from_cluster_secret("other").open(&cookie, 2_000).is_none(), "another cluster's key");
        let forged = cookie.replacen(&cookie[..4], "AAAA", 1);
        assert!(key.open(&forged, 2_000).is_none(), "an edited payload");
        let csrf = key.csrf(&s.payload);
        assert!(key.csrf_ok(&s.payload, &csrf));
        assert!(!key.csrf_ok("another session", &csrf));
        assert!(!key.csrf_ok(&s.payload, ""));
    }
}
