//! The README as a new user meets it: every shell block marked `<!-- readme-test: run -->` runs,
//! in order, in one shell, against a fresh `roster dev` in a temporary folder
//! (`scripts/readme_test.py`); a shell block without a `run` or `skip: REASON` annotation fails
//! the test. And the check itself is checked: a README with a mistyped command, or with an
//! unannotated block, fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use common::roster_bin;

/// The runs share the dev cluster's ports (7001-7003), the agent's (7400) and the restored
/// node's (7011): one at a time.
static PORTS: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the script on `readme`, with its working folder under `work` (a temp dir of the test).
fn readme_test(readme: &Path, work: &Path) -> Output {
    let out = Command::new("python3")
        .arg(repo().join("scripts/readme_test.py"))
        .arg("--bin")
        .arg(roster_bin())
        .arg("--readme")
        .arg(readme)
        .arg("--timeout")
        .arg("300")
        .arg("--work-dir")
        .arg(work)
        .output()
        .expect("python3 (scripts/deps.sh installs it)");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_runnable_readme_command_works_in_order() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = readme_test(&repo().join("README.md"), dir.path());
    assert!(out.status.success(), "a README command failed (see the output above), status {:?}", out.status.code());
    let all = text(&out);
    assert!(all.contains("result:         PASS"), "no PASS in the summary:\n{all}");
}

#[test]
fn a_mistyped_readme_command_fails_the_test_at_its_line() {
    let _ports = PORTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(repo().join("README.md")).unwrap();
    // The first runnable command that creates the agent cluster, mistyped as a user might.
    let wanted = "$R ctl clusters create eu";
    let line = original.lines().position(|l| l.starts_with(wanted)).expect("the README creates cluster eu") + 1;
    let broken = original.replacen(wanted, "$R ctl clusters craete eu", 1);
    let copy = dir.path().join("README.md");
    std::fs::write(&copy, broken).unwrap();
    let out = readme_test(&copy, dir.path());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "a broken command must fail the test:\n{all}");
    assert!(all.contains(&format!("FAILED at README.md:{line} (exit status 2)")), "the failure names the line:\n{all}");
    assert!(all.contains("craete"), "the failure shows the command:\n{all}");
    assert!(all.contains("result:         FAIL"), "{all}");
}

#[test]
fn a_shell_block_without_an_annotation_fails_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let copy = dir.path().join("README.md");
    std::fs::write(&copy, format!("{original}\n```sh\n$R ctl servers list\n```\n")).unwrap();
    let out = readme_test(&copy, dir.path());
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "an unannotated block must fail the test:\n{all}");
    assert!(all.contains("block without a `<!-- readme-test: run -->`"), "{all}");
}
