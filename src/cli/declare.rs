//! `roster ctl export-config`, `plan` and `apply`: the configuration as a document kept in
//! git, and the one revision that makes the cluster match it (see [`crate::domain::declare`]).

use std::path::Path;

use anyhow::{bail, Context};
use reqwest::Method as M;
use serde_json::{json, Value};

use super::args::{CtlArgs, CtlCommand, Output};
use super::commands::{ok, write_client};
use crate::domain::declare::{export, plan, Declared};
use crate::domain::names::CHANGES_PER_COMMAND_MAX;
use crate::domain::{decide, Agent, AgentCluster, Change, Server, State, Task};
use std::collections::BTreeMap;

/// Largest document read.
pub const DOCUMENT_MAX_BYTES: u64 = 64 << 20;

pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let client = write_client(&args)?;
    let q = if args.local { "consistency=local" } else { "consistency=linearizable" };
    let state = state_from(&ok(client.send(M::GET, &format!("/v1/state?{q}"), None).await?)?)?;
    match &args.command {
        CtlCommand::ExportConfig { output } => {
            let doc = export(&state);
            match output {
                Some(path) => {
                    std::fs::write(path, render(&doc, is_json(path))?).with_context(|| format!("writing {}", path.display()))?;
                    println!("wrote the configuration at revision {} to {}", state.revision, path.display());
                }
                None => print!("{}", render(&doc, args.output == Output::Json)?),
            }
        }
        CtlCommand::Plan { file, prune } => {
            let changes = planned(&state, file, *prune)?;
            if args.quiet {
                // For scripts: the revision to pass as `--expected-revision`.
                println!("{}", state.revision);
            } else if args.output.structured() {
                super::output::show(args.output, json!({"revision": state.revision, "changes": changes}));
            } else if changes.is_empty() {
                println!("no changes: the cluster already matches {} (revision {})", file.display(), state.revision);
            } else {
                for c in &changes {
                    println!("  {}", one_line(c));
                }
                println!(
                    "{} change(s) planned against revision {}; apply with: roster ctl --expected-revision {} apply -f {}{}",
                    changes.len(),
                    state.revision,
                    state.revision,
                    file.display(),
                    if *prune { " --prune" } else { "" }
                );
            }
        }
        CtlCommand::Apply { file: Some(file), prune, .. } => {
            let changes = planned(&state, file, *prune)?;
            if changes.is_empty() {
                println!("no changes: the cluster already matches {} (revision {})", file.display(), state.revision);
                return Ok(());
            }
            if changes.len() > CHANGES_PER_COMMAND_MAX {
                bail!(
                    "the plan has {} changes, more than the {CHANGES_PER_COMMAND_MAX} one revision may hold; apply the document in parts (e.g. servers first)",
                    changes.len()
                );
            }
            let body = json!({"changes": changes});
            let v = match &args.changeset {
                Some(id) => ok(client.send(M::POST, &format!("/v1/changesets/{id}/changes"), Some(&body)).await?)?,
                None => {
                    let expected = args.expected_revision.unwrap_or(state.revision);
                    let client = client.header(crate::api::HEADER_EXPECTED_REVISION, expected.to_string());
                    match client.send(M::POST, "/v1/commands", Some(&body)).await? {
                        (409, v) if v["error"]["code"] == "revision_mismatch" => {
                            let message = format!("{}; the cluster changed since the plan: run plan again", super::client::error_message(&v));
                            return Err(anyhow::Error::new(super::client::HttpError { status: 409, message }));
                        }
                        other => ok(other)?,
                    }
                }
            };
            if args.output.structured() {
                super::output::show(args.output, v);
            } else if let Some(id) = &args.changeset {
                println!("staged {} change(s) in changeset {id}", changes.len());
            } else {
                println!("applied {} change(s) as revision {}", changes.len(), v["committed"]["revision"]);
            }
        }
        other => bail!("{other:?} is not a declarative command"),
    }
    Ok(())
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

fn render(doc: &Declared, json: bool) -> anyhow::Result<String> {
    Ok(if json { serde_json::to_string_pretty(doc)? + "\n" } else { serde_yaml::to_string(doc)? })
}

/// Reads a document: JSON for a `.json` file, YAML otherwise (YAML also reads JSON).
fn read_document(path: &Path) -> anyhow::Result<Declared> {
    let len = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len();
    anyhow::ensure!(len <= DOCUMENT_MAX_BYTES, "{} is larger than {DOCUMENT_MAX_BYTES} bytes", path.display());
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if is_json(path) {
        serde_json::from_str(&text).with_context(|| format!("{} is not a configuration document", path.display()))
    } else {
        serde_yaml::from_str(&text).with_context(|| format!("{} is not a configuration document", path.display()))
    }
}

/// The plan for `file`, checked here against the same rules the cluster applies.
fn planned(state: &State, file: &Path, prune: bool) -> anyhow::Result<Vec<Change>> {
    let doc = read_document(file)?;
    let changes = plan(state, &doc, prune).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if !changes.is_empty() {
        decide(state, &changes, 0).map_err(|r| anyhow::anyhow!("{}: the plan would be refused: {}", file.display(), r.message))?;
    }
    Ok(changes)
}

/// `kind {fields}` for a change.
fn one_line(c: &Change) -> String {
    match serde_json::to_value(c) {
        Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k} {v}")).collect(),
        _ => format!("{c:?}"),
    }
}

/// The state `GET /v1/state` answered (servers come as views with a derived `url`).
fn state_from(v: &Value) -> anyhow::Result<State> {
    let servers: Vec<Server> = serde_json::from_value(v["servers"].clone()).context("reading the servers of /v1/state")?;
    let agents: BTreeMap<_, Agent> = serde_json::from_value(v["agents"].clone()).context("reading the agents of /v1/state")?;
    let clusters: BTreeMap<_, AgentCluster> = serde_json::from_value(v["clusters"].clone()).context("reading the clusters of /v1/state")?;
    let tasks: BTreeMap<_, Task> = serde_json::from_value(v["tasks"].clone()).context("reading the tasks of /v1/state")?;
    let revision = v["revision"].as_u64().context("/v1/state has no revision")?;
    Ok(State { revision, servers: servers.into_iter().map(|s| (s.name.clone(), s)).collect(), agents, clusters, tasks })
}
