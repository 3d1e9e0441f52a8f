//! `ferry serve`: builds the broker configuration from defaults, an optional Kafka-style
//! properties file, `--override KEY=VALUE` pairs and the dedicated flags (in that order of
//! precedence, last wins), then runs the server.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use tracing::{error, warn};

use ferry::config::BrokerConfig;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (Kafka's `listeners`).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:9092")]
    pub listen: String,
    /// Address clients are told to connect to on the first listener (Kafka's
    /// `advertised.listeners`); defaults to the listen address.
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Directory for logs and metadata (Kafka's `log.dirs`).
    #[arg(long, value_name = "DIR", default_value = "ferry-data")]
    pub data_dir: PathBuf,
    /// A server.properties-style file with Kafka keys (listeners, log.dirs, num.partitions,
    /// log.segment.bytes, message.max.bytes, log.flush.interval.messages, ...). Flags given
    /// on the command line take precedence over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Set any config key, e.g. `--override num.partitions=3` (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Durable mode: fsync before acknowledging, with group commit
    /// (same as `--override log.flush.interval.messages=1`).
    #[arg(long)]
    pub durable: bool,
    /// Serve Prometheus metrics over HTTP on `http://HOST:PORT/metrics` (same as
    /// `--override ferry.metrics.listen=HOST:PORT`). Off by default.
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
}

fn properties(
    args: &ServeArgs,
    explicit: &clap::ArgMatches,
) -> Result<BTreeMap<String, String>, String> {
    let mut props = match &args.config {
        Some(path) => BrokerConfig::read_file(path).map_err(|e| e.to_string())?,
        None => BTreeMap::new(),
    };
    for pair in &args.overrides {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--override expects KEY=VALUE, got {pair:?}"))?;
        props.insert(key.trim().to_string(), value.trim().to_string());
    }
    let given =
        |id: &str| explicit.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
    if given("listen") || !props.contains_key("listeners") {
        props.insert(
            "listeners".to_string(),
            format!("PLAINTEXT://{}", args.listen),
        );
    }
    if let Some(advertise) = &args.advertise {
        // The first listener's name (`NAME://...`; a bare address is PLAINTEXT).
        let first = props
            .get("listeners")
            .map_or("", |l| l.split(',').next().unwrap_or_default());
        let name = first
            .split_once("://")
            .map_or("PLAINTEXT", |(n, _)| n.trim());
        props.insert(
            "advertised.listeners".to_string(),
            format!("{name}://{advertise}"),
        );
    }
    if given("data_dir") || !(props.contains_key("log.dirs") || props.contains_key("log.dir")) {
        props.remove("log.dir");
        props.insert("log.dirs".to_string(), args.data_dir.display().to_string());
    }
    if args.durable {
        props.insert("log.flush.interval.messages".to_string(), "1".to_string());
    }
    if let Some(address) = &args.metrics_listen {
        props.insert("ferry.metrics.listen".to_string(), address.clone());
    }
    Ok(props)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

pub fn run(args: ServeArgs) -> i32 {
    init_logging();
    let matches = <super::Cli as clap::CommandFactory>::command().get_matches();
    let serve_matches = matches
        .subcommand_matches("serve")
        .cloned()
        .unwrap_or_default();
    let props = match properties(&args, &serve_matches) {
        Ok(props) => props,
        Err(err) => {
            error!("{err}");
            return 2;
        }
    };
    let config = match BrokerConfig::from_properties(&props) {
        Ok((config, unknown)) => {
            if !unknown.is_empty() {
                // One line for all of them, so none is missed among the startup lines.
                warn!(
                    keys = %unknown.join(", "),
                    "ignoring configuration keys Ferry does not know or act on"
                );
            }
            config
        }
        Err(err) => {
            error!("{err}");
            return 2;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = match builder.enable_all().thread_name("ferry").build() {
        Ok(runtime) => runtime,
        Err(err) => {
            error!("cannot start the async runtime: {err}");
            return 1;
        }
    };
    match runtime.block_on(ferry::server::serve(config)) {
        Ok(()) => 0,
        Err(err) => {
            error!("{err}");
            1
        }
    }
}
