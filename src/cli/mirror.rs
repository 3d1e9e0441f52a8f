//! `ferry mirror`: links to a source cluster, mirror topics, group sync, status, verify
//! and promote, sent to the Ferry at `--bootstrap` over its admin API (see
//! docs/migration.md). Exit 1 whenever what was asked did not happen.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value as Json};

use ferry::admin::mirror::{self, PartitionComparison};
use ferry::admin::render::{Table, Value};
use ferry::client::{ClientOptions, Cluster};

use super::groups::{client_options, ClusterArgs, Output};
use super::topics::block_on;

#[derive(Debug, Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: MirrorCommand,
}

#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Create a link to a source cluster.
    Create {
        link: String,
        /// A broker of the source cluster.
        #[arg(long, value_name = "HOST:PORT")]
        source: String,
        /// Kafka client properties for the source connection (a .properties file).
        #[arg(long, value_name = "FILE")]
        source_config: Option<PathBuf>,
        /// Copy at most this many bytes per second over the link (default: no limit).
        /// Run `create` again with the same source to change it or the properties.
        #[arg(long, value_name = "BYTES")]
        max_bytes_per_second: Option<u64>,
    },
    /// Delete a link that mirrors nothing any more.
    Delete { link: String },
    /// Mirror topics and sync groups over a link.
    Add {
        link: String,
        /// Topics to mirror, comma-separated.
        #[arg(long, value_delimiter = ',')]
        topics: Vec<String>,
        /// Mirror every source topic whose whole name matches (resolved now).
        #[arg(long)]
        topic_regex: Option<String>,
        /// Groups whose committed offsets to sync, comma-separated.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// Sync every source group whose whole name matches.
        #[arg(long)]
        group_regex: Option<String>,
        /// Copy the source's ACLs (pending until Ferry has an authorizer; `status` shows
        /// the source's ACLs meanwhile).
        #[arg(long)]
        sync_acls: bool,
    },
    /// Stop copying a topic for now (it stays read-only).
    Pause {
        link: String,
        #[arg(long)]
        topic: String,
    },
    /// Copy a paused or failed topic again.
    Resume {
        link: String,
        #[arg(long)]
        topic: String,
    },
    /// Stop mirroring a topic and make it an ordinary topic as it is, without checks.
    Remove {
        link: String,
        #[arg(long)]
        topic: String,
    },
    /// Per topic and partition: source and mirror offsets, lag, throughput, state (with a
    /// progress bar on a terminal); per group: source and Ferry offsets and where it is
    /// active; the source's ACLs.
    Status {
        link: Option<String>,
        /// Redraw every second until every mirroring partition is in sync.
        #[arg(long)]
        watch: bool,
    },
    /// Compare the mirror with its source batch by batch; exit 1 on any difference.
    Verify {
        link: String,
        #[arg(long)]
        topic: Option<String>,
        /// Kafka client properties for reading the source (security settings).
        #[arg(long, value_name = "FILE")]
        source_command_config: Option<std::path::PathBuf>,
    },
    /// Producer cutover: wait until the source stopped and the mirror has all of it,
    /// verify, sync groups a last time and make the topic writable.
    Promote {
        link: String,
        #[arg(long)]
        topic: String,
        /// Skip the checks (source still growing, lag, open transactions, divergence,
        /// groups still consuming on the source).
        #[arg(long)]
        force: bool,
        /// Producers first: promote although synced groups still consume the topic on the
        /// source (they drain it, then move with their last source commit).
        #[arg(long)]
        keep_groups_on_source: bool,
        /// How long to wait for the mirror to catch up, in seconds.
        #[arg(long, default_value_t = 30)]
        timeout_s: u64,
        /// Kafka client properties for reading the source (security settings).
        #[arg(long, value_name = "FILE")]
        source_command_config: Option<std::path::PathBuf>,
    },
}

pub fn run(args: MirrorArgs) -> i32 {
    block_on(async move {
        let bootstrap = args.cluster.bootstrap.clone();
        let output = args.cluster.output;
        let options = args.cluster.options().map_err(|e| e.to_string())?;
        let request = match args.command {
            MirrorCommand::Create {
                link,
                source,
                source_config,
                max_bytes_per_second,
            } => {
                let config = match source_config {
                    Some(path) => {
                        let text = std::fs::read_to_string(&path)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        ferry::properties::parse(&text)
                    }
                    None => BTreeMap::new(),
                };
                json!({ "op": "create_link", "link": link, "source": source, "source_config": config,
                        "max_bytes_per_second": max_bytes_per_second })
            }
            MirrorCommand::Delete { link } => json!({ "op": "delete_link", "link": link }),
            MirrorCommand::Add {
                link,
                topics,
                topic_regex,
                groups,
                group_regex,
                sync_acls,
            } => {
                if topics.is_empty()
                    && topic_regex.is_none()
                    && groups.is_empty()
                    && group_regex.is_none()
                    && !sync_acls
                {
                    return Err(
                        "name --topics, --topic-regex, --groups, --group-regex or --sync-acls"
                            .into(),
                    );
                }
                json!({ "op": "add", "link": link, "topics": topics, "topic_regex": topic_regex,
                        "groups": groups, "group_regex": group_regex, "sync_acls": sync_acls })
            }
            MirrorCommand::Pause { link, topic } => {
                json!({ "op": "pause", "link": link, "topic": topic })
            }
            MirrorCommand::Resume { link, topic } => {
                json!({ "op": "resume", "link": link, "topic": topic })
            }
            MirrorCommand::Remove { link, topic } => {
                json!({ "op": "remove", "link": link, "topic": topic })
            }
            MirrorCommand::Status { link, watch } => {
                let terminal = std::io::stdout().is_terminal() && matches!(output, Output::Table);
                loop {
                    let answer = mirror::call(
                        &bootstrap,
                        &options,
                        json!({ "op": "status", "link": link }),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    if watch && terminal {
                        // Clear the screen and draw from its top.
                        print!("\x1b[H\x1b[2J");
                    }
                    print_status(&answer, output, terminal);
                    if !watch || all_in_sync(&answer) {
                        return Ok(());
                    }
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
            MirrorCommand::Verify {
                link,
                topic,
                source_command_config,
            } => {
                let source_options =
                    client_options(source_command_config.as_deref()).map_err(|e| e.to_string())?;
                let clients = (&options, &source_options);
                return verify(&bootstrap, clients, &link, topic, output).await;
            }
            MirrorCommand::Promote {
                link,
                topic,
                force,
                keep_groups_on_source,
                timeout_s,
                source_command_config,
            } => {
                if !force {
                    let source_options = client_options(source_command_config.as_deref())
                        .map_err(|e| e.to_string())?;
                    let clients = (&options, &source_options);
                    verify(
                        &bootstrap,
                        clients,
                        &link,
                        Some(topic.clone()),
                        Output::Table,
                    )
                    .await
                    .map_err(|e| format!("not promoted: {e}"))?;
                }
                json!({ "op": "promote", "link": link, "topic": topic, "force": force, "keep_groups_on_source": keep_groups_on_source,
                        "timeout_ms": timeout_s.saturating_mul(1_000) })
            }
        };
        let answer = mirror::call(&bootstrap, &options, request)
            .await
            .map_err(|e| e.to_string())?;
        match output {
            Output::Json => println!("{answer}"),
            Output::Table => println!("{}", summary(&answer)),
        }
        Ok(())
    })
}

/// One line saying what an operation did.
fn summary(answer: &Json) -> String {
    let link = answer["link"].as_str().unwrap_or_default();
    if let Some(created) = answer["created"].as_bool() {
        return if created {
            format!("created link {link}")
        } else {
            format!("link {link} updated (it reconnects with these settings)")
        };
    }
    if answer["deleted"].as_bool() == Some(true) {
        return format!("deleted link {link}");
    }
    if let Some(added) = answer["added_topics"].as_array() {
        return format!(
            "link {link}: now mirroring {} more topic(s); groups synced: {}",
            added.len(),
            answer["groups"]
        );
    }
    if answer["promoted"].as_bool() == Some(true) {
        return format!(
            "promoted {}: it takes writes on Ferry now",
            answer["topic"].as_str().unwrap_or_default()
        );
    }
    if answer["removed"].as_bool() == Some(true) {
        return format!(
            "{} is no longer mirrored by {link}",
            answer["topic"].as_str().unwrap_or_default()
        );
    }
    if let Some(state) = answer["state"].as_str() {
        return format!("{}: {state}", answer["topic"].as_str().unwrap_or_default());
    }
    answer.to_string()
}

fn number(value: &Json) -> Value {
    value.as_i64().map_or(Value::Missing, Value::Number)
}

/// Whether every mirroring partition of every link has what its source has.
fn all_in_sync(answer: &Json) -> bool {
    let links = answer["links"].as_array().cloned().unwrap_or_default();
    links.iter().all(|link| {
        let topics = link["topics"].as_array().cloned().unwrap_or_default();
        topics.iter().all(|t| {
            t["state"] != "mirroring"
                || t["partitions"]
                    .as_array()
                    .is_some_and(|ps| !ps.is_empty() && ps.iter().all(|p| p["lag_records"] == 0))
        })
    })
}

/// `[#######---]  70%`: how much of the source's retained range the mirror has.
fn progress_bar(p: &Json) -> String {
    const WIDTH: i64 = 20;
    let start = p["source_log_start_offset"].as_i64().unwrap_or(0);
    let end = p["source_log_end_offset"].as_i64().unwrap_or(0);
    let mirrored = p["mirrored_log_end_offset"].as_i64().unwrap_or(0);
    let percent = if end <= start {
        100
    } else {
        ((mirrored.clamp(start, end) - start).saturating_mul(100) / (end - start)).clamp(0, 100)
    };
    let filled = usize::try_from(percent * WIDTH / 100).unwrap_or(0);
    let empty = usize::try_from(WIDTH).unwrap_or(0).saturating_sub(filled);
    format!(
        "[{}{}] {percent:>3}%",
        "#".repeat(filled),
        "-".repeat(empty)
    )
}

fn print_status(answer: &Json, output: Output, terminal: bool) {
    if matches!(output, Output::Json) {
        println!("{answer}");
        return;
    }
    let links = answer["links"].as_array().cloned().unwrap_or_default();
    if links.is_empty() {
        println!("no links");
    }
    for link in links {
        println!(
            "link {} <- {}{}",
            link["link"].as_str().unwrap_or_default(),
            link["source"].as_str().unwrap_or_default(),
            link["error"]
                .as_str()
                .map(|e| format!("  (source problem: {e})"))
                .unwrap_or_default()
        );
        let mut table = Table::new(&[
            "topic",
            "partition",
            "state",
            "source_start",
            "source_end",
            "mirrored_end",
            "lag_records",
            "lag_ms",
            "bytes_per_s",
        ]);
        let mut notes = Vec::new();
        for topic in link["topics"].as_array().cloned().unwrap_or_default() {
            let name = topic["topic"].as_str().unwrap_or_default().to_string();
            let state = topic["state"].as_str().unwrap_or_default().to_string();
            if let Some(reason) = topic["reason"].as_str() {
                notes.push(format!("{name}: {reason}"));
            }
            if let Some(recovery) = topic["recovery"].as_str() {
                notes.push(format!("{name}: to continue: {recovery}"));
            }
            let partitions = topic["partitions"].as_array().cloned().unwrap_or_default();
            if partitions.is_empty() {
                table.push(vec![
                    name.clone().into(),
                    Value::Missing,
                    state.clone().into(),
                    Value::Missing,
                    Value::Missing,
                    Value::Missing,
                    Value::Missing,
                    Value::Missing,
                    Value::Missing,
                ]);
            }
            for p in partitions {
                let shown = if state == "mirroring" && p["lag_records"].as_i64() == Some(0) {
                    "in sync".to_string()
                } else if state == "mirroring" {
                    "catching up".to_string()
                } else {
                    state.clone()
                };
                let shown = if terminal {
                    format!("{shown} {}", progress_bar(&p))
                } else {
                    shown
                };
                table.push(vec![
                    name.clone().into(),
                    number(&p["partition"]),
                    shown.into(),
                    number(&p["source_log_start_offset"]),
                    number(&p["source_log_end_offset"]),
                    number(&p["mirrored_log_end_offset"]),
                    number(&p["lag_records"]),
                    number(&p["lag_ms"]),
                    number(&p["bytes_per_second"]),
                ]);
            }
        }
        print!("{}", table.to_text());
        for note in notes {
            println!("  {note}");
        }
        let groups = link["groups"].as_object().cloned().unwrap_or_default();
        if !groups.is_empty() {
            let mut table = Table::new(&[
                "group",
                "active_on",
                "topic",
                "partition",
                "source_offset",
                "ferry_offset",
            ]);
            for (group, g) in groups {
                let active = g["active_on"].as_str().unwrap_or_default().to_string();
                for o in g["offsets"].as_array().cloned().unwrap_or_default() {
                    table.push(vec![
                        group.clone().into(),
                        active.clone().into(),
                        o["topic"].as_str().unwrap_or_default().into(),
                        number(&o["partition"]),
                        number(&o["source_offset"]),
                        number(&o["ferry_offset"]),
                    ]);
                }
                if let Some(error) = g["error"].as_str() {
                    println!("  group {group}: {error}");
                }
            }
            print!("{}", table.to_text());
        }
        print_acls(&link);
    }
}

fn print_acls(link: &Json) {
    if let Some(why) = link["source_acls"]["unavailable"].as_str() {
        println!("source ACLs: not readable: {why}");
    }
    if let Some(entries) = link["source_acls"]["entries"].as_array() {
        let mut table = Table::new(&[
            "resource_type",
            "resource_name",
            "pattern_type",
            "principal",
            "host",
            "operation",
            "permission",
        ]);
        for acl in entries {
            let cell = |k: &str| Value::from(acl[k].as_str().unwrap_or_default());
            table.push(vec![
                cell("resource_type"),
                cell("resource_name"),
                cell("pattern_type"),
                cell("principal"),
                cell("host"),
                cell("operation"),
                cell("permission"),
            ]);
        }
        println!("source ACLs: {}", entries.len());
        print!("{}", table.to_text());
    }
    if let Some(pending) = link["acl_sync"].as_str() {
        println!("ACL sync: {pending}");
    }
}

async fn verify(
    bootstrap: &str,
    (options, source_options): (&ClientOptions, &ClientOptions),
    link: &str,
    topic: Option<String>,
    output: Output,
) -> Result<(), String> {
    let (source, topics) = mirror::link_source(bootstrap, options, link)
        .await
        .map_err(|e| e.to_string())?;
    let topics = match topic {
        Some(topic) => vec![topic],
        None => topics,
    };
    let mut ferry = Cluster::connect_with(bootstrap, "ferry-mirror-verify", options)
        .await
        .map_err(|e| e.to_string())?;
    let mut source_cluster = Cluster::connect_with(&source, "ferry-mirror-verify", source_options)
        .await
        .map_err(|e| format!("source {source}: {e}"))?;
    let mut all: Vec<PartitionComparison> = Vec::new();
    for topic in &topics {
        all.extend(
            mirror::verify(&mut ferry, &mut source_cluster, topic)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    let mut table = Table::new(&[
        "topic",
        "partition",
        "from",
        "to",
        "batches",
        "records",
        "first_offset",
        "last_offset",
        "digest",
        "result",
    ]);
    for c in &all {
        table.push(vec![
            c.topic.clone().into(),
            i64::from(c.partition).into(),
            c.from.into(),
            c.to.into(),
            i64::try_from(c.batches).unwrap_or(i64::MAX).into(),
            i64::try_from(c.records).unwrap_or(i64::MAX).into(),
            c.first_offset.into(),
            c.last_offset.into(),
            format!("{:08x}", c.digest).into(),
            c.divergence
                .clone()
                .map_or("equal".to_string(), |d| format!("DIVERGED {d}"))
                .into(),
        ]);
    }
    match output {
        Output::Table => print!("{}", table.to_text()),
        Output::Json => println!("{}", table.to_json()),
    }
    let diverged = all.iter().filter(|c| c.divergence.is_some()).count();
    if diverged > 0 {
        return Err(format!("{diverged} partition(s) differ from the source"));
    }
    Ok(())
}
