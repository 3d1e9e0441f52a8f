//! `ferry bench`: argument parsing for the benchmark harness. The harness itself lives in
//! the library (`ferry::bench`) behind the `bench` feature, which brings in librdkafka;
//! without the feature the subcommand explains how to get it.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
#[cfg_attr(not(feature = "bench"), allow(dead_code))]
pub struct BenchArgs {
    /// Workloads to run (repeatable): W1 small records, W2 1 KiB records and fan-out, W3
    /// fixed-rate latency, W4 many partitions, W5 backlog catch-up, W6
    /// topic compression (recompression to zstd), W7 compaction (the log cleaner at work), W8 mirroring (a
    /// second Ferry mirrors the broker under test), W9 security (the same load over PLAINTEXT
    /// and over SASL_SSL).
    #[arg(
        long,
        value_enum,
        value_name = "W",
        default_value = "all",
        ignore_case = true
    )]
    pub workload: Vec<WorkloadArg>,
    /// Benchmark this broker instead of starting a fresh Ferry (any Kafka-compatible
    /// broker; the harness only creates and deletes its own `bench-*` topics there).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,
    /// With --bootstrap: the broker's process id on this machine, for its CPU and memory.
    #[arg(long, value_name = "PID", requires = "bootstrap")]
    pub broker_pid: Option<u32>,
    /// Shorten every phase to a few seconds (W5: 256 MiB backlog instead of 5 GiB).
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON results (the broker's log goes next to it).
    #[arg(long, value_name = "FILE", default_value = "target/bench.json")]
    pub json: PathBuf,
    /// Directory for the scratch files (own broker's data, disk-limit measurements); put it
    /// on the disk the broker under test uses. Defaults to the system's temporary directory.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadArg {
    #[value(name = "W1")]
    W1,
    #[value(name = "W2")]
    W2,
    #[value(name = "W3")]
    W3,
    #[value(name = "W4")]
    W4,
    #[value(name = "W5")]
    W5,
    #[value(name = "W6")]
    W6,
    #[value(name = "W7")]
    W7,
    #[value(name = "W8")]
    W8,
    #[value(name = "W9")]
    W9,
    All,
}

#[cfg(feature = "bench")]
pub fn run(args: BenchArgs) -> i32 {
    use ferry::bench::workloads::WorkloadId;

    let mut workloads = Vec::new();
    for w in &args.workload {
        let chosen: &[WorkloadId] = match w {
            WorkloadArg::W1 => &[WorkloadId::W1],
            WorkloadArg::W2 => &[WorkloadId::W2],
            WorkloadArg::W3 => &[WorkloadId::W3],
            WorkloadArg::W4 => &[WorkloadId::W4],
            WorkloadArg::W5 => &[WorkloadId::W5],
            WorkloadArg::W6 => &[WorkloadId::W6],
            WorkloadArg::W7 => &[WorkloadId::W7],
            WorkloadArg::W8 => &[WorkloadId::W8],
            WorkloadArg::W9 => &[WorkloadId::W9],
            WorkloadArg::All => &WorkloadId::ALL,
        };
        workloads.extend_from_slice(chosen);
    }
    workloads.sort();
    workloads.dedup();
    let options = ferry::bench::BenchOptions {
        workloads,
        bootstrap: args.bootstrap,
        broker_pid: args.broker_pid,
        quick: args.quick,
        json_path: args.json,
        work_dir: args.work_dir.unwrap_or_else(std::env::temp_dir),
    };
    match ferry::bench::run(&options) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err}");
            1
        }
    }
}

#[cfg(not(feature = "bench"))]
pub fn run(_args: BenchArgs) -> i32 {
    eprintln!(
        "error: this ferry was built without the benchmark harness; run `cargo run --release --features bench -- bench ...`"
    );
    2
}
