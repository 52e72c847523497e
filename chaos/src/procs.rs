//! Child processes: spawned with a parent-death signal, registered so that every exit path
//! (normal end, panic, Ctrl-C) kills them.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::Duration;

static PIDS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Spawns `cmd`; the child gets SIGKILL if the spawning thread dies (the harness always
/// spawns from the thread that runs the whole run).
pub fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).insert(child.id() as i32);
    Ok(child)
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

/// SIGKILLs and reaps `child`.
pub fn kill(mut child: Child) {
    let pid = child.id() as i32;
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
}

/// Reaps a child that exited by itself.
pub fn forget(child: &Child) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).remove(&(child.id() as i32));
}

/// Whether the child still runs (reaping it if it exited).
pub fn running(child: &mut Child) -> bool {
    matches!(child.try_wait(), Ok(None))
}

/// SIGKILLs every registered child (continuing stopped ones first is unnecessary: SIGKILL
/// also ends a stopped process).
pub fn kill_registered() {
    let pids: Vec<i32> = std::mem::take(&mut *PIDS.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect();
    for p in pids {
        // SAFETY: as above.
        unsafe {
            libc::kill(p, libc::SIGKILL);
        }
    }
}

/// Everything a run may leave behind: processes, then namespaces.
pub fn cleanup_all() {
    kill_registered();
    std::thread::sleep(Duration::from_millis(50));
    crate::net::cleanup_registered();
}
