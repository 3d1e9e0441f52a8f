//! `ferry users list|set-password|delete`: SCRAM users on any Kafka-protocol cluster
//! (`admin::users`), as aligned tables or `--output json`.

use clap::{Args, Subcommand, ValueEnum};

use ferry::admin::render::{Table, Value};
use ferry::admin::users::{self, ChangeResult};
use ferry::client::Cluster;
use ferry::security::scram::{ScramMechanism, DEFAULT_ITERATIONS};

use super::groups::{print, ClusterArgs};
use super::topics::block_on;

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: UsersCommand,
}

/// Which SCRAM mechanisms a change applies to.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mechanisms {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
    /// Both (the default): a client may log in with either.
    Both,
}

impl Mechanisms {
    fn list(self) -> Vec<ScramMechanism> {
        match self {
            Mechanisms::ScramSha256 => vec![ScramMechanism::Sha256],
            Mechanisms::ScramSha512 => vec![ScramMechanism::Sha512],
            Mechanisms::Both => ScramMechanism::ALL.to_vec(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Users with their SCRAM mechanisms and iterations (all, or those named).
    List { users: Vec<String> },
    /// Creates a user or changes its password. The password is read from the first line
    /// of standard input unless `--password` is given (which other local users may see).
    SetPassword {
        user: String,
        #[arg(long)]
        password: Option<String>,
        #[arg(long, value_enum, default_value = "both")]
        mechanism: Mechanisms,
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Deletes a user's SCRAM credentials.
    Delete {
        user: String,
        #[arg(long, value_enum, default_value = "both")]
        mechanism: Mechanisms,
    },
}

fn results_table(results: &[ChangeResult]) -> Table {
    let mut table = Table::new(&["USER", "ERROR", "MESSAGE"]);
    for r in results {
        let error = proto_kafka::ResponseError::try_from_code(r.error_code)
            .map_or_else(|| "NONE".to_string(), |e| format!("{e:?}"));
        table.push(vec![
            Value::from(r.user.as_str()),
            Value::from(error),
            Value::from(r.message.clone()),
        ]);
    }
    table
}

fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err("no password given (--password or a line on standard input)".into());
    }
    Ok(password)
}

pub fn run(args: UsersArgs) -> i32 {
    block_on(async move {
        let options = args.cluster.options().map_err(|e| e.to_string())?;
        let mut cluster = Cluster::connect_with(&args.cluster.bootstrap, "ferry-users", &options)
            .await
            .map_err(|e| e.to_string())?;
        let output = args.cluster.output;
        let results = match args.command {
            UsersCommand::List { users: names } => {
                let credentials = users::list(&mut cluster, &names)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut table = Table::new(&["USER", "MECHANISM", "ITERATIONS"]);
                for c in credentials {
                    table.push(vec![
                        Value::from(c.user),
                        Value::from(c.mechanism),
                        Value::from(i64::from(c.iterations)),
                    ]);
                }
                print(&table, output);
                return Ok(());
            }
            UsersCommand::SetPassword {
                user,
                password,
                mechanism,
                iterations,
            } => {
                let password = match password {
                    Some(p) => p,
                    None => read_password()?,
                };
                users::set_password(
                    &mut cluster,
                    &user,
                    &password,
                    &mechanism.list(),
                    iterations,
                )
                .await
            }
            UsersCommand::Delete { user, mechanism } => {
                users::delete(&mut cluster, &user, &mechanism.list()).await
            }
        }
        .map_err(|e| e.to_string())?;
        print(&results_table(&results), output);
        let failed = results.iter().filter(|r| r.error_code != 0).count();
        if failed > 0 {
            return Err(format!("{failed} of {} changes failed", results.len()));
        }
        Ok(())
    })
}
