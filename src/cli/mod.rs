//! The `ferry` command line: argument parsing only; each subcommand calls into the library.

pub mod bench;
pub mod console;
pub mod groups;
pub mod log;
pub mod mirror;
pub mod serve;
pub mod topics;
pub mod users;

use clap::{Parser, Subcommand};

/// Ferry: a Kafka-compatible streaming broker.
#[derive(Debug, Parser)]
#[command(name = "ferry", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a single-node broker.
    Serve(serve::ServeArgs),
    /// Inspect and move consumer groups on any Kafka-protocol cluster.
    Groups(groups::GroupsArgs),
    /// Create, list, describe, alter and delete topics (any Kafka-protocol cluster).
    Topics(topics::TopicsArgs),
    /// Describe and alter topic and broker configs (any Kafka-protocol cluster).
    Configs(topics::ConfigsArgs),
    /// Produce lines from stdin as records (any Kafka-protocol cluster).
    Produce(console::ProduceArgs),
    /// Print a topic's records (any Kafka-protocol cluster).
    Consume(console::ConsumeArgs),
    /// Migrate from a running Kafka cluster: links, mirror topics, group sync, verify,
    /// promote (sent to the Ferry at --bootstrap).
    Mirror(mirror::MirrorArgs),
    /// SCRAM users (SASL logins): list, set-password, delete (sent to --bootstrap).
    Users(users::UsersArgs),
    /// Read a data directory's files offline: dump segments and indexes, verify a directory.
    Log(log::LogArgs),
    /// Benchmark a broker (a fresh Ferry, or any Kafka-compatible one) with librdkafka
    /// clients; needs the `bench` feature.
    Bench(bench::BenchArgs),
}

/// Parses the process arguments and runs the chosen subcommand; returns the exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Groups(args) => groups::run(args),
        Command::Log(args) => log::run(args),
        Command::Mirror(args) => mirror::run(args),
        Command::Users(args) => users::run(args),
        Command::Topics(args) => topics::run_topics(args),
        Command::Configs(args) => topics::run_configs(args),
        Command::Produce(args) => console::produce(args),
        Command::Consume(args) => console::consume(args),
        Command::Bench(args) => bench::run(args),
    }
}
