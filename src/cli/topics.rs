//! `ferry topics` and `ferry configs` against any Kafka-protocol cluster, as aligned
//! tables or `--output json`; exit 1 whenever what was asked did not happen.

use clap::{Args, Subcommand};

use ferry::admin::render::{json_string, Table, Value};
use ferry::admin::topics::{self, ConfigDetails, Target};
use ferry::client::{ClientError, Cluster};

use super::groups::{ClusterArgs, Output};

#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: TopicsCommand,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create {
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics with their partition counts.
    List,
    /// Show a topic's partitions (log start and end offsets, size on disk) and the
    /// configs set on it.
    Describe { topic: String },
    /// Set or delete a topic's configs.
    Alter {
        topic: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Delete a topic and its data.
    Delete { topic: String },
    /// Grow a topic to this many partitions.
    AddPartitions {
        topic: String,
        #[arg(long)]
        count: i32,
    },
}

#[derive(Debug, Args)]
pub struct ConfigsArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: ConfigsCommand,
}

/// Whose configs: a topic, or a broker (by id; the one connected to without one).
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Resource {
    #[arg(long)]
    topic: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "-1", value_name = "ID")]
    broker: Option<i32>,
}

impl Resource {
    fn target(&self) -> Target {
        match (&self.topic, self.broker) {
            (Some(topic), _) => Target::Topic(topic.clone()),
            (None, id) => Target::Broker(id.filter(|id| *id >= 0)),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigsCommand {
    /// Every config with its value, source, type and whether it can be changed.
    Describe {
        #[command(flatten)]
        resource: Resource,
    },
    /// Set (`--set KEY=VALUE`) or delete (`--delete KEY`) configs.
    Alter {
        #[command(flatten)]
        resource: Resource,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

pub(crate) fn block_on(work: impl std::future::Future<Output = Result<(), String>>) -> i32 {
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
    match runtime.block_on(work) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err}");
            1
        }
    }
}

fn err(e: ClientError) -> String {
    e.to_string()
}

fn print(table: &Table, output: Output) {
    match output {
        Output::Table => print!("{}", table.to_text()),
        Output::Json => println!("{}", table.to_json()),
    }
}

fn settings(texts: &[String]) -> Result<Vec<(String, String)>, String> {
    texts.iter().map(|t| topics::parse_setting(t)).collect()
}

fn done(output: Output, what: String) {
    match output {
        Output::Table => println!("{what}"),
        Output::Json => println!("{{\"result\":{}}}", json_string(&what)),
    }
}

pub fn run_topics(args: TopicsArgs) -> i32 {
    block_on(async move {
        let mut cluster = Cluster::connect_with(
            &args.cluster.bootstrap,
            "ferry-topics",
            &args.cluster.options().map_err(|e| e.to_string())?,
        )
        .await
        .map_err(err)?;
        let output = args.cluster.output;
        match args.command {
            TopicsCommand::Create {
                topic,
                partitions,
                replication_factor,
                configs,
            } => {
                let configs = settings(&configs)?;
                topics::create(
                    &mut cluster,
                    &topic,
                    partitions,
                    replication_factor,
                    &configs,
                )
                .await
                .map_err(err)?;
                done(output, format!("created topic '{topic}'"));
            }
            TopicsCommand::List => {
                let mut table = Table::new(&["topic", "partitions", "internal"]);
                for t in topics::list(&mut cluster).await.map_err(err)? {
                    table.push(vec![
                        t.name.into(),
                        i64::try_from(t.partitions).unwrap_or(i64::MAX).into(),
                        (if t.internal { "yes" } else { "no" }).into(),
                    ]);
                }
                print(&table, output);
            }
            TopicsCommand::Describe { topic } => {
                let details = topics::describe(&mut cluster, &topic).await.map_err(err)?;
                let mut partitions = Table::new(&[
                    "partition",
                    "leader",
                    "log_start_offset",
                    "log_end_offset",
                    "size_bytes",
                ]);
                for p in &details.partitions {
                    partitions.push(vec![
                        i64::from(p.partition).into(),
                        i64::from(p.leader).into(),
                        p.log_start_offset.into(),
                        p.log_end_offset.into(),
                        p.size_bytes.into(),
                    ]);
                }
                let configs = config_table(&details.configs);
                match output {
                    Output::Table => {
                        println!(
                            "Topic {} ({} partitions{})\n",
                            details.name,
                            details.partitions.len(),
                            if details.internal { ", internal" } else { "" }
                        );
                        print!("{}", partitions.to_text());
                        if !details.configs.is_empty() {
                            println!("\nconfigs set on the topic:");
                            print!("{}", configs.to_text());
                        }
                    }
                    Output::Json => println!(
                        "{{\"topic\":{},\"internal\":{},\"partitions\":{},\"configs\":{}}}",
                        json_string(&details.name),
                        details.internal,
                        partitions.to_json(),
                        configs.to_json()
                    ),
                }
            }
            TopicsCommand::Alter { topic, set, delete } => {
                if set.is_empty() && delete.is_empty() {
                    return Err("nothing to change: give --set KEY=VALUE or --delete KEY".into());
                }
                let set = settings(&set)?;
                topics::alter_configs(&mut cluster, Target::Topic(topic.clone()), &set, &delete)
                    .await
                    .map_err(err)?;
                done(output, format!("altered the configs of topic '{topic}'"));
            }
            TopicsCommand::Delete { topic } => {
                topics::delete(&mut cluster, &topic).await.map_err(err)?;
                done(output, format!("deleted topic '{topic}'"));
            }
            TopicsCommand::AddPartitions { topic, count } => {
                topics::add_partitions(&mut cluster, &topic, count)
                    .await
                    .map_err(err)?;
                done(
                    output,
                    format!("topic '{topic}' now has {count} partitions"),
                );
            }
        }
        Ok(())
    })
}

fn config_table(configs: &[ConfigDetails]) -> Table {
    let mut table = Table::new(&["name", "value", "source", "type", "read_only"]);
    for c in configs {
        let value = if c.sensitive {
            Value::Text("(sensitive)".to_string())
        } else {
            c.value.clone().into()
        };
        table.push(vec![
            c.name.clone().into(),
            value,
            c.source.into(),
            c.config_type.into(),
            (if c.read_only { "yes" } else { "no" }).into(),
        ]);
    }
    table
}

pub fn run_configs(args: ConfigsArgs) -> i32 {
    block_on(async move {
        let mut cluster = Cluster::connect_with(
            &args.cluster.bootstrap,
            "ferry-configs",
            &args.cluster.options().map_err(|e| e.to_string())?,
        )
        .await
        .map_err(err)?;
        match args.command {
            ConfigsCommand::Describe { resource } => {
                let configs = topics::describe_configs(&mut cluster, resource.target())
                    .await
                    .map_err(err)?;
                print(&config_table(&configs), args.cluster.output);
            }
            ConfigsCommand::Alter {
                resource,
                set,
                delete,
            } => {
                if set.is_empty() && delete.is_empty() {
                    return Err("nothing to change: give --set KEY=VALUE or --delete KEY".into());
                }
                let set = settings(&set)?;
                topics::alter_configs(&mut cluster, resource.target(), &set, &delete)
                    .await
                    .map_err(err)?;
                done(args.cluster.output, "altered".to_string());
            }
        }
        Ok(())
    })
}
