//! Turning measurements into figures: derived rates and fractions of the machine's limits,
//! one aligned table per workload (figures as rows, phases as columns), and the JSON file.

use crate::admin::render::{Table, Value};

use super::driver::PhaseResult;
use super::limits::Limits;
use super::stats::{fmt_figure, fmt_percent, ratio, Json, Percentiles, GIB_BYTES, MIB_BYTES};
use super::workloads::WorkloadId;

/// One workload's phases and what happened to its topics afterwards.
#[derive(Debug, Clone)]
pub struct WorkloadOutcome {
    pub id: WorkloadId,
    pub phases: Vec<PhaseResult>,
    /// Time to delete the workload's topics, or why that failed.
    pub topics_deleted: Result<f64, String>,
}

/// What the run was pointed at.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub quick: bool,
    pub bootstrap: String,
    /// True when the harness started its own Ferry.
    pub own_broker: bool,
    pub broker_pid: Option<u32>,
    pub work_dir: String,
}

fn per_s(amount: f64, seconds: f64) -> Option<f64> {
    (seconds > 0.0).then(|| amount / seconds)
}

impl PhaseResult {
    fn is_catch_up(&self) -> bool {
        self.cache_dropped.is_some() || (self.produce_seconds == 0.0 && self.consume_seconds > 0.0)
    }

    pub fn produce_records_s(&self) -> Option<f64> {
        per_s(self.produced_records as f64, self.produce_seconds)
    }

    pub fn produce_mib_s(&self) -> Option<f64> {
        per_s(self.produced_bytes as f64 / MIB_BYTES, self.produce_seconds)
    }

    pub fn consume_records_s(&self) -> Option<f64> {
        per_s(self.consumed_records as f64, self.consume_seconds)
    }

    pub fn consume_mib_s(&self) -> Option<f64> {
        per_s(self.consumed_bytes as f64 / MIB_BYTES, self.consume_seconds)
    }

    /// Records the broker handled: produced ones, or for a catch-up read the consumed ones.
    fn handled(&self) -> (f64, f64) {
        if self.produce_seconds > 0.0 {
            (self.produced_records as f64, self.produced_bytes as f64)
        } else {
            (self.consumed_records as f64, self.consumed_bytes as f64)
        }
    }

    pub fn broker_cpu_cores(&self) -> Option<f64> {
        self.broker
            .cpu_seconds
            .and_then(|cpu| per_s(cpu, self.wall_seconds))
    }

    pub fn broker_cpu_s_per_million_records(&self) -> Option<f64> {
        let (records, _) = self.handled();
        ratio(self.broker.cpu_seconds, Some(records / 1e6))
    }

    pub fn broker_cpu_s_per_gib(&self) -> Option<f64> {
        let (_, bytes) = self.handled();
        ratio(self.broker.cpu_seconds, Some(bytes / GIB_BYTES))
    }

    pub fn broker_rss_mib(&self) -> Option<f64> {
        self.broker.peak_rss_kib.map(|k| k as f64 / 1024.0)
    }

    pub fn broker_disk_write_mib_s(&self) -> Option<f64> {
        self.broker
            .disk
            .and_then(|d| per_s(d.write_bytes as f64 / MIB_BYTES, self.wall_seconds))
    }

    pub fn broker_disk_read_mib_s(&self) -> Option<f64> {
        self.broker
            .disk
            .and_then(|d| per_s(d.read_bytes as f64 / MIB_BYTES, self.wall_seconds))
    }

    /// fsync and fdatasync calls of the broker per second (own Ferry only).
    pub fn broker_fsyncs_s(&self) -> Option<f64> {
        self.broker_fsyncs
            .and_then(|n| per_s(n as f64, self.wall_seconds))
    }

    /// Device-wide flush requests per second (an upper bound on the broker's fsyncs when
    /// nothing else on the device syncs).
    pub fn device_flushes_s(&self) -> Option<f64> {
        self.device_flushes
            .and_then(|n| per_s(n as f64, self.wall_seconds))
    }

    pub fn client_cpu_cores(&self) -> Option<f64> {
        self.client_cpu_seconds
            .and_then(|cpu| per_s(cpu, self.wall_seconds))
    }

    /// The fraction called `name` (see `fractions`), if it applies and is known.
    fn fraction(&self, limits: &Limits, name: &str) -> Option<f64> {
        self.fractions(limits)
            .into_iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, f)| f)
    }

    /// (name, fraction) of each relevant limit.
    pub fn fractions(&self, limits: &Limits) -> Vec<(&'static str, Option<f64>)> {
        let mut out = vec![
            (
                "produce_of_loopback",
                ratio(self.produce_mib_s(), Some(limits.loopback_mib_s)),
            ),
            (
                "produce_of_disk_append",
                ratio(self.produce_mib_s(), Some(limits.disk_append_mib_s)),
            ),
            (
                "produce_of_disk_append_fdatasync",
                ratio(
                    self.produce_mib_s(),
                    Some(limits.disk_append_fdatasync_mib_s),
                ),
            ),
            (
                "consume_of_loopback",
                ratio(self.consume_mib_s(), Some(limits.loopback_mib_s)),
            ),
        ];
        if self.is_catch_up() {
            out.push((
                "consume_of_disk_read",
                ratio(self.consume_mib_s(), limits.disk_read_mib_s),
            ));
        }
        if self.durable {
            // Latency against the device's, as multiples (W3's durable target is 2).
            let e2e_p99 = self.e2e.map(|p| p.p99_us as f64);
            out.push((
                "e2e_p99_of_fsync_p99",
                ratio(e2e_p99, Some(limits.fsync_p99_us as f64)),
            ));
            out.push((
                "e2e_p99_of_group_commit_floor_p99",
                ratio(e2e_p99, Some(limits.group_commit_floor_p99_us as f64)),
            ));
        }
        out
    }
}

pub fn limits_table(limits: &Limits) -> Table {
    let mut table = Table::new(&["limit", "value"]);
    let rows = [
        (
            "disk append MiB/s (buffered)",
            Some(limits.disk_append_mib_s),
        ),
        (
            "disk append MiB/s (fdatasync each MiB)",
            Some(limits.disk_append_fdatasync_mib_s),
        ),
        ("disk read MiB/s (cold)", limits.disk_read_mib_s),
        (
            "fsync p50 us (4 KiB append)",
            Some(limits.fsync_p50_us as f64),
        ),
        (
            "fsync p99 us (4 KiB append)",
            Some(limits.fsync_p99_us as f64),
        ),
        (
            "group-commit floor p50 us",
            Some(limits.group_commit_floor_p50_us as f64),
        ),
        (
            "group-commit floor p99 us",
            Some(limits.group_commit_floor_p99_us as f64),
        ),
        ("loopback TCP MiB/s", Some(limits.loopback_mib_s)),
    ];
    for (name, value) in rows {
        table.push(vec![name.into(), fmt_figure(value).into()]);
    }
    table
}

/// How a table cell is computed from a phase, and a labelled row of such cells.
type Cell = Box<dyn Fn(&PhaseResult) -> String>;
type Row = (String, Cell);
/// A percentile's name and how to pick it.
type PercentileField = (&'static str, fn(&Percentiles) -> u64);

fn percentile_rows(label: &'static str, pick: fn(&PhaseResult) -> Option<Percentiles>) -> Vec<Row> {
    let fields: [PercentileField; 4] = [
        ("p50", |p| p.p50_us),
        ("p99", |p| p.p99_us),
        ("p99.9", |p| p.p999_us),
        ("max", |p| p.max_us),
    ];
    fields
        .into_iter()
        .map(|(name, field)| {
            let row: Cell =
                Box::new(move |r| pick(r).map_or("-".to_string(), |p| field(&p).to_string()));
            (format!("{label} {name} us"), row)
        })
        .collect()
}

/// Figures as rows, the workload's phases as columns.
pub fn workload_table(outcome: &WorkloadOutcome, limits: &Limits) -> Table {
    let mut columns = vec!["figure"];
    columns.extend(outcome.phases.iter().map(|p| p.name));
    let mut table = Table::new(&columns);
    let limits = *limits;
    let fraction = move |name: &'static str| -> Cell {
        Box::new(move |r: &PhaseResult| fmt_percent(r.fraction(&limits, name)))
    };
    let fig = |f: fn(&PhaseResult) -> Option<f64>| -> Cell {
        Box::new(move |r: &PhaseResult| fmt_figure(f(r)))
    };
    let mut rows: Vec<Row> = vec![
        (
            "target records/s".into(),
            fig(|r| r.target_records_s.map(|t| t as f64)),
        ),
        ("records/s in".into(), fig(PhaseResult::produce_records_s)),
        ("MiB/s in".into(), fig(PhaseResult::produce_mib_s)),
        ("  in / loopback".into(), fraction("produce_of_loopback")),
        (
            "  in / disk append".into(),
            fraction("produce_of_disk_append"),
        ),
        (
            "  in / fdatasync append".into(),
            fraction("produce_of_disk_append_fdatasync"),
        ),
        ("records/s out".into(), fig(PhaseResult::consume_records_s)),
        ("MiB/s out".into(), fig(PhaseResult::consume_mib_s)),
        ("  out / loopback".into(), fraction("consume_of_loopback")),
        ("  out / disk read".into(), fraction("consume_of_disk_read")),
    ];
    rows.extend(percentile_rows("ack", |r| r.ack));
    rows.extend(percentile_rows("e2e", |r| r.e2e));
    let multiple = move |name: &'static str| -> Cell {
        Box::new(move |r: &PhaseResult| {
            r.fraction(&limits, name)
                .map_or("-".to_string(), |f| format!("{f:.1}x"))
        })
    };
    rows.push((
        "  e2e p99 / fsync p99".into(),
        multiple("e2e_p99_of_fsync_p99"),
    ));
    rows.push((
        "  e2e p99 / commit floor p99".into(),
        multiple("e2e_p99_of_group_commit_floor_p99"),
    ));
    rows.extend(percentile_rows("broker produce", |r| r.broker_produce));
    rows.extend(percentile_rows("hiccup", |r| r.hiccup));
    rows.push((
        "CPU stolen (machine)".into(),
        Box::new(|r: &PhaseResult| fmt_percent(r.cpu_steal_fraction)),
    ));
    rows.extend::<Vec<Row>>(vec![
        ("records/batch".into(), fig(|r| r.records_per_batch)),
        (
            "broker CPU cores".into(),
            fig(PhaseResult::broker_cpu_cores),
        ),
        (
            "broker CPU s / M records".into(),
            fig(PhaseResult::broker_cpu_s_per_million_records),
        ),
        (
            "broker CPU s / GiB".into(),
            fig(PhaseResult::broker_cpu_s_per_gib),
        ),
        (
            "broker peak RSS MiB".into(),
            fig(PhaseResult::broker_rss_mib),
        ),
        (
            "broker disk write MiB/s".into(),
            fig(PhaseResult::broker_disk_write_mib_s),
        ),
        (
            "broker disk read MiB/s".into(),
            fig(PhaseResult::broker_disk_read_mib_s),
        ),
        (
            "fsyncs/s (broker)".into(),
            fig(PhaseResult::broker_fsyncs_s),
        ),
        (
            "disk flushes/s (device)".into(),
            fig(PhaseResult::device_flushes_s),
        ),
        (
            "client CPU cores".into(),
            fig(PhaseResult::client_cpu_cores),
        ),
        ("topic create ms".into(), fig(|r| r.topic_create_ms)),
        (
            "page cache dropped".into(),
            Box::new(|r: &PhaseResult| match r.cache_dropped {
                Some(true) => "yes".to_string(),
                Some(false) => "NO".to_string(),
                None => "-".to_string(),
            }),
        ),
        (
            "unconsumed records".into(),
            Box::new(|r: &PhaseResult| r.unconsumed_records.to_string()),
        ),
        (
            "failed deliveries".into(),
            Box::new(|r: &PhaseResult| r.failed_records.to_string()),
        ),
        (
            "client errors".into(),
            Box::new(|r: &PhaseResult| r.client_error_count.to_string()),
        ),
        (
            "broker warnings".into(),
            Box::new(|r: &PhaseResult| r.broker_log_problems.len().to_string()),
        ),
    ]);
    for (label, cell) in rows {
        let mut row: Vec<Value> = vec![label.into()];
        for phase in &outcome.phases {
            row.push(if phase.error.is_some() {
                "ERROR".into()
            } else {
                cell(phase).into()
            });
        }
        table.push(row);
    }
    table
}

fn percentile_fields(prefix: &str, p: Option<Percentiles>) -> Vec<(String, Json)> {
    let value = |f: fn(&Percentiles) -> u64| Json::uint(p.as_ref().map(f));
    vec![
        (format!("{prefix}_p50_us"), value(|p| p.p50_us)),
        (format!("{prefix}_p99_us"), value(|p| p.p99_us)),
        (format!("{prefix}_p999_us"), value(|p| p.p999_us)),
        (format!("{prefix}_max_us"), value(|p| p.max_us)),
    ]
}

fn strings(items: &[String]) -> Json {
    Json::Array(items.iter().map(|s| Json::text(s)).collect())
}

fn phase_json(r: &PhaseResult, limits: &Limits) -> Json {
    let mut fields: Vec<(String, Json)> = vec![
        ("name".into(), Json::text(r.name)),
        ("topic".into(), Json::text(&r.topic)),
        ("partitions".into(), Json::Int(i64::from(r.partitions))),
        ("value_bytes".into(), Json::uint(Some(r.value_bytes as u64))),
        ("key_bytes".into(), Json::uint(Some(r.key_bytes as u64))),
        ("acks".into(), Json::text(r.acks)),
        ("durable".into(), Json::Bool(r.durable)),
        ("readers".into(), Json::uint(Some(r.readers as u64))),
        ("target_records_s".into(), Json::uint(r.target_records_s)),
        (
            "produced_records".into(),
            Json::uint(Some(r.produced_records)),
        ),
        ("produced_bytes".into(), Json::uint(Some(r.produced_bytes))),
        ("produce_seconds".into(), Json::Float(r.produce_seconds)),
        (
            "produce_records_s".into(),
            Json::float(r.produce_records_s()),
        ),
        ("produce_mib_s".into(), Json::float(r.produce_mib_s())),
        (
            "consumed_records".into(),
            Json::uint(Some(r.consumed_records)),
        ),
        ("consumed_bytes".into(), Json::uint(Some(r.consumed_bytes))),
        ("consume_seconds".into(), Json::Float(r.consume_seconds)),
        (
            "consume_records_s".into(),
            Json::float(r.consume_records_s()),
        ),
        ("consume_mib_s".into(), Json::float(r.consume_mib_s())),
        (
            "unconsumed_records".into(),
            Json::uint(Some(r.unconsumed_records)),
        ),
        ("failed_records".into(), Json::uint(Some(r.failed_records))),
    ];
    fields.extend(percentile_fields("ack", r.ack));
    fields.extend(percentile_fields("e2e", r.e2e));
    fields.extend(percentile_fields("broker_produce", r.broker_produce));
    fields.push((
        "broker_produce_requests".into(),
        Json::uint(r.broker_produce.map(|p| p.count)),
    ));
    fields.extend(percentile_fields("hiccup", r.hiccup));
    fields.push((
        "cpu_steal_fraction".into(),
        Json::float(r.cpu_steal_fraction),
    ));
    fields.extend(vec![
        ("records_per_batch".into(), Json::float(r.records_per_batch)),
        ("wall_seconds".into(), Json::Float(r.wall_seconds)),
        (
            "broker_cpu_seconds".into(),
            Json::float(r.broker.cpu_seconds),
        ),
        ("broker_cpu_cores".into(), Json::float(r.broker_cpu_cores())),
        (
            "broker_cpu_s_per_million_records".into(),
            Json::float(r.broker_cpu_s_per_million_records()),
        ),
        (
            "broker_cpu_s_per_gib".into(),
            Json::float(r.broker_cpu_s_per_gib()),
        ),
        ("broker_rss_mib".into(), Json::float(r.broker_rss_mib())),
        (
            "broker_disk_write_mib_s".into(),
            Json::float(r.broker_disk_write_mib_s()),
        ),
        (
            "broker_disk_read_mib_s".into(),
            Json::float(r.broker_disk_read_mib_s()),
        ),
        ("fsyncs_s".into(), Json::float(r.broker_fsyncs_s())),
        ("device_flushes_s".into(), Json::float(r.device_flushes_s())),
        ("client_cpu_cores".into(), Json::float(r.client_cpu_cores())),
        ("topic_create_ms".into(), Json::float(r.topic_create_ms)),
        (
            "page_cache_dropped".into(),
            r.cache_dropped.map_or(Json::Null, Json::Bool),
        ),
        (
            "fraction_of_limit".into(),
            Json::Object(
                r.fractions(limits)
                    .into_iter()
                    .map(|(name, f)| (name.to_string(), Json::float(f)))
                    .collect(),
            ),
        ),
        (
            "client_error_count".into(),
            Json::uint(Some(r.client_error_count)),
        ),
        ("client_errors".into(), strings(&r.client_errors)),
        (
            "broker_log_problems".into(),
            strings(&r.broker_log_problems),
        ),
        (
            "error".into(),
            r.error.as_deref().map_or(Json::Null, Json::text),
        ),
    ]);
    Json::Object(fields)
}

fn workload_json(outcome: &WorkloadOutcome, limits: &Limits) -> Json {
    let find = |name: &str| outcome.phases.iter().find(|p| p.name == name);
    let main = find(outcome.id.main_phase());
    // W5's main phase only reads; its producing figures come from the backlog phase.
    let producing = match outcome.id {
        WorkloadId::W5 => find("produce"),
        _ => main,
    };
    let get = |phase: Option<&PhaseResult>, f: fn(&PhaseResult) -> Option<f64>| {
        Json::float(phase.filter(|p| p.error.is_none()).and_then(f))
    };
    let e2e = |f: fn(&Percentiles) -> u64| {
        Json::uint(
            main.filter(|p| p.error.is_none())
                .and_then(|p| p.e2e)
                .as_ref()
                .map(f),
        )
    };
    Json::object(vec![
        ("description", Json::text(outcome.id.description())),
        ("main_phase", Json::text(outcome.id.main_phase())),
        (
            "produce_records_s",
            get(producing, PhaseResult::produce_records_s),
        ),
        ("produce_mib_s", get(producing, PhaseResult::produce_mib_s)),
        ("consume_mib_s", get(main, PhaseResult::consume_mib_s)),
        ("e2e_p50_us", e2e(|p| p.p50_us)),
        ("e2e_p99_us", e2e(|p| p.p99_us)),
        ("broker_cpu_cores", get(main, PhaseResult::broker_cpu_cores)),
        ("broker_rss_mib", get(main, PhaseResult::broker_rss_mib)),
        (
            "topics_delete_ms",
            match &outcome.topics_deleted {
                Ok(ms) => Json::Float(*ms),
                Err(_) => Json::Null,
            },
        ),
        (
            "topics_delete_error",
            match &outcome.topics_deleted {
                Ok(_) => Json::Null,
                Err(e) => Json::text(e),
            },
        ),
        (
            "phases",
            Json::Array(
                outcome
                    .phases
                    .iter()
                    .map(|p| phase_json(p, limits))
                    .collect(),
            ),
        ),
    ])
}

pub fn run_json(info: &RunInfo, limits: &Limits, workloads: &[WorkloadOutcome]) -> Json {
    Json::object(vec![
        ("harness", Json::text("ferry bench")),
        ("ferry_version", Json::text(env!("CARGO_PKG_VERSION"))),
        ("quick", Json::Bool(info.quick)),
        (
            "broker",
            Json::object(vec![
                ("bootstrap", Json::text(&info.bootstrap)),
                ("started_by_harness", Json::Bool(info.own_broker)),
                ("pid", Json::uint(info.broker_pid.map(u64::from))),
            ]),
        ),
        (
            "machine",
            Json::object(vec![
                (
                    "cpus",
                    Json::uint(
                        std::thread::available_parallelism()
                            .ok()
                            .map(|n| n.get() as u64),
                    ),
                ),
                ("work_dir", Json::text(&info.work_dir)),
            ]),
        ),
        (
            "limits",
            Json::object(vec![
                ("disk_append_mib_s", Json::Float(limits.disk_append_mib_s)),
                (
                    "disk_append_fdatasync_mib_s",
                    Json::Float(limits.disk_append_fdatasync_mib_s),
                ),
                ("disk_read_mib_s", Json::float(limits.disk_read_mib_s)),
                ("fsync_p50_us", Json::uint(Some(limits.fsync_p50_us))),
                ("fsync_p99_us", Json::uint(Some(limits.fsync_p99_us))),
                (
                    "group_commit_floor_p50_us",
                    Json::uint(Some(limits.group_commit_floor_p50_us)),
                ),
                (
                    "group_commit_floor_p99_us",
                    Json::uint(Some(limits.group_commit_floor_p99_us)),
                ),
                ("loopback_mib_s", Json::Float(limits.loopback_mib_s)),
            ]),
        ),
        (
            "workloads",
            Json::Object(
                workloads
                    .iter()
                    .map(|w| (w.id.name().to_string(), workload_json(w, limits)))
                    .collect(),
            ),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            disk_append_mib_s: 1000.0,
            disk_append_fdatasync_mib_s: 100.0,
            disk_read_mib_s: Some(500.0),
            fsync_p50_us: 900,
            fsync_p99_us: 2000,
            group_commit_floor_p50_us: 1500,
            group_commit_floor_p99_us: 4000,
            loopback_mib_s: 4000.0,
        }
    }

    #[test]
    fn headline_fields_come_from_the_main_phase() {
        let main = PhaseResult {
            name: "acks=1",
            produced_records: 1_000_000,
            produced_bytes: 100 * 1024 * 1024,
            produce_seconds: 2.0,
            consumed_records: 1_000_000,
            consumed_bytes: 100 * 1024 * 1024,
            consume_seconds: 2.5,
            wall_seconds: 4.0,
            broker: super::super::driver::BrokerUsage {
                cpu_seconds: Some(2.0),
                peak_rss_kib: Some(51_200),
                disk: None,
            },
            ..PhaseResult::default()
        };
        assert_eq!(main.produce_mib_s(), Some(50.0));
        assert_eq!(main.consume_mib_s(), Some(40.0));
        assert_eq!(main.broker_cpu_cores(), Some(0.5));
        assert_eq!(main.broker_cpu_s_per_million_records(), Some(2.0));
        let fractions = main.fractions(&limits());
        assert!(fractions.contains(&("produce_of_disk_append", Some(0.05))));
        assert!(!fractions.iter().any(|(n, _)| *n == "consume_of_disk_read"));

        let outcome = WorkloadOutcome {
            id: WorkloadId::W1,
            phases: vec![
                main,
                PhaseResult {
                    name: "acks=all",
                    error: Some("boom".into()),
                    ..PhaseResult::default()
                },
            ],
            topics_deleted: Ok(12.0),
        };
        let json = workload_json(&outcome, &limits()).render();
        for needle in [
            "\"produce_records_s\": 500000",
            "\"produce_mib_s\": 50",
            "\"consume_mib_s\": 40",
            "\"e2e_p50_us\": null",
            "\"broker_cpu_cores\": 0.5",
            "\"broker_rss_mib\": 50",
            "\"error\": \"boom\"",
        ] {
            assert!(json.contains(needle), "{needle} not in {json}");
        }
        let text = workload_table(&outcome, &limits()).to_text();
        assert!(text.starts_with("FIGURE"), "{text}");
        assert!(text.contains("ERROR"), "{text}");
    }
}
