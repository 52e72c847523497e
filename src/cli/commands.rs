//! Running one `roster ctl` invocation: flags to requests, changes and printed answers.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::args::*;
use super::client::{error_message, Client};
use super::output::*;
use crate::domain::names::{parse_server_url, DEFAULT_SERVER_PORT};
use crate::domain::{AgentId, Change, ClusterName, Host, MoveDirection, PoolName, Scheme, ServerName, TaskName};

fn random_key() -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().gen();
    format!("ctl-{n:032x}")
}

/// The client of one invocation with its write headers: actor (without a token), comment and
/// idempotency key. The expected revision is left to the caller.
pub(super) fn write_client(args: &CtlArgs) -> anyhow::Result<Client> {
    let mut client = Client::new(&args.conn)?;
    if !client.has_token() {
        let actor = args.actor.clone().or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "cli".into());
        client = client.header(crate::api::HEADER_ACTOR, actor);
    }
    if let Some(c) = &args.comment {
        client = client.header(crate::api::HEADER_COMMENT, c.clone());
    }
    let key = args.idempotency_key.clone().unwrap_or_else(random_key);
    Ok(client.header(crate::api::HEADER_IDEMPOTENCY_KEY, key))
}

/// Runs one `roster ctl` invocation.
pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    if matches!(args.command, CtlCommand::ExportConfig { .. } | CtlCommand::Plan { .. } | CtlCommand::Apply { file: Some(_), .. }) {
        return super::declare::run(args).await;
    }
    let mut client = write_client(&args)?;
    if let Some(r) = args.expected_revision {
        client = client.header(crate::api::HEADER_EXPECTED_REVISION, r.to_string());
    }
    let q = if args.local { "consistency=local" } else { "consistency=linearizable" };
    let out = args.output;
    let quiet = args.quiet;
    let stage = args.changeset.clone();

    use reqwest::Method as M;
    let get = |path: String| {
        let client = &client;
        async move { client.send(M::GET, &path, None).await }
    };
    match args.command {
        CtlCommand::Servers(ServersCmd::List { status }) => {
            let filter = status.map(|s| format!("&status={}", urlencode(&s))).unwrap_or_default();
            let v = ok(client.get_all_pages(&format!("/v1/servers?{q}{filter}")).await?)?;
            print(out, &v, &["name", "url", "status"], |s| {
                vec![s["name"].to_string(), s["url"].to_string(), s["status"].to_string()]
            });
        }
        CtlCommand::Servers(ServersCmd::Get { name }) => show(out, ok(get(format!("/v1/servers/{name}?{q}")).await?)?),
        CtlCommand::Clusters(ClustersCmd::List) => {
            let v = ok(client.get_all_pages(&format!("/v1/agent-clusters?{q}")).await?)?;
            print(out, &v, &["name", "agents", "tasks"], |c| {
                vec![c["name"].to_string(), join(&c["agents"]), join(&c["tasks"])]
            });
        }
        CtlCommand::Clusters(ClustersCmd::Get { name }) => show(out, ok(get(format!("/v1/agent-clusters/{name}?{q}")).await?)?),
        CtlCommand::Agents(AgentsCmd::List) => {
            // Every page: `next` names where the following one starts.
            let mut v = ok(get("/v1/agents".into()).await?)?;
            let mut last_after = String::new();
            while let Some(after) = v["next"].as_str().map(String::from) {
                // The cursor must move forward, or a misbehaving server could keep us here.
                anyhow::ensure!(after > last_after, "the server repeated the page cursor {after:?}");
                last_after = after.clone();
                let page = ok(get(format!("/v1/agents?after={}", urlencode(&after))).await?)?;
                let more = page["agents"].as_array().cloned().unwrap_or_default();
                if let Some(all) = v["agents"].as_array_mut() {
                    all.extend(more);
                }
                v["next"] = page["next"].clone();
            }
            print(out, &v["agents"], &["id", "state", "clusters", "deployed", "desired", "lag", "last_contact", "node", "reported"], |a| {
                let state = if a["connected"] == json!(true) { "connected" } else if a["stale"] == json!(true) { "stale" } else { "idle" };
                vec![
                    plain(&a["id"]),
                    state.into(),
                    join(&a["clusters"]),
                    plain(&a["deployed_revision"]),
                    plain(&a["desired_revision"]),
                    plain(&a["lag"]),
                    a["last_contact_ms"].as_u64().map(format_ms).unwrap_or_else(|| "never".into()),
                    plain(&a["node"]),
                    join(&a["reported"]),
                ]
            });
            if let Some(u) = v["unreachable_nodes"].as_array().filter(|u| !u.is_empty()) {
                eprintln!("note: nodes {} did not answer; their agents' contacts may be missing", join(&Value::Array(u.clone())));
            }
        }
        CtlCommand::Events { set_min_level, set_retention, .. } if set_min_level.is_some() || set_retention.is_some() => {
            // Either setting alone keeps the other as it is.
            let current = ok(get("/v1/events/settings".into()).await?)?;
            let body = json!({
                "min_level": set_min_level.map_or_else(|| current["min_level"].clone(), Value::from),
                "retention": set_retention.map_or_else(|| current["retention"].clone(), Value::from),
            });
            let v = ok(client.send(M::PUT, "/v1/events/settings", Some(&body)).await?)?;
            show(out, v);
        }
        CtlCommand::Events { level, kind, limit, .. } => {
            let mut path = format!("/v1/events?{q}&limit={limit}");
            if let Some(l) = level {
                path.push_str(&format!("&level={}", urlencode(&l)));
            }
            if let Some(k) = kind {
                path.push_str(&format!("&kind={}", urlencode(&k)));
            }
            let v = ok(get(path).await?)?;
            print(out, &v, &["seq", "time", "level", "kind", "message"], |e| {
                vec![plain(&e["seq"]), e["time_ms"].as_u64().map(format_ms).unwrap_or_default(), plain(&e["level"]), plain(&e["kind"]), plain(&e["message"])]
            });
        }
        CtlCommand::Tasks(TasksCmd::List { cluster, server }) => {
            let mut filter = String::new();
            if let Some(c) = cluster {
                filter.push_str(&format!("&cluster={}", urlencode(&c)));
            }
            if let Some(s) = server {
                filter.push_str(&format!("&server={}", urlencode(&s)));
            }
            let v = ok(client.get_all_pages(&format!("/v1/tasks?{q}{filter}")).await?)?;
            print_configs(out, &v);
        }
        CtlCommand::Tasks(TasksCmd::Get { task }) => {
            let v = ok(get(format!("/v1/tasks/{}?{q}", urlencode(&task))).await?)?;
            print_configs(out, &Value::Array(vec![v]));
        }
        CtlCommand::Changesets(ChangesetsCmd::List) => {
            let v = ok(get(format!("/v1/changesets?{q}")).await?)?;
            print(out, &v, &["id", "changes", "base_revision", "created_by", "description"], |c| {
                ["id", "changes", "base_revision", "created_by", "description"].iter().map(|k| c[*k].to_string()).collect()
            });
        }
        CtlCommand::Changesets(ChangesetsCmd::Show { id }) => show(out, ok(get(format!("/v1/changesets/{id}?{q}")).await?)?),
        CtlCommand::Changesets(ChangesetsCmd::Create { description }) => {
            let v = ok(client.send(M::POST, "/v1/changesets", Some(&json!({"description": description}))).await?)?;
            report(out, quiet, &v);
        }
        CtlCommand::Changesets(ChangesetsCmd::Add { id, changes }) => {
            let parsed: Vec<Change> = changes
                .iter()
                .map(|c| serde_json::from_str(c).with_context(|| format!("change {c:?} is not a valid change")))
                .collect::<anyhow::Result<_>>()?;
            let v = ok(client.send(M::POST, &format!("/v1/changesets/{id}/changes"), Some(&json!({"changes": parsed}))).await?)?;
            report(out, quiet, &v);
        }
        CtlCommand::Changesets(ChangesetsCmd::Preview { id }) => {
            let v = ok(get(format!("/v1/changesets/{id}/preview?{q}")).await?)?;
            if out.structured() {
                show(out, v);
            } else if v["valid"] == json!(true) {
                println!("changeset {id} applies cleanly on revision {}:", v["revision"]);
                print_diff(&v["diff"]);
                let reach = &v["reach"];
                let ids: Vec<String> = reach["agent_ids"].as_array().into_iter().flatten().map(plain).collect();
                println!("reaches {} agent(s){}{}", reach["agents"], if ids.is_empty() { "" } else { ": " }, ids.join(", "));
                if reach["next"].is_string() {
                    println!("  (more: GET /v1/changesets/{id}/preview?agents_after={})", plain(&reach["next"]));
                }
                for l in reach["lost"].as_array().into_iter().flatten() {
                    println!("WARNING: task {} in cluster {} would have no usable server (apply needs --confirm)", plain(&l["task"]), plain(&l["cluster"]));
                }
            } else {
                println!("changeset {id} would be rejected: {}", error_message(&v));
            }
        }
        CtlCommand::Changesets(ChangesetsCmd::Discard { id }) => {
            report(out, quiet, &ok(client.send(M::DELETE, &format!("/v1/changesets/{id}"), None).await?)?)
        }
        CtlCommand::Apply { id: Some(id), confirm, .. } => {
            let path = format!("/v1/changesets/{id}/apply{}", if confirm { "?confirm=true" } else { "" });
            match client.send(M::POST, &path, None).await? {
                (409, v) if v["error"]["code"] == "confirmation_required" => {
                    let message = format!("{}\n(see `roster ctl changesets preview {id}`; pass --confirm to apply anyway)", error_message(&v));
                    return Err(anyhow::Error::new(super::client::HttpError { status: 409, message }));
                }
                answer => report(out, quiet, &ok(answer)?),
            }
        }
        CtlCommand::History { revision: Some(r), .. } => show(out, ok(get(format!("/v1/history/{r}?{q}")).await?)?),
        CtlCommand::History { revision: None, from, to, actor_filter, entity, limit } => {
            let mut path = format!("/v1/history?{q}&limit={limit}");
            for (k, v) in [("from", from.map(|x| x.to_string())), ("to", to.map(|x| x.to_string())), ("actor", actor_filter), ("entity", entity)] {
                if let Some(v) = v {
                    path.push_str(&format!("&{k}={}", urlencode(&v)));
                }
            }
            let v = ok(get(path).await?)?;
            print(out, &v["records"], &["revision", "time", "actor", "comment", "events"], |r| {
                let events: Vec<String> = r["events"]
                    .as_array()
                    .map(|a| a.iter().map(event_summary).collect())
                    .unwrap_or_default();
                let time = r["time_ms"].as_u64().map(format_ms).unwrap_or_default();
                vec![r["revision"].to_string(), time, r["actor"].to_string(), r["comment"].to_string(), events.join("; ")]
            });
        }
        CtlCommand::State { revision } => {
            let path = match revision {
                Some(r) => format!("/v1/state?{q}&revision={r}"),
                None => format!("/v1/state?{q}"),
            };
            show(out, ok(get(path).await?)?)
        }
        CtlCommand::Revision => {
            let v = ok(get(format!("/v1/state/digest?{q}")).await?)?;
            if out.structured() {
                show(out, v);
            } else {
                println!("{}", v["revision"]);
            }
        }
        CtlCommand::Diff { from, to } => {
            let path = match to {
                Some(t) => format!("/v1/diff?{q}&from={from}&to={t}"),
                None => format!("/v1/diff?{q}&from={from}"),
            };
            let v = ok(get(path).await?)?;
            if out.structured() {
                show(out, v);
            } else {
                println!("changes from revision {} to {}:", v["from"], v["to"]);
                print_diff(&v["changes"]);
            }
        }
        CtlCommand::Cluster(ClusterCmd::Status) => {
            let v = ok(get("/v1/cluster".into()).await?)?;
            if out.structured() {
                show(out, v);
            } else {
                println!("leader {}  term {}  revision {}", plain(&v["leader"]), v["term"], v["revision"]);
                println!(
                    "node {} ({}): last log index {}  applied {}  snapshot {}  purged {}",
                    plain(&v["node_id"]),
                    plain(&v["state"]).to_lowercase(),
                    plain(&v["last_log_index"]),
                    plain(&v["applied_index"]),
                    plain(&v["snapshot_index"]),
                    plain(&v["purged_index"])
                );
                print(out, &v["members"], &["id", "addr", "role", "lag", "version", "priority"], |m| {
                    let id = m["id"].to_string();
                    let role = if v["leader"] == m["id"] { "leader" } else if m["voter"] == json!(true) { "voter" } else { "learner" };
                    let version = if m["version"].is_null() { "unreachable".to_string() } else { plain(&m["version"]) };
                    let priority = if m["leader_priority"].is_null() { "-".to_string() } else { plain(&m["leader_priority"]) };
                    vec![id.clone(), plain(&m["addr"]), role.into(), plain(&v["follower_lag"][&id]), version, priority]
                });
            }
        }
        CtlCommand::Cluster(ClusterCmd::AddNode { id, addr, learner }) => {
            let v = ok(client.send(M::POST, "/v1/cluster/nodes", Some(&json!({"id": id, "addr": addr, "learner": learner}))).await?)?;
            println!("node {id} added{}", if v["learner"] == true { " as a learner" } else { "" });
        }
        CtlCommand::Cluster(ClusterCmd::TransferLeader { id }) => {
            let v = ok(client.send(M::POST, "/v1/cluster/leader", Some(&json!({"node": id}))).await?)?;
            if out.structured() {
                show(out, v);
            } else {
                println!("leader is now node {} (was node {}); writes paused {} ms", plain(&v["leader"]), plain(&v["previous"]), v["took_ms"]);
            }
        }
        CtlCommand::Cluster(ClusterCmd::RemoveNode { id }) => {
            ok(client.send(M::DELETE, &format!("/v1/cluster/nodes/{id}"), None).await?)?;
            println!("node {id} removed");
        }
        CtlCommand::Tokens(TokensCmd::List) => {
            let v = ok(get(format!("/v1/tokens?{q}")).await?)?;
            print(out, &v, &["name", "role", "agent", "source", "created_by"], |t| {
                vec![plain(&t["name"]), plain(&t["role"]), plain(&t["agent"]), plain(&t["source"]), plain(&t["created_by"])]
            });
        }
        CtlCommand::Tokens(TokensCmd::Create { name, role, agent, secret_file }) => {
            if let Some(f) = secret_file.as_ref().filter(|f| f.symlink_metadata().is_ok()) {
                bail!("{} already exists; the secret file must be new", f.display());
            }
            let v = ok(client.send(M::POST, "/v1/tokens", Some(&json!({"name": name, "role": role, "agent": agent}))).await?)?;
            if let Some(f) = secret_file {
                crate::tls::write_private(&f, &format!("{}\n", plain(&v["token"])))?;
                println!("token {} ({}) created; its secret is in {} (mode 0600)", plain(&v["name"]), plain(&v["role"]), f.display());
            } else if quiet {
                println!("{}", plain(&v["token"]));
            } else if out.structured() {
                show(out, v);
            } else {
                println!("token {} ({}) created; its secret, shown only now:", plain(&v["name"]), plain(&v["role"]));
                println!("{}", plain(&v["token"]));
            }
        }
        CtlCommand::Tokens(TokensCmd::Revoke { name }) => {
            ok(client.send(M::DELETE, &format!("/v1/tokens/{name}"), None).await?)?;
            println!("token {name} revoked");
        }
        CtlCommand::Backup { output } => {
            // A backup streams for as long as the data is large: no whole-request timeout.
            let options = super::ClientOptions { request_timeout: None, connect_timeout: None };
            let streaming = Client::with(args.conn.transport()?, args.conn.endpoints.clone(), options)?;
            crate::backup::download(&streaming, &output).await?;
        }
        CtlCommand::Whoami => {
            let v = ok(get("/v1/whoami".into()).await?)?;
            if out.structured() || v["name"].is_null() {
                show(out, v);
            } else {
                println!("{} ({})", plain(&v["name"]), plain(&v["role"]));
            }
        }
        CtlCommand::Clusters(ClustersCmd::AddAgent { cluster, agent }) if stage.is_none() => {
            // An agent joins its cluster whether or not it has made contact yet: one that has
            // not is registered in the same revision (as a declarative apply does).
            let (cluster, agent) = (ClusterName::new(cluster)?, AgentId::new(agent)?);
            let add = Change::AddAgentToCluster { cluster, agent: agent.clone() };
            let (status, v) = client.send(M::POST, "/v1/commands", Some(&json!({"changes": [add]}))).await?;
            let unregistered = status == 404 && v["error"]["message"].as_str().is_some_and(|m| m.starts_with("agent "));
            let v = if unregistered {
                let key = args.idempotency_key.clone().unwrap_or_else(random_key);
                let both = json!({"changes": [Change::RegisterAgent { id: agent }, &add]});
                let with_key = |suffix: &str| client.clone().header(crate::api::HEADER_IDEMPOTENCY_KEY, format!("{key}-{suffix}"));
                let (status, v) = with_key("register").send(M::POST, "/v1/commands", Some(&both)).await?;
                if status == 409 && v["error"]["code"] == "already_exists" {
                    // It made contact in between: now the plain add does it.
                    with_key("add").send(M::POST, "/v1/commands", Some(&json!({"changes": [add]}))).await?
                } else {
                    (status, v)
                }
            } else {
                (status, v)
            };
            report(out, quiet, &ok(v)?);
        }
        other => {
            let changes = to_changes(other)?;
            let v = match &stage {
                Some(id) => client.send(M::POST, &format!("/v1/changesets/{id}/changes"), Some(&json!({"changes": changes}))).await?,
                None => client.send(M::POST, "/v1/commands", Some(&json!({"changes": changes}))).await?,
            };
            report(out, quiet, &ok(v)?);
        }
    }
    Ok(())
}

/// The changes a mutating subcommand stands for (applied as one revision).
fn to_changes(cmd: CtlCommand) -> anyhow::Result<Vec<Change>> {
    let (sn, cn, tn) = (ServerName::new, ClusterName::new, TaskName::new);
    match cmd {
        CtlCommand::Tasks(TasksCmd::AddServer { task, cluster, server, position, priority, weight }) => {
            let (task, cluster, server) = (tn(task)?, cn(cluster)?, sn(server)?);
            let mut changes =
                vec![Change::AddServerToList { task: task.clone(), cluster: cluster.clone(), server: server.clone(), position }];
            if priority.is_some() || weight.is_some() {
                changes.push(Change::SetServerWeight { task, cluster, server, priority, weight });
            }
            Ok(changes)
        }
        CtlCommand::Tasks(TasksCmd::SetWeight { task, cluster, server, priority, weight }) => {
            Ok(vec![Change::SetServerWeight { task: tn(task)?, cluster: cn(cluster)?, server: sn(server)?, priority, weight }])
        }
        other => Ok(vec![to_change(other)?]),
    }
}

/// The change a single-change subcommand stands for.
fn to_change(cmd: CtlCommand) -> anyhow::Result<Change> {
    let sn = |s: String| ServerName::new(s);
    let cn = |s: String| ClusterName::new(s);
    let tn = |s: String| TaskName::new(s);
    Ok(match cmd {
        CtlCommand::Servers(ServersCmd::Add { name, url: Some(url), .. }) => {
            let (scheme, host, port, pool) = parse_server_url(&url)?;
            Change::AddServer { name: sn(name)?, host, port, pool, scheme: Some(scheme) }
        }
        CtlCommand::Servers(ServersCmd::Add { name, host, port, pool, scheme, url: None }) => Change::AddServer {
            name: sn(name)?,
            host: Host::new(host.unwrap_or_default())?,
            port: port.unwrap_or(DEFAULT_SERVER_PORT),
            pool: pool.map(PoolName::new).transpose()?,
            scheme: scheme.map(Scheme::new).transpose()?,
        },
        CtlCommand::Servers(ServersCmd::Update { name, url: Some(url), .. }) => {
            let (scheme, host, port, pool) = parse_server_url(&url)?;
            let clear_pool = pool.is_none();
            Change::UpdateServer { name: sn(name)?, host: Some(host), port: Some(port), pool, clear_pool, scheme: Some(scheme) }
        }
        CtlCommand::Servers(ServersCmd::Update { name, host, port, pool, clear_pool, scheme, url: None }) => Change::UpdateServer {
            name: sn(name)?,
            host: host.map(Host::new).transpose()?,
            port,
            pool: pool.map(PoolName::new).transpose()?,
            clear_pool,
            scheme: scheme.map(Scheme::new).transpose()?,
        },
        CtlCommand::Servers(ServersCmd::Delete { name }) => Change::DeleteServer { name: sn(name)? },
        CtlCommand::Servers(ServersCmd::Enable { name }) => Change::EnableServer { name: sn(name)? },
        CtlCommand::Servers(ServersCmd::Disable { name }) => Change::DisableServer { name: sn(name)? },
        CtlCommand::Clusters(ClustersCmd::Create { name }) => Change::CreateCluster { name: cn(name)? },
        CtlCommand::Clusters(ClustersCmd::Delete { name }) => Change::DeleteCluster { name: cn(name)? },
        CtlCommand::Clusters(ClustersCmd::AddAgent { cluster, agent }) => {
            Change::AddAgentToCluster { cluster: cn(cluster)?, agent: AgentId::new(agent)? }
        }
        CtlCommand::Clusters(ClustersCmd::RemoveAgent { cluster, agent }) => {
            Change::RemoveAgentFromCluster { cluster: cn(cluster)?, agent: AgentId::new(agent)? }
        }
        CtlCommand::Agents(AgentsCmd::Register { id }) => Change::RegisterAgent { id: AgentId::new(id)? },
        CtlCommand::Agents(AgentsCmd::Remove { id }) => Change::RemoveAgent { id: AgentId::new(id)? },
        CtlCommand::Tasks(TasksCmd::Create { task }) => Change::CreateTask { name: tn(task)? },
        CtlCommand::Tasks(TasksCmd::Delete { task }) => Change::DeleteTask { name: tn(task)? },
        CtlCommand::Tasks(TasksCmd::SetServers { task, cluster, servers }) => Change::SetServers {
            task: tn(task)?,
            cluster: cn(cluster)?,
            servers: servers.into_iter().map(sn).collect::<Result<_, _>>()?,
        },
        CtlCommand::Tasks(TasksCmd::RemoveServer { task, cluster, server }) => {
            Change::RemoveServerFromList { task: tn(task)?, cluster: cn(cluster)?, server: sn(server)? }
        }
        CtlCommand::Tasks(TasksCmd::Move { task, cluster, server, direction }) => Change::MoveServer {
            task: tn(task)?,
            cluster: cn(cluster)?,
            server: sn(server)?,
            direction: match direction {
                Dir::Up => MoveDirection::Up,
                Dir::Down => MoveDirection::Down,
            },
        },
        CtlCommand::Tasks(TasksCmd::LoadBalancing { task, cluster, state }) => {
            Change::SetLoadBalancing { task: tn(task)?, cluster: cn(cluster)?, enabled: matches!(state, OnOff::On) }
        }
        CtlCommand::Tasks(TasksCmd::DeleteConfig { task, cluster }) => Change::DeleteTaskConfig { task: tn(task)?, cluster: cn(cluster)? },
        other => bail!("{other:?} is not a change"),
    })
}

pub(super) fn ok((status, v): (u16, Value)) -> anyhow::Result<Value> {
    if (200..300).contains(&status) {
        Ok(v)
    } else {
        Err(anyhow::Error::new(super::client::HttpError { status, message: error_message(&v) }))
    }
}

use crate::domain::percent_encode as urlencode;
