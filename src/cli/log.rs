//! `ferry log`: `dump` prints segment files' batches and records, or index entries, like
//! Kafka's DumpLogSegments; `verify` checks a data directory offline and exits non-zero
//! naming the first problem. Both only read files.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use ferry::admin::log_files::{self, LogDump};
use ferry::admin::render::{json_string, Table, Value};
use ferry::logging::Escaped;

use super::groups::Output;

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub output: Output,
    #[command(subcommand)]
    pub command: LogCommand,
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Print the batches and records of `.log` files, or the entries of `.index` and
    /// `.timeindex` files.
    Dump {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also print record values.
        #[arg(long)]
        values: bool,
    },
    /// Check every partition of a data directory (CRCs, offsets, indexes, checkpoints)
    /// without a broker; exits 1 naming the first problem.
    Verify { data_dir: PathBuf },
}

pub fn run(args: LogArgs) -> i32 {
    let result = match args.command {
        LogCommand::Dump { paths, values } => paths
            .iter()
            .try_for_each(|path| dump(path, values, args.output)),
        LogCommand::Verify { data_dir } => verify(&data_dir, args.output),
    };
    match result {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err}");
            1
        }
    }
}

fn dump(path: &Path, values: bool, output: Output) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let (tables, stopped) = match extension {
        "log" => {
            let dump = log_files::dump_log(path).map_err(failed)?;
            let stopped = dump
                .stopped
                .as_ref()
                .map(|(at, why)| format!("reading stopped at byte {at}: {why}"));
            (log_tables(&dump, values), stopped)
        }
        "index" => {
            let index = log_files::dump_offset_index(path).map_err(failed)?;
            let mut table = Table::new(&["offset", "position"]);
            for (offset, position) in index.entries {
                table.push(vec![offset.into(), i64::from(position).into()]);
            }
            (vec![("entries", table)], index.trailing_bytes.map(trailing))
        }
        "timeindex" => {
            let index = log_files::dump_time_index(path).map_err(failed)?;
            let mut table = Table::new(&["timestamp", "offset"]);
            for (timestamp, offset) in index.entries {
                table.push(vec![timestamp.into(), offset.into()]);
            }
            (vec![("entries", table)], index.trailing_bytes.map(trailing))
        }
        _ => {
            return Err(format!(
                "{}: not a .log, .index or .timeindex file",
                path.display()
            ))
        }
    };
    print_dump(path, &tables, stopped.as_deref(), output);
    Ok(())
}

fn trailing(bytes: usize) -> String {
    format!("{bytes} trailing bytes are not a whole entry")
}

fn flag(on: bool) -> Value {
    (if on { "yes" } else { "no" }).into()
}

/// Client bytes for a table: text with control characters escaped.
fn text(bytes: Option<&[u8]>) -> Value {
    bytes.map_or(Value::Missing, |b| {
        Escaped(&String::from_utf8_lossy(b)).to_string().into()
    })
}

fn log_tables(dump: &LogDump, values: bool) -> Vec<(&'static str, Table)> {
    let mut batches = Table::new(&[
        "base_offset",
        "last_offset",
        "count",
        "position",
        "size",
        "codec",
        "producer_id",
        "producer_epoch",
        "base_sequence",
        "transactional",
        "control",
        "crc_valid",
        "max_timestamp",
    ]);
    let columns: &[&'static str] = if values {
        &["offset", "timestamp", "key", "headers", "value"]
    } else {
        &["offset", "timestamp", "key", "headers"]
    };
    let mut records = Table::new(columns);
    for batch in &dump.batches {
        let h = &batch.header;
        let codec = h.compression().map_or_else(
            |_| "unknown".to_string(),
            |c| format!("{c:?}").to_lowercase(),
        );
        batches.push(vec![
            h.base_offset.into(),
            h.last_offset().into(),
            i64::from(h.records_count).into(),
            i64::try_from(batch.position).unwrap_or(i64::MAX).into(),
            i64::try_from(h.total_bytes()).unwrap_or(i64::MAX).into(),
            codec.into(),
            h.producer_id.into(),
            i64::from(h.producer_epoch).into(),
            i64::from(h.base_sequence).into(),
            flag(h.is_transactional()),
            flag(h.is_control()),
            flag(batch.crc_valid),
            h.max_timestamp.into(),
        ]);
        let Ok(parsed) = &batch.records else { continue };
        for record in parsed {
            let headers: Vec<String> = record
                .headers
                .iter()
                .map(|(k, v)| {
                    let v = v.as_deref().map_or("null".to_string(), |v| {
                        String::from_utf8_lossy(v).into_owned()
                    });
                    Escaped(&format!("{k}={v}")).to_string()
                })
                .collect();
            let mut row = vec![
                record.offset.into(),
                record.timestamp.into(),
                text(record.key.as_deref()),
                Value::Text(headers.join(",")),
            ];
            if values {
                row.push(text(record.value.as_deref()));
            }
            records.push(row);
        }
    }
    vec![("batches", batches), ("records", records)]
}

fn print_dump(path: &Path, tables: &[(&str, Table)], stopped: Option<&str>, output: Output) {
    match output {
        Output::Table => {
            println!("{}", path.display());
            for (name, table) in tables {
                println!("\n{name}:");
                print!("{}", table.to_text());
            }
            if let Some(stopped) = stopped {
                println!("\n{stopped}");
            }
            println!();
        }
        Output::Json => {
            let fields: Vec<String> = tables
                .iter()
                .map(|(name, table)| format!("{}:{}", json_string(name), table.to_json()))
                .collect();
            let stopped = stopped.map_or("null".to_string(), json_string);
            println!(
                "{{\"file\":{},{},\"stopped\":{stopped}}}",
                json_string(&path.display().to_string()),
                fields.join(",")
            );
        }
    }
}

fn verify(data_dir: &Path, output: Output) -> Result<(), String> {
    let report = log_files::verify(data_dir).map_err(|problem| problem.to_string())?;
    let mut table = Table::new(&["partitions", "segments", "batches", "bytes"]);
    table.push(vec![
        i64::try_from(report.partitions).unwrap_or(i64::MAX).into(),
        i64::try_from(report.segments).unwrap_or(i64::MAX).into(),
        i64::try_from(report.batches).unwrap_or(i64::MAX).into(),
        i64::try_from(report.bytes).unwrap_or(i64::MAX).into(),
    ]);
    match output {
        Output::Table => print!("{}", table.to_text()),
        Output::Json => println!("{}", table.to_json()),
    }
    Ok(())
}
