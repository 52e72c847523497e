//! Where nodes live on the network, and network faults.
//!
//! - **netns** (root, `ip netns` works): each node slot gets its own network namespace with a
//!   veth into a bridge that lives in a hub namespace; the harness reaches the bridge through
//!   one more veth from the root namespace (address `.254`). Faults are nftables rules in the
//!   receiving node's namespace (`inet chaos` table, input hook) that drop packets from given
//!   peers, with an optional probability (`numgen random`): partitions are drops in both
//!   directions, one-way loss in one. Traffic from the harness and agents is never dropped.
//! - **loopback**: nodes on distinct 127.0.0.x addresses; no network faults (they are
//!   reported as skipped).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Port every node listens on in netns mode.
pub const NETNS_PORT: u16 = 7000;
/// Prefix of every namespace this harness creates (stale ones are removed at start).
pub const NS_PREFIX: &str = "chaos-";

/// Namespaces created by this process, removed by `cleanup_registered` on any exit path.
static NAMESPACES: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Root-namespace links created by this process.
static LINKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    Auto,
    Netns,
    Loopback,
}

impl std::str::FromStr for NetMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(NetMode::Auto),
            "netns" => Ok(NetMode::Netns),
            "loopback" => Ok(NetMode::Loopback),
            o => Err(format!("--net must be auto, netns or loopback, not {o:?}")),
        }
    }
}

/// A place a node can run: an address, and a namespace in netns mode.
#[derive(Clone, Debug)]
pub struct Slot {
    pub index: usize,
    pub ip: String,
    /// `ip:port`, what peers, clients and agents use.
    pub addr: String,
    pub netns: Option<String>,
}

/// Network set-up of one run.
pub struct Net {
    pub mode: NetMode,
    pub slots: Vec<Slot>,
    hub: Option<String>,
    uplink: Option<String>,
    /// Whether nftables rules can be installed (netns mode with `nft`).
    pub can_filter: bool,
    /// Current drop rules: (from slot, to slot) -> drop percentage (1..=100).
    rules: BTreeMap<(usize, usize), u8>,
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn have(cmd: &str) -> bool {
    let flag = if cmd == "ip" { "-V" } else { "--version" };
    Command::new(cmd).arg(flag).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces `chaos-<pid>-*` left by harness processes that no longer run (killing
/// whatever still runs inside them).
pub fn clean_stale() {
    let Ok(list) = ip(&["netns", "list"]) else { return };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(NS_PREFIX) else { continue };
        let owner: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
        if owner.is_some_and(|p| pid_alive(p) && p != std::process::id()) {
            continue;
        }
        if owner == Some(std::process::id()) {
            continue;
        }
        eprintln!("chaos: removing stale namespace {name}");
        delete_ns(name);
    }
}

fn delete_ns(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for p in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            // SAFETY: sending a signal has no memory-safety preconditions.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
    }
    let _ = ip(&["netns", "del", name]);
}

/// Removes every namespace and link this process created (idempotent; used on every exit
/// path, including panics and Ctrl-C).
pub fn cleanup_registered() {
    let names: Vec<String> = std::mem::take(&mut *NAMESPACES.lock().unwrap_or_else(|e| e.into_inner()));
    for n in names.iter().rev() {
        delete_ns(n);
    }
    let links: Vec<String> = std::mem::take(&mut *LINKS.lock().unwrap_or_else(|e| e.into_inner()));
    for l in links {
        let _ = ip(&["link", "del", &l]);
    }
}

fn register_ns(name: &str) {
    NAMESPACES.lock().unwrap_or_else(|e| e.into_inner()).push(name.to_string());
}

impl Net {
    /// Sets up `n` slots in the requested mode (`Auto`: netns when root and it works).
    pub fn setup(mode: NetMode, n: usize, tag: &str) -> Result<Net> {
        let want_netns = match mode {
            NetMode::Loopback => false,
            NetMode::Netns => true,
            NetMode::Auto => is_root() && have("ip"),
        };
        if want_netns {
            clean_stale();
            match Self::setup_netns(n, tag) {
                Ok(net) => return Ok(net),
                Err(e) if mode == NetMode::Auto => {
                    eprintln!("chaos: network namespaces unavailable ({e:#}); using loopback addresses");
                    cleanup_registered();
                }
                Err(e) => {
                    cleanup_registered();
                    return Err(e);
                }
            }
        }
        Self::setup_loopback(n)
    }

    fn setup_loopback(n: usize) -> Result<Net> {
        let mut slots = Vec::new();
        for i in 0..n {
            let ip = format!("127.0.0.{}", 10 + i);
            let port = std::net::TcpListener::bind((ip.as_str(), 0))
                .with_context(|| format!("binding {ip}"))?
                .local_addr()?
                .port();
            slots.push(Slot { index: i, addr: format!("{ip}:{port}"), ip, netns: None });
        }
        Ok(Net { mode: NetMode::Loopback, slots, hub: None, uplink: None, can_filter: false, rules: BTreeMap::new() })
    }

    fn setup_netns(n: usize, tag: &str) -> Result<Net> {
        let pid = std::process::id();
        // A subnet per harness process, so concurrent runs do not collide.
        let prefix = format!("10.{}.{}", 100 + (pid >> 8) % 100, pid & 0xff);
        let hub = format!("{NS_PREFIX}{pid}-{tag}-hub");
        ip(&["netns", "add", &hub])?;
        register_ns(&hub);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        let uplink = format!("chaos{pid}");
        ip(&["link", "add", &uplink, "type", "veth", "peer", "name", "up0", "netns", &hub])?;
        LINKS.lock().unwrap_or_else(|e| e.into_inner()).push(uplink.clone());
        ip(&["-n", &hub, "link", "set", "up0", "master", "br0"])?;
        ip(&["-n", &hub, "link", "set", "up0", "up"])?;
        ip(&["addr", "add", &format!("{prefix}.254/24"), "dev", &uplink])?;
        ip(&["link", "set", &uplink, "up"])?;
        let mut slots = Vec::new();
        for i in 0..n {
            let ns = format!("{NS_PREFIX}{pid}-{tag}-n{}", i + 1);
            ip(&["netns", "add", &ns])?;
            register_ns(&ns);
            let hub_end = format!("n{}", i + 1);
            ip(&["-n", &hub, "link", "add", &hub_end, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["-n", &hub, "link", "set", &hub_end, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &hub_end, "up"])?;
            let addr = format!("{prefix}.{}", i + 1);
            ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            slots.push(Slot { index: i, addr: format!("{addr}:{NETNS_PORT}"), ip: addr, netns: Some(ns) });
        }
        let can_filter = have("nft") && {
            let probe = Self::nft(slots[0].netns.as_deref().unwrap_or_default(), "table inet chaos\ndelete table inet chaos\n");
            if let Err(e) = &probe {
                eprintln!("chaos: nftables does not work in namespaces ({e:#}); network faults are skipped");
            }
            probe.is_ok()
        };
        if !can_filter {
            eprintln!("chaos: `nft` not available; partitions and one-way loss are skipped (scripts/deps.sh installs nftables)");
        }
        Ok(Net { mode: NetMode::Netns, slots, hub: Some(hub), uplink: Some(uplink), can_filter, rules: BTreeMap::new() })
    }

    fn nft(ns: &str, script: &str) -> Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running nft")?;
        child.stdin.take().expect("piped stdin").write_all(script.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("nft in {ns}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Drops `percent`% of the packets sent from slot `from` to slot `to` (100: all).
    pub fn drop_packets(&mut self, from: usize, to: usize, percent: u8) {
        if from != to && percent > 0 {
            self.rules.insert((from, to), percent.min(100));
        }
    }

    /// Installs the rules collected with `drop_packets` (replacing earlier ones).
    pub fn apply(&self) -> Result<()> {
        if !self.can_filter {
            bail!("network faults need network namespaces and nftables");
        }
        for slot in &self.slots {
            let mut rules = String::new();
            for ((from, to), pct) in &self.rules {
                if *to != slot.index {
                    continue;
                }
                let src = &self.slots[*from].ip;
                if *pct >= 100 {
                    rules.push_str(&format!("    ip saddr {src} drop\n"));
                } else {
                    rules.push_str(&format!("    ip saddr {src} numgen random mod 100 < {pct} drop\n"));
                }
            }
            let script = format!(
                "table inet chaos\ndelete table inet chaos\ntable inet chaos {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{rules}  }}\n}}\n"
            );
            Self::nft(slot.netns.as_deref().unwrap_or_default(), &script)?;
        }
        Ok(())
    }

    /// Removes every network fault.
    pub fn heal(&mut self) -> Result<()> {
        let had = !self.rules.is_empty();
        self.rules.clear();
        if had && self.can_filter {
            for slot in &self.slots {
                Self::nft(slot.netns.as_deref().unwrap_or_default(), "table inet chaos\ndelete table inet chaos\n")?;
            }
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        match self.mode {
            NetMode::Netns if self.can_filter => "netns+nftables".into(),
            NetMode::Netns => "netns (no nftables)".into(),
            _ => "loopback".into(),
        }
    }

    /// Removes the namespaces and links of this run.
    pub fn teardown(&mut self) {
        let mut names: Vec<String> = self.slots.iter_mut().filter_map(|s| s.netns.take()).collect();
        names.extend(self.hub.take());
        let mut reg = NAMESPACES.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|n| !names.contains(n));
        drop(reg);
        for n in &names {
            delete_ns(n);
        }
        if let Some(l) = self.uplink.take() {
            let _ = ip(&["link", "del", &l]);
            LINKS.lock().unwrap_or_else(|e| e.into_inner()).retain(|x| *x != l);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}
