//! Named crash points around every durable write, for fault-injection runs.
//!
//! `ROSTER_FAILPOINT=<name>:<n>` makes the process abort (as abruptly as `kill -9`: no
//! destructors, no flushes) the n-th time it reaches the named point.
//! `ROSTER_FAILPOINT_DELAY=<name>:<ms>` makes the thread that reaches the named point sleep
//! that long every time (a slow disk: the sleep blocks whatever the write blocks). Without
//! the variables a fail point costs two relaxed loads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Every fail point, in the order a write passes them.
pub const NAMES: &[&str] = &[
    "log_append_before",
    "log_append_after",
    "vote_save_before",
    "vote_save_after",
    "apply_before",
    "apply_after",
    "snapshot_build_before",
    "snapshot_build_segment",
    "snapshot_build_renamed",
    "snapshot_build_after",
    "snapshot_prune",
    "snapshot_install_stage",
    "snapshot_install_renamed",
    "snapshot_install_before",
    "snapshot_install_load",
    "snapshot_install_final",
    "snapshot_install_after",
    "snapshot_redo",
    "purge_before",
    "purge_after",
];

/// The points on a snapshot's way: built, received, purged behind, installed, redone at
/// start-up (every point of [`NAMES`] from `snapshot_build_before` on). The crash-matrix test
/// crashes a node at each of them.
pub const SNAPSHOT_PATH: &[&str] = NAMES.split_at(6).1;

/// The environment variable naming the armed fail point.
pub const ENV: &str = "ROSTER_FAILPOINT";
/// The environment variable naming a fail point to slow down, and by how many milliseconds.
pub const DELAY_ENV: &str = "ROSTER_FAILPOINT_DELAY";

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (name, at) = match spec.split_once(':') {
                Some((n, a)) => (n.to_string(), a.parse().unwrap_or(1)),
                None => (spec.clone(), 1),
            };
            if !NAMES.contains(&name.as_str()) {
                eprintln!("{ENV}: unknown fail point {name:?}; known: {}", NAMES.join(", "));
                return None;
            }
            Some(Armed { name, at: at.max(1), hits: AtomicU64::new(0) })
        })
        .as_ref()
}

/// The longest delay `ROSTER_FAILPOINT_DELAY` takes: a slow disk, not a hung one.
pub const DELAY_MAX_MS: u64 = 10_000;

/// Reads `<fail point>:<milliseconds>`; the error says what is wrong with it.
fn parse_delay(spec: &str) -> Result<(String, std::time::Duration), String> {
    let (name, ms) = spec.split_once(':').ok_or_else(|| format!("expected <fail point>:<milliseconds>, not {spec:?}"))?;
    if !NAMES.contains(&name) {
        return Err(format!("unknown fail point {name:?}; known: {}", NAMES.join(", ")));
    }
    match ms.parse::<u64>() {
        Ok(ms) if ms <= DELAY_MAX_MS => Ok((name.to_string(), std::time::Duration::from_millis(ms))),
        _ => Err(format!("the delay must be 0 to {DELAY_MAX_MS} milliseconds, not {ms:?}")),
    }
}

/// The slowed fail point and its delay, read once.
fn delayed() -> Option<&'static (String, std::time::Duration)> {
    static DELAYED: OnceLock<Option<(String, std::time::Duration)>> = OnceLock::new();
    DELAYED
        .get_or_init(|| {
            let spec = std::env::var(DELAY_ENV).ok()?;
            parse_delay(&spec).map_err(|why| eprintln!("{DELAY_ENV}: {why}; no fail point is slowed")).ok()
        })
        .as_ref()
}

/// Sleeps if `name` is the slowed fail point; aborts the process if `name` is the armed fail
/// point and this is its n-th hit.
pub fn hit(name: &'static str) {
    if let Some((slowed, delay)) = delayed() {
        if slowed == name {
            std::thread::sleep(*delay);
        }
    }
    let Some(a) = armed() else { return };
    if a.name != name {
        return;
    }
    if a.hits.fetch_add(1, Ordering::Relaxed) + 1 == a.at {
        eprintln!("fail point {name} reached (hit {}): aborting", a.at);
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_delay_names_a_known_point_and_a_bounded_time() {
        let (name, delay) = super::parse_delay("log_append_before:60").unwrap();
        assert_eq!((name.as_str(), delay.as_millis()), ("log_append_before", 60));
        assert!(super::parse_delay("log_append_before").unwrap_err().contains("expected"));
        assert!(super::parse_delay("nowhere:60").unwrap_err().contains("unknown fail point"));
        assert!(super::parse_delay("log_append_before:-1").unwrap_err().contains("0 to 10000"));
        assert!(super::parse_delay("log_append_before:10001").unwrap_err().contains("0 to 10000"));
    }

    #[test]
    fn the_snapshot_path_starts_at_the_build() {
        assert_eq!(super::SNAPSHOT_PATH.first(), Some(&"snapshot_build_before"));
        assert_eq!(super::SNAPSHOT_PATH.last(), Some(&"purge_after"));
    }
}
