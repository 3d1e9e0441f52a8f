//! Test support: runs the real `ferry` binary as a child process on an ephemeral port with
//! its own data directory, and builds librdkafka clients (through the `rdkafka` crate)
//! pointed at it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// Longest a broker may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker process. Killed (SIGKILL) when dropped unless stopped first.
pub struct Broker {
    child: Child,
    pub bootstrap: String,
    /// Listener name -> bound address, from the startup lines.
    pub listeners: std::collections::HashMap<String, String>,
    log_lines: mpsc::Receiver<String>,
}

impl Broker {
    /// Starts a broker on `data_dir` with extra `serve` arguments.
    pub fn start(data_dir: &Path, extra_args: &[&str]) -> Broker {
        Broker::spawn(data_dir, extra_args, None, None)
    }

    /// Starts a broker whose log lines go to `log_file` instead of the test's stderr
    /// (for long runs whose own report must stay readable).
    pub fn start_logging_to(data_dir: &Path, extra_args: &[&str], log_file: &Path) -> Broker {
        Broker::spawn(data_dir, extra_args, None, Some(log_file))
    }

    /// Starts a broker whose files may not grow beyond `file_size_limit_bytes`
    /// (RLIMIT_FSIZE), which makes writes fail as on a full disk.
    pub fn start_limited(
        data_dir: &Path,
        extra_args: &[&str],
        file_size_limit_bytes: Option<u64>,
    ) -> Broker {
        Broker::spawn(data_dir, extra_args, file_size_limit_bytes, None)
    }

    fn spawn(
        data_dir: &Path,
        extra_args: &[&str],
        file_size_limit_bytes: Option<u64>,
        log_file: Option<&Path>,
    ) -> Broker {
        echo_panics_uncaptured();
        // None: the test's stderr through `eprintln!`, which the test harness captures.
        let mut log_sink =
            log_file.map(|path| std::fs::File::create(path).expect("create the broker log file"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        if let Some(limit) = file_size_limit_bytes {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: libc::RLIM_INFINITY,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        command.arg("serve");
        // A test that sets its own listeners (`--override listeners=...`) gets them.
        if !extra_args.iter().any(|a| a.starts_with("listeners=")) {
            command.arg("--listen").arg("127.0.0.1:0");
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the ferry binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (listener_tx, listener_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                match log_sink.as_mut() {
                    Some(file) => {
                        let _ = writeln!(file, "{line}");
                    }
                    None => eprintln!("[ferry] {line}"),
                }
                // "listener NAME (PROTOCOL) on ADDRESS ..."
                if let Some(rest) = line.split(" listener ").nth(1) {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    if words.len() >= 4 && words[2] == "on" {
                        let _ = listener_tx.send((words[0].to_string(), words[3].to_string()));
                    }
                }
                if let Some(rest) = line.split("ready to accept connections on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = ready_tx.send(addr);
                }
                let _ = lines_tx.send(line);
            }
        });
        let bootstrap = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("ferry did not become ready within {READY_TIMEOUT:?}");
            }
        };
        Broker {
            child,
            bootstrap,
            listeners: listener_rx.try_iter().collect(),
            log_lines: lines_rx,
        }
    }

    /// Sends SIGTERM and waits for the process to exit.
    fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("wait for ferry")
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> ExitStatus {
        self.terminate()
    }

    /// Sends SIGTERM, waits for the exit and returns it with every log line printed.
    pub fn stop_with_log(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.terminate();
        // The reader thread ends with the process's stderr; collect what it forwarded.
        let lines = self.log_lines.iter().collect();
        (status, lines)
    }

    /// A `kind` field of the process's `/proc/<pid>/status` (VmRSS, VmHWM) in KiB.
    pub fn status_kib(&self, kind: &str) -> u64 {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(kind)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{kind} not in /proc/{pid}/status"))
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        self.child.kill().expect("SIGKILL ferry");
        let _ = self.child.wait();
    }

    /// Lifts the file size limit of a running broker (the disk has room again).
    pub fn lift_file_size_limit(&self) {
        let rlimit = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit reads `rlimit` and writes nothing when the old-limit pointer is null.
        let rc = unsafe {
            libc::prlimit(
                self.child.id() as libc::pid_t,
                libc::RLIMIT_FSIZE,
                &rlimit,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit failed: {}", std::io::Error::last_os_error());
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll ferry").is_none()
    }

    /// The broker's process id (for reading `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Log lines printed so far (drains them).
    pub fn drain_log(&self) -> Vec<String> {
        self.log_lines.try_iter().collect()
    }

    /// A librdkafka config pointed at this broker.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }

    /// Creates a topic through the Admin API.
    pub async fn create_topic(&self, name: &str, partitions: i32, configs: &[(&str, &str)]) {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().expect("admin client");
        let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        for (key, value) in configs {
            topic = topic.set(key, value);
        }
        let results = admin
            .create_topics(&[topic], &AdminOptions::new())
            .await
            .expect("create topics request");
        for result in results {
            result.unwrap_or_else(|(topic, err)| panic!("create {topic}: {err}"));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes every panic message also go straight to the process's stderr, past the test
/// harness's output capture: a long run's report then shows why a test failed at the point
/// where it failed, even when only part of the output is kept (as in CI). Installed once.
fn echo_panics_uncaptured() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current();
            let report = format!(
                "[test failure] thread '{}' {info}\n",
                thread.name().unwrap_or("unnamed")
            );
            // Not `eprintln!`: the harness captures that, and this must reach the terminal.
            let _ = std::io::stderr().write_all(report.as_bytes());
            default_hook(info);
        }));
    });
}
