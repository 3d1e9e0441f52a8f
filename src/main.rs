//! The `ferry` binary: all logic lives in the library; this only runs the CLI.

mod cli;

fn main() {
    std::process::exit(cli::run());
}
