//! Validated names and the named limits of the domain.
//!
//! Every identifier that enters the domain is one of these newtypes, so an invalid name is
//! refused when a request or record is decoded, never deep inside the fold.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest server, cluster, task, agent or pool name.
pub const NAME_MAX_LEN: usize = 64;
/// Longest host name (DNS limit).
pub const HOST_MAX_LEN: usize = 253;
/// Longest actor identity recorded in a revision.
pub const ACTOR_MAX_LEN: usize = 128;
/// Longest comment on a revision or changeset description.
pub const COMMENT_MAX_LEN: usize = 1024;
/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 128;
/// Most servers in one failover list.
pub const SERVERS_PER_LIST_MAX: usize = 64;
/// Most agents in one agent cluster.
pub const AGENTS_PER_CLUSTER_MAX: usize = 100_000;
/// Most changes in one command or one changeset.
pub const CHANGES_PER_COMMAND_MAX: usize = 1_000;
/// Most changesets staged at once.
pub const OPEN_CHANGESETS_MAX: usize = 1_000;
/// The port of a run-time server registered without one (the product's default).
pub const DEFAULT_SERVER_PORT: u16 = 6700;

/// For serde: [`DEFAULT_SERVER_PORT`].
pub fn default_server_port() -> u16 {
    DEFAULT_SERVER_PORT
}

/// A server's address as one URL, `scheme://host[:port][/][?pool=POOL]` (the form
/// [`super::Server::url`] writes), taken apart: scheme, host, port ([`DEFAULT_SERVER_PORT`]
/// when absent) and pool. Anything else in the URL (a path, user info, other query
/// parameters, a fragment) is refused rather than silently dropped.
pub fn parse_server_url(url: &str) -> Result<(Scheme, Host, u16, Option<PoolName>), NameError> {
    let err = |reason: &str| NameError::new("server URL", url, reason);
    let (scheme, rest) = url.split_once("://").ok_or_else(|| err("must start with a scheme, as in http://host:6700/"))?;
    let scheme = Scheme::new(scheme)?;
    if !SCHEMES_ALLOWED.contains(&scheme.as_str()) {
        return Err(err(&format!("the scheme must be one of {}", SCHEMES_ALLOWED.join(", "))));
    }
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let query = match tail.strip_prefix('/').unwrap_or(tail) {
        "" => None,
        q => Some(q.strip_prefix('?').ok_or_else(|| err("must not have a path"))?),
    };
    if authority.contains('@') {
        return Err(err("must not carry user information"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| err("the port must be a number from 1 to 65535"))?)
        }
        _ => (authority, DEFAULT_SERVER_PORT),
    };
    let host = Host::new(host.trim_start_matches('[').trim_end_matches(']'))?;
    let pool = match query {
        None => None,
        Some(q) => {
            let p = q.strip_prefix("pool=").ok_or_else(|| err("the only query parameter is pool=NAME"))?;
            if p.contains(['&', '=', '#']) {
                return Err(err("the only query parameter is pool=NAME"));
            }
            Some(PoolName::new(p)?)
        }
    };
    Ok((scheme, host, port, pool))
}

/// `s` as one URL path segment or query value: every byte but ASCII letters, digits and
/// `-_.~` percent-encoded (task names may hold spaces and punctuation).
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// An error echoes at most this many characters of a refused name.
const NAME_ECHO_MAX_CHARS: usize = 80;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct NameError {
    pub kind: &'static str,
    pub value: String,
    pub reason: String,
}

impl NameError {
    fn new(kind: &'static str, value: &str, reason: &str) -> Self {
        NameError { kind, value: value.chars().take(NAME_ECHO_MAX_CHARS).collect(), reason: reason.to_string() }
    }
}

/// The rules every name shares: 1 to [`NAME_MAX_LEN`] bytes, a letter or digit first, and only
/// bytes `allowed` accepts (described as `allowed_text` in the error).
fn check_chars(kind: &'static str, value: &str, allowed: impl Fn(u8) -> bool, allowed_text: &str) -> Result<(), NameError> {
    let err = |reason: &str| NameError::new(kind, value, reason);
    if value.is_empty() {
        return Err(err("must not be empty"));
    }
    if value.len() > NAME_MAX_LEN {
        return Err(err(&format!("longer than {NAME_MAX_LEN} characters")));
    }
    if !value.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(err("must start with a letter or digit"));
    }
    if !value.bytes().all(allowed) {
        return Err(err(&format!("may contain only {allowed_text}")));
    }
    Ok(())
}

fn check_name(kind: &'static str, value: &str) -> Result<(), NameError> {
    check_chars(kind, value, |b| b.is_ascii_alphanumeric() || b"-_.".contains(&b), "letters, digits, '-', '_' and '.'")
}

/// Punctuation a task name may hold besides letters, digits, `-`, `_` and `.`.
pub const TASK_NAME_PUNCTUATION: &str = " ()+,@#&'";

/// A task name: 1 to 64 characters; ASCII letters, digits, `-`, `_`, `.`, spaces and the
/// characters of [`TASK_NAME_PUNCTUATION`]; starting with a letter or digit, not ending with
/// a space, and without two spaces in a row (names that look alike must be alike).
fn check_task_name(kind: &'static str, value: &str) -> Result<(), NameError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b) || TASK_NAME_PUNCTUATION.as_bytes().contains(&b);
    check_chars(kind, value, allowed, &format!("letters, digits, '-', '_', '.', spaces and {:?}", &TASK_NAME_PUNCTUATION[1..]))?;
    if value.ends_with(' ') || value.contains("  ") {
        return Err(NameError::new(kind, value, "must not end with a space or hold two spaces in a row"));
    }
    Ok(())
}

/// The JSON Schema of a name of kind `kind` (for the OpenAPI document): a string with its
/// length bounds and character set.
fn name_schema(kind: &str) -> schemars::Schema {
    let (pattern, max, what) = match kind {
        "task name" => (r"^[A-Za-z0-9][A-Za-z0-9._() +,@#&'-]*$", NAME_MAX_LEN, "a task name: letters, digits, -_. spaces and ()+,@#&' (no trailing or double space)"),
        "host" => (r"^[A-Za-z0-9.:_\[\]-]+$", HOST_MAX_LEN, "a host name or IP address"),
        "scheme" => (r"^[a-z][a-z0-9+.-]*$", 16, "a URL scheme"),
        _ => (r"^[A-Za-z0-9][A-Za-z0-9._-]*$", NAME_MAX_LEN, "a name: letters, digits, '-', '_' and '.'"),
    };
    schemars::json_schema!({"type": "string", "minLength": 1, "maxLength": max, "pattern": pattern, "description": what})
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        name_type!($(#[$doc])* $ty, $kind, check_name);
    };
    ($(#[$doc:meta])* $ty:ident, $kind:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn new(value: impl Into<String>) -> Result<Self, NameError> {
                let value = value.into();
                $check($kind, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                Self::new(value)
            }
        }
        impl From<$ty> for String {
            fn from(v: $ty) -> String {
                v.0
            }
        }
        impl schemars::JsonSchema for $ty {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                name_schema($kind)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }
    };
}

name_type!(
    /// A run-time server's unique name.
    ServerName, "server name");
name_type!(
    /// An agent cluster's unique name.
    ClusterName, "agent cluster name");
name_type!(
    /// A task (resource name) that clients ask configuration for. Real task names are model,
    /// NavMap and project names, so besides what other names allow they may hold spaces and
    /// `( ) + , @ # & '` (see [`check_task_name`]).
    TaskName, "task name", check_task_name);
name_type!(
    /// An agent's identity, chosen by the agent (usually its host name).
    AgentId, "agent id");
name_type!(
    /// An API token's name: the identity recorded as actor for everything done with it.
    TokenName, "token name");
name_type!(
    /// A run-time server's session pool.
    PoolName, "pool name");

fn check_host(kind: &'static str, value: &str) -> Result<(), NameError> {
    let err = |reason: &str| NameError::new(kind, value, reason);
    if value.is_empty() {
        return Err(err("must not be empty"));
    }
    if value.len() > HOST_MAX_LEN {
        return Err(err("longer than 253 characters"));
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']' | b'_');
    if !value.bytes().all(ok) {
        return Err(err("may contain only letters, digits, '-', '.', '_', ':' and brackets"));
    }
    Ok(())
}

fn check_scheme(kind: &'static str, value: &str) -> Result<(), NameError> {
    let err = |reason: &str| NameError::new(kind, value, reason);
    if value.is_empty() || value.len() > 16 {
        return Err(err("must be 1 to 16 characters"));
    }
    if !value.as_bytes()[0].is_ascii_lowercase()
        || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.'))
    {
        return Err(err("must be lowercase letters, digits, '+', '-' or '.', starting with a letter"));
    }
    Ok(())
}

/// URL schemes a run-time server may have. Others (`javascript`, `file`, ...) are refused when
/// a server is registered or updated: the URL is shown to operators and handed to clients.
pub const SCHEMES_ALLOWED: &[&str] = &["http", "https", "tcp", "tls"];

/// Whether `c` must not appear in free text (comments, descriptions, actors): control
/// characters, and the Unicode format and separator characters that reorder or hide text
/// on a terminal or page (bidi overrides and isolates, zero-width characters, line and
/// paragraph separators, the byte order mark).
pub fn is_unsafe_text_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

name_type!(
    /// A host name or IP address literal.
    Host, "host", check_host);
name_type!(
    /// A URL scheme such as `http` or `https`.
    Scheme, "scheme", check_scheme);

impl Scheme {
    pub fn http() -> Self {
        Self("http".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_round_trip_and_default_the_port() {
        use crate::domain::{Server, ServerStatus};
        for (url, port, pool) in [("http://10.0.0.1:8080/", 8080, None), ("https://rt.example:6701/?pool=blue", 6701, Some("blue")), ("http://[fe80::1]:8080/", 8080, None)] {
            let (scheme, host, p, pl) = parse_server_url(url).unwrap();
            assert_eq!((p, pl.as_ref().map(|x| x.as_str())), (port, pool));
            let s = Server { name: ServerName::new("rt").unwrap(), scheme, host, port: p, pool: pl, status: ServerStatus::Enabled };
            assert_eq!(s.url(), url);
        }
        assert_eq!(parse_server_url("http://h").unwrap().2, DEFAULT_SERVER_PORT);
        assert_eq!(parse_server_url("tcp://h?pool=p").unwrap().3.unwrap().as_str(), "p");
        for bad in ["h:80", "ftp://h", "http://h:0/", "http://h:x/", "http://u@h/", "http://h/path", "http://h/?x=1", "http://h/?pool=a&b=c", "http:///"] {
            assert!(parse_server_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        for (input, ok) in [
            ("rt1", true),
            ("a.b-c_d", true),
            ("", false),
            ("-x", false),
            ("a b", false),
            ("ü", false),
            (&"x".repeat(64), true),
            (&"x".repeat(65), false),
        ] {
            assert_eq!(ServerName::new(input).is_ok(), ok, "{input:?}");
        }
        assert!(Host::new("10.0.0.1").is_ok());
        assert!(Host::new("[::1]").is_ok());
        assert!(Host::new("bad/host").is_err());
        assert!(Scheme::new("https").is_ok());
        assert!(Scheme::new("HTTP").is_err());
    }

    #[test]
    fn task_names_take_what_real_model_and_navmap_names_use() {
        for ok in ["billing", "Account Inquiry", "CICS.Logon (v2)", "Project A, Phase 1", "R&D #4", "O'Brien+Co @ HQ", "x.y-z_1"] {
            assert!(TaskName::new(ok).is_ok(), "{ok:?}");
        }
        for bad in ["", " lead", "trail ", "two  spaces", "tab\there", "slash/name", "colon:name", "percent%", "ü", "new\nline", "-dash"] {
            assert!(TaskName::new(bad).is_err(), "{bad:?}");
        }
        assert!(TaskName::new("x".repeat(65)).is_err());
        // Other names keep the narrower set.
        assert!(ServerName::new("a b").is_err() && ClusterName::new("a b").is_err());
        assert_eq!(percent_encode("Account Inquiry (v2)"), "Account%20Inquiry%20%28v2%29");
    }
}
