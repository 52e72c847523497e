//! Helpers shared by the integration tests: real `roster` processes on loopback ports.
#![allow(dead_code, unused_imports)]
mod agent;
pub mod browser;
mod cluster;
mod node;
mod secure;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub use agent::AgentProcess;
pub use cluster::{write_any, Cluster};
pub use node::{ctl, ctl_as, Api, NodeProcess};
pub use secure::{secure, Secure, TEST_TOKENS};

/// `https://ADDR` (tests always run with TLS).
pub fn base(addr: &str) -> String {
    format!("https://{addr}")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn roster_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_roster"))
}

/// Starts `roster ARGS...` with stdout and stderr appended to `log` (the one way the tests
/// start a long-running roster process).
pub fn spawn_roster(args: &[std::ffi::OsString], env: &[(&str, &str)], log: &Path) -> Child {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(roster_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("spawning roster {:?}: {e}", args.first()))
}
