//! `ferry produce` (lines from stdin as records) and `ferry consume` (records to stdout),
//! against any Kafka-protocol cluster, so the quick start needs no other tool.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Args, ValueEnum};

use ferry::admin::console::{self, ConsumeOptions, ProduceOptions, Start};
use ferry::admin::render::json_string;
use ferry::client::Cluster;

use super::groups::client_options;
use ferry::logging::Escaped;
use ferry::storage::batch::Compression;

use super::groups::Output;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Isolation {
    ReadUncommitted,
    ReadCommitted,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    topic: String,
    /// A broker of the cluster to talk to.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Kafka client properties for the connection (security settings).
    #[arg(long, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
    /// Split each line into key and value at the first occurrence of this.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Send every record to this partition (default: by key, or spread when unkeyed).
    #[arg(long)]
    partition: Option<i32>,
    /// 0, 1, or all (-1).
    #[arg(long, default_value = "all", allow_hyphen_values = true)]
    acks: String,
    #[arg(long, value_enum, default_value = "none")]
    compression: Codec,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    topic: String,
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Kafka client properties for the connection (security settings).
    #[arg(long, value_name = "FILE")]
    command_config: Option<std::path::PathBuf>,
    /// Start at the first record (default: only records produced from now on).
    #[arg(long, conflicts_with = "offset")]
    from_beginning: bool,
    /// Start at this offset in every partition read.
    #[arg(long)]
    offset: Option<i64>,
    #[arg(long)]
    partition: Option<i32>,
    /// Start where this group's committed offsets are and commit as records are read
    /// (without joining the group).
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Stop once everything present when reading began has been read.
    #[arg(long)]
    exit_at_end: bool,
    #[arg(long)]
    print_key: bool,
    #[arg(long)]
    print_offset: bool,
    #[arg(long, value_enum, default_value = "read-uncommitted")]
    isolation_level: Isolation,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

fn exit_code(result: Result<(), String>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err}");
            1
        }
    }
}

pub fn produce(args: ProduceArgs) -> i32 {
    exit_code(runtime().and_then(|rt| rt.block_on(run_produce(args))))
}

pub fn consume(args: ConsumeArgs) -> i32 {
    exit_code(runtime().and_then(|rt| rt.block_on(run_consume(args))))
}

async fn run_produce(args: ProduceArgs) -> Result<(), String> {
    let acks = match args.acks.as_str() {
        "0" => 0,
        "1" => 1,
        "all" | "-1" => -1,
        other => return Err(format!("--acks {other}: use 0, 1 or all")),
    };
    let compression = match args.compression {
        Codec::None => Compression::None,
        Codec::Gzip => Compression::Gzip,
        Codec::Snappy => Compression::Snappy,
        Codec::Lz4 => Compression::Lz4,
        Codec::Zstd => Compression::Zstd,
    };
    let err = |e: ferry::client::ClientError| e.to_string();
    let mut cluster = Cluster::connect_with(
        &args.bootstrap,
        "ferry-produce",
        &client_options(args.command_config.as_deref()).map_err(|e| e.to_string())?,
    )
    .await
    .map_err(err)?;
    let options = ProduceOptions {
        topic: args.topic,
        partition: args.partition,
        acks,
        compression,
        key_separator: args.key_separator,
    };
    let mut producer = console::LineProducer::new(&mut cluster, options)
        .await
        .map_err(err)?;
    // At a terminal every line goes at once; piped input is batched.
    let interactive = std::io::stdin().is_terminal();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("reading stdin: {e}"))?;
        producer.send(&line).await.map_err(err)?;
        if interactive {
            producer.flush().await.map_err(err)?;
        }
    }
    producer.flush().await.map_err(err)?;
    Ok(())
}

async fn run_consume(args: ConsumeArgs) -> Result<(), String> {
    let err = |e: ferry::client::ClientError| e.to_string();
    let mut cluster = Cluster::connect_with(
        &args.bootstrap,
        "ferry-consume",
        &client_options(args.command_config.as_deref()).map_err(|e| e.to_string())?,
    )
    .await
    .map_err(err)?;
    let start = match (args.offset, args.from_beginning) {
        (Some(n), _) if n < 0 => return Err(format!("--offset {n}: an offset is 0 or more")),
        (Some(n), _) => Start::Offset(n),
        (None, true) => Start::Earliest,
        (None, false) => Start::Latest,
    };
    let options = ConsumeOptions {
        topic: args.topic,
        partition: args.partition,
        start,
        group: args.group,
        max_messages: args.max_messages,
        isolation_level: match args.isolation_level {
            Isolation::ReadUncommitted => 0,
            Isolation::ReadCommitted => 1,
        },
        exit_at_end: args.exit_at_end,
    };
    let mut stdout = std::io::stdout().lock();
    let lossy = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned());
    console::consume(&mut cluster, &options, |partition, record| {
        let key = lossy(record.key.as_deref());
        let value = lossy(record.value.as_deref());
        let line = match args.output {
            Output::Json => format!(
                "{{\"partition\":{partition},\"offset\":{},\"timestamp\":{},\"key\":{},\"value\":{}}}",
                record.offset,
                record.timestamp,
                key.as_deref().map_or("null".to_string(), json_string),
                value.as_deref().map_or("null".to_string(), json_string),
            ),
            Output::Table => {
                let mut line = String::new();
                if args.print_offset {
                    line.push_str(&format!("{partition}:{}\t", record.offset));
                }
                if args.print_key {
                    line.push_str(&Escaped(key.as_deref().unwrap_or("null")).to_string());
                    line.push('\t');
                }
                line.push_str(value.as_deref().unwrap_or("null"));
                line
            }
        };
        let _ = writeln!(stdout, "{line}");
    })
    .await
    .map_err(err)?;
    Ok(())
}
