//! `ferry groups`: list, describe, delete, delete-offsets and reset-offsets for consumer
//! groups on any Kafka-protocol cluster, as aligned tables or `--output json`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use ferry::admin::groups::{self, ResetScope, ResetTarget};
use ferry::admin::render::{Table, Value};
use ferry::admin::time;
use ferry::client::{ClientError, ClientOptions, ClientSecurity, Cluster};

/// The options every over-the-wire tool shares: where the cluster is, and how to print.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// A broker of the cluster to talk to.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub output: Output,
    /// Kafka client properties for the connection: `security.protocol`, `ssl.*`,
    /// `sasl.mechanism`, `sasl.username`/`sasl.password` or `sasl.jaas.config`.
    #[arg(long, value_name = "FILE", global = true)]
    pub command_config: Option<PathBuf>,
}

impl ClusterArgs {
    /// How to connect: the security of `--command-config`.
    pub fn options(&self) -> Result<ClientOptions, ClientError> {
        client_options(self.command_config.as_deref())
    }
}

/// Client options from an optional `--command-config` file.
pub fn client_options(path: Option<&std::path::Path>) -> Result<ClientOptions, ClientError> {
    let Some(path) = path else {
        return Ok(ClientOptions::default());
    };
    let security = ClientSecurity::from_file(path).map_err(ClientError::Refused)?;
    Ok(ClientOptions {
        security: std::sync::Arc::new(security),
        ..ClientOptions::default()
    })
}

#[derive(Debug, Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// List groups with their state and protocol type.
    List,
    /// Show a group's state, members and, per partition, committed offset, log end and lag.
    Describe { group: String },
    /// Delete groups (only empty groups can be deleted).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Delete a group's committed offsets for partitions it does not consume.
    DeleteOffsets {
        #[arg(long)]
        group: String,
        /// TOPIC (every partition the group committed) or TOPIC:P,P,... (repeatable).
        #[arg(long, required = true)]
        topic: Vec<String>,
    },
    /// Move a group's committed offsets (the group must have no active members). Without
    /// --execute only shows the plan. Creates the group if it does not exist.
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    #[arg(long)]
    group: String,
    /// TOPIC or TOPIC:P,P,... (repeatable).
    #[arg(long, conflicts_with = "all_topics")]
    topic: Vec<String>,
    /// Every partition the group has committed offsets for.
    #[arg(long)]
    all_topics: bool,
    #[arg(long, group = "target")]
    to_earliest: bool,
    #[arg(long, group = "target")]
    to_latest: bool,
    #[arg(
        long,
        group = "target",
        value_name = "OFFSET",
        allow_hyphen_values = true
    )]
    to_offset: Option<i64>,
    #[arg(long, group = "target", value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM] (UTC when no offset is given).
    #[arg(long, group = "target", value_name = "DATETIME")]
    to_datetime: Option<String>,
    /// An ISO-8601 duration back from now, e.g. P1DT2H30M.
    #[arg(long, group = "target", value_name = "DURATION")]
    by_duration: Option<String>,
    /// A CSV file of topic,partition,offset lines.
    #[arg(long, group = "target", value_name = "CSV")]
    from_file: Option<PathBuf>,
    /// Show the plan without committing (the default).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    execute: bool,
}

/// `TOPIC` or `TOPIC:0,1,2`.
fn parse_topic_spec(spec: &str) -> Result<(String, Option<Vec<i32>>), String> {
    match spec.split_once(':') {
        None => Ok((spec.to_string(), None)),
        Some((topic, list)) => {
            let partitions = list
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .map_err(|_| format!("bad partition {p:?} in {spec:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((topic.to_string(), Some(partitions)))
        }
    }
}

fn target(args: &ResetArgs) -> Result<ResetTarget, String> {
    Ok(if args.to_earliest {
        ResetTarget::Earliest
    } else if args.to_latest {
        ResetTarget::Latest
    } else if let Some(offset) = args.to_offset {
        if offset < 0 {
            return Err(format!(
                "--to-offset {offset}: an offset is 0 or more (to move back from the current \
                 position, use --shift-by {offset})"
            ));
        }
        ResetTarget::Offset(offset)
    } else if let Some(n) = args.shift_by {
        ResetTarget::ShiftBy(n)
    } else if let Some(text) = &args.to_datetime {
        ResetTarget::Timestamp(time::parse_datetime_ms(text)?)
    } else if let Some(text) = &args.by_duration {
        ResetTarget::Timestamp(ferry::broker::now_ms() - time::parse_duration_ms(text)?)
    } else if let Some(path) = &args.from_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ResetTarget::Explicit(groups::parse_offsets_csv(&text)?)
    } else {
        return Err(
            "choose one of --to-earliest, --to-latest, --to-offset, --shift-by, \
                    --to-datetime, --by-duration, --from-file"
                .to_string(),
        );
    })
}

pub(crate) fn print(table: &Table, output: Output) {
    match output {
        Output::Table => print!("{}", table.to_text()),
        Output::Json => println!("{}", table.to_json()),
    }
}

/// An error (exit status 1) when any result code is not 0: the table already says which.
fn fail_unless_all_ok(codes: impl Iterator<Item = i16>, what: &str) -> Result<(), String> {
    let codes: Vec<i16> = codes.collect();
    let failed = codes.iter().filter(|c| **c != 0).count();
    if failed == 0 {
        Ok(())
    } else {
        Err(format!(
            "{failed} of {} {what} (see the result column)",
            codes.len()
        ))
    }
}

fn kafka_error_name(code: i16) -> String {
    proto_kafka::ResponseError::try_from_code(code)
        .map_or_else(|| "OK".to_string(), |e| e.to_string())
}

async fn run_command(args: GroupsArgs) -> Result<(), String> {
    let err = |e: ClientError| e.to_string();
    let mut cluster = Cluster::connect_with(
        &args.cluster.bootstrap,
        "ferry-groups",
        &args.cluster.options().map_err(|e| e.to_string())?,
    )
    .await
    .map_err(err)?;
    match args.command {
        GroupsCommand::List => {
            let mut table = Table::new(&["group", "state", "protocol_type"]);
            for g in groups::list(&mut cluster).await.map_err(err)? {
                table.push(vec![g.group.into(), g.state.into(), g.protocol_type.into()]);
            }
            print(&table, args.cluster.output);
        }
        GroupsCommand::Describe { group } => {
            describe(&mut cluster, &group, args.cluster.output).await?
        }
        GroupsCommand::Delete { groups: names } => {
            let mut table = Table::new(&["group", "result"]);
            let results = groups::delete(&mut cluster, &names).await.map_err(err)?;
            for (group, code) in &results {
                table.push(vec![group.clone().into(), kafka_error_name(*code).into()]);
            }
            print(&table, args.cluster.output);
            fail_unless_all_ok(
                results.iter().map(|(_, code)| *code),
                "groups were not deleted",
            )?;
        }
        GroupsCommand::DeleteOffsets { group, topic } => {
            let specs: Vec<(String, Option<Vec<i32>>)> = topic
                .iter()
                .map(|s| parse_topic_spec(s))
                .collect::<Result<_, _>>()?;
            let partitions = groups::offsets_to_delete(&mut cluster, &group, &specs)
                .await
                .map_err(err)?;
            let mut table = Table::new(&["topic", "partition", "result"]);
            let results = groups::delete_offsets(&mut cluster, &group, &partitions)
                .await
                .map_err(err)?;
            for (t, p, code) in &results {
                table.push(vec![
                    t.clone().into(),
                    i64::from(*p).into(),
                    kafka_error_name(*code).into(),
                ]);
            }
            print(&table, args.cluster.output);
            fail_unless_all_ok(results.iter().map(|r| r.2), "offsets were not deleted")?;
        }
        GroupsCommand::ResetOffsets(reset) => {
            let scope = if reset.all_topics {
                ResetScope::AllTopics
            } else if reset.topic.is_empty() {
                return Err("choose --topic TOPIC[:P,...] or --all-topics".to_string());
            } else {
                ResetScope::Topics(
                    reset
                        .topic
                        .iter()
                        .map(|s| parse_topic_spec(s))
                        .collect::<Result<_, _>>()?,
                )
            };
            let plan = groups::reset_offsets(
                &mut cluster,
                &reset.group,
                &scope,
                &target(&reset)?,
                reset.execute,
            )
            .await
            .map_err(err)?;
            let mut table = Table::new(&["group", "topic", "partition", "new_offset"]);
            for ((topic, partition), offset) in plan {
                table.push(vec![
                    reset.group.clone().into(),
                    topic.into(),
                    i64::from(partition).into(),
                    offset.into(),
                ]);
            }
            print(&table, args.cluster.output);
            if !reset.execute && matches!(args.cluster.output, Output::Table) {
                eprintln!("(dry run: nothing was committed; add --execute to apply)");
            }
        }
    }
    Ok(())
}

async fn describe(cluster: &mut Cluster, group: &str, output: Output) -> Result<(), String> {
    let details = groups::describe(cluster, group)
        .await
        .map_err(|e| e.to_string())?;
    let mut table = Table::new(&[
        "group",
        "topic",
        "partition",
        "current_offset",
        "log_end_offset",
        "lag",
        "consumer_id",
        "host",
        "client_id",
    ]);
    for p in &details.partitions {
        table.push(vec![
            details.group.clone().into(),
            p.topic.clone().into(),
            i64::from(p.partition).into(),
            p.committed.into(),
            p.log_end.into(),
            p.lag.into(),
            p.member_id.clone().into(),
            p.host.clone().into(),
            p.client_id.clone().into(),
        ]);
    }
    let mut members = Table::new(&[
        "consumer_id",
        "group_instance_id",
        "host",
        "client_id",
        "assignment",
    ]);
    for m in &details.members {
        let assignment: Vec<String> = m
            .assignment
            .iter()
            .map(|(t, ps)| {
                format!(
                    "{t}({})",
                    ps.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        members.push(vec![
            m.member_id.clone().into(),
            m.group_instance_id.clone().into(),
            m.host.clone().into(),
            m.client_id.clone().into(),
            Value::Text(assignment.join(" ")),
        ]);
    }
    match output {
        Output::Table => {
            println!(
                "Group {} is {} (protocol type {:?}, protocol {:?}, {} members)\n",
                details.group,
                details.state,
                details.protocol_type,
                details.protocol,
                details.members.len()
            );
            print!("{}", table.to_text());
            if !details.members.is_empty() {
                println!();
                print!("{}", members.to_text());
            }
        }
        Output::Json => {
            let json = ferry::admin::render::json_string;
            println!(
                "{{\"group\":{},\"state\":{},\"protocol_type\":{},\"protocol\":{},\"members\":{},\"partitions\":{}}}",
                json(&details.group),
                json(&details.state),
                json(&details.protocol_type),
                json(&details.protocol),
                members.to_json(),
                table.to_json()
            );
        }
    }
    Ok(())
}

pub fn run(args: GroupsArgs) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return 1;
        }
    };
    match runtime.block_on(run_command(args)) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err}");
            1
        }
    }
}
