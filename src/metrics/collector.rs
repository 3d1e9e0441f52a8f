//! What `/metrics` says, read at scrape time: a [`Snapshot`] of the broker's partitions, the
//! group coordinator's committed offsets, the network's request and connection counts and
//! the background work (`broker::activity`, `broker::log_cleaner`, `storage::fsync`), encoded
//! by prometheus-client.
//! The counters behind it are relaxed atomics updated where the work happens; only taking
//! a snapshot takes locks (the topic registry's, each partition's, the group coordinator's),
//! each briefly, and never on the request path's behalf.
//!
//! Label sets are bounded by what exists: partitions of existing topics, the API keys Ferry
//! knows, and at most [`MAX_GROUPS`] consumer groups (the others are counted in one gauge).
//! Client ids never become labels.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::broker::partition::{Partition, TrafficCounts};
use crate::broker::Broker;
use crate::coordinator::group::CommittedOffsets;
use crate::network::request_latency::{api_name, LatencyHistogram, EXPORTED_BOUNDS_US};
use crate::network::NetworkStats;
use crate::storage::fsync;

/// Consumer groups whose lag is exported; the rest are counted in
/// `ferry_consumergroups_not_exported`.
pub const MAX_GROUPS: usize = 1000;

/// One partition at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionSample {
    pub topic: String,
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub size_bytes: u64,
    pub offline: bool,
    pub traffic: TrafficCounts,
}

impl PartitionSample {
    fn of(partition: &Partition) -> PartitionSample {
        let (log_end_offset, size_bytes) = partition.end_and_size();
        PartitionSample {
            topic: partition.topic().to_string(),
            partition: partition.index(),
            log_start_offset: partition.log_start_offset(),
            log_end_offset,
            high_watermark: partition.high_watermark(),
            size_bytes,
            offline: partition.is_offline(),
            traffic: partition.traffic().counts(),
        }
    }
}

/// Broker-wide counts at scrape time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub connections_open: u64,
    pub connections_accepted: u64,
    /// Every fsync and fdatasync of the process (`storage::fsync`).
    pub fsyncs: u64,
    pub journal_fdatasyncs: u64,
    pub retention_segments_deleted: u64,
    pub retention_bytes_deleted: u64,
    pub cleaner_passes: u64,
    pub cleaner_bytes_read: u64,
    pub cleaner_bytes_written: u64,
    pub cleaner_records_removed: u64,
    pub cleaner_segments_replaced: u64,
    pub cleaner_failures: u64,
    pub authentications_succeeded: u64,
    pub authentications_failed: u64,
    pub tls_handshakes_failed: u64,
}

/// Everything one scrape exports, read from the broker before any encoding.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub partitions: Vec<PartitionSample>,
    pub groups: CommittedOffsets,
    pub requests: Vec<LatencyHistogram>,
    pub totals: Totals,
}

impl Snapshot {
    /// Reads the broker and the network counters, in topic and partition order.
    pub fn take(broker: &Broker, network: &NetworkStats) -> Snapshot {
        let mut partitions: Vec<PartitionSample> = broker
            .topics
            .all_partitions()
            .iter()
            .map(|p| PartitionSample::of(p))
            .collect();
        partitions.sort_unstable_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let activity = &broker.activity;
        let cleaner = &broker.cleaner.stats;
        Snapshot {
            partitions,
            groups: broker.groups.committed_offsets(MAX_GROUPS),
            requests: network.latency.histograms(),
            totals: Totals {
                connections_open: network.connections.open(),
                connections_accepted: network.connections.accepted(),
                authentications_succeeded: network.authentication.succeeded.load(Relaxed),
                authentications_failed: network.authentication.failed.load(Relaxed),
                tls_handshakes_failed: network.authentication.tls_handshakes_failed.load(Relaxed),
                fsyncs: fsync::fsyncs_so_far(),
                journal_fdatasyncs: activity.journal_fdatasyncs.get(),
                retention_segments_deleted: activity.retention_segments_deleted.get(),
                retention_bytes_deleted: activity.retention_bytes_deleted.get(),
                cleaner_passes: cleaner.passes.load(Relaxed),
                cleaner_bytes_read: cleaner.bytes_read.load(Relaxed),
                cleaner_bytes_written: cleaner.bytes_written.load(Relaxed),
                cleaner_records_removed: cleaner.records_removed.load(Relaxed),
                cleaner_segments_replaced: cleaner.segments_replaced.load(Relaxed),
                cleaner_failures: cleaner.failures.load(Relaxed),
            },
        }
    }

    /// Writes every metric family.
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        self.encode_partitions(encoder)?;
        self.encode_groups(encoder)?;
        self.encode_requests(encoder)?;
        self.encode_totals(encoder)
    }

    fn encode_partitions(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let partitions = &self.partitions;
        for (name, help, value) in PARTITION_COUNTERS {
            let samples = partitions
                .iter()
                .map(|s| (PartitionLabels(s), ConstCounter::new(value(&s.traffic))));
            family(encoder, name, help, samples)?;
        }
        for (name, help, value) in PARTITION_GAUGES {
            let samples = partitions
                .iter()
                .map(|s| (PartitionLabels(s), ConstGauge::new(value(s))));
            family(encoder, name, help, samples)?;
        }
        let offline = partitions.iter().filter(|s| s.offline).count();
        let help = "Partitions whose log is offline (KAFKA_STORAGE_ERROR until a restart).";
        scalar(
            encoder,
            "ferry_offline_partitions",
            help,
            ConstGauge::new(offline),
        )
    }

    fn encode_groups(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let lags = self.group_lags();
        family(
            encoder,
            "ferry_consumergroup_committed_offset",
            "Offset the group committed for the partition.",
            lags.iter()
                .map(|l| (GroupLabels(l), ConstGauge::new(l.committed))),
        )?;
        family(
            encoder,
            "ferry_consumergroup_lag",
            "Records between the group's committed offset and the partition's high watermark \
             (at least 0).",
            lags.iter()
                .map(|l| (GroupLabels(l), ConstGauge::new(l.lag))),
        )?;
        let help = "Groups with committed offsets left out of the two group families above, \
                    to keep the endpoint bounded.";
        let left_out = ConstGauge::new(self.groups.groups_left_out);
        scalar(encoder, "ferry_consumergroups_not_exported", help, left_out)
    }

    /// Lag per committed partition that exists: `max(0, high watermark - committed)`.
    fn group_lags(&self) -> Vec<GroupLag<'_>> {
        let high_watermarks: HashMap<(&str, i32), i64> = self
            .partitions
            .iter()
            .map(|s| ((s.topic.as_str(), s.partition), s.high_watermark))
            .collect();
        let mut lags = Vec::new();
        for group in &self.groups.groups {
            for (topic, partition, committed) in &group.offsets {
                if let Some(high_watermark) = high_watermarks.get(&(topic.as_str(), *partition)) {
                    lags.push(GroupLag {
                        group: &group.group_id,
                        topic,
                        partition: *partition,
                        committed: *committed,
                        lag: high_watermark.saturating_sub(*committed).max(0),
                    });
                }
            }
        }
        lags
    }

    fn encode_requests(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let api = |h: &LatencyHistogram| [("api", api_name(h.api_key))];
        family(
            encoder,
            "ferry_request",
            "Requests answered, per API.",
            self.requests
                .iter()
                .map(|h| (api(h), ConstCounter::new(h.requests))),
        )?;
        family(
            encoder,
            "ferry_request_latency_seconds",
            "Time from reading a request to handing its response to the socket writer, per API.",
            self.requests.iter().map(|h| (api(h), LatencySeconds(h))),
        )
    }

    fn encode_totals(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let t = &self.totals;
        scalar(
            encoder,
            "ferry_connections_open",
            "Client connections open now.",
            ConstGauge::new(t.connections_open),
        )?;
        for (name, help, value) in TOTAL_COUNTERS {
            scalar(encoder, name, help, ConstCounter::new(value(t)))?;
        }
        Ok(())
    }
}

/// A metric family's name (counters get `_total` appended), help, and how to read it.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Per-partition counters (labels `topic`, `partition`).
const PARTITION_COUNTERS: [Family<TrafficCounts, u64>; 4] = [
    (
        "ferry_topic_partition_bytes_in",
        "Record batch bytes produced to the partition and appended (duplicates not counted).",
        |t| t.bytes_in,
    ),
    (
        "ferry_topic_partition_records_in",
        "Records produced to the partition and appended.",
        |t| t.records_in,
    ),
    (
        "ferry_topic_partition_bytes_out",
        "Record batch bytes sent from the partition in Fetch responses.",
        |t| t.bytes_out,
    ),
    (
        "ferry_topic_partition_records_out",
        "Records in the batches sent from the partition in Fetch responses.",
        |t| t.records_out,
    ),
];

/// Per-partition gauges (labels `topic`, `partition`).
const PARTITION_GAUGES: [Family<PartitionSample, i64>; 4] = [
    (
        "ferry_log_size_bytes",
        "Bytes of the partition's log segments on disk.",
        |s| i64::try_from(s.size_bytes).unwrap_or(i64::MAX),
    ),
    (
        "ferry_log_start_offset",
        "First offset of the partition's log.",
        |s| s.log_start_offset,
    ),
    (
        "ferry_log_end_offset",
        "Offset the partition's next record gets.",
        |s| s.log_end_offset,
    ),
    (
        "ferry_partition_high_watermark",
        "Offset up to which consumers may read the partition.",
        |s| s.high_watermark,
    ),
];

/// Broker-wide counters, without labels.
const TOTAL_COUNTERS: [Family<Totals, u64>; 14] = [
    (
        "ferry_connections_accepted",
        "Client connections accepted since the broker started.",
        |t| t.connections_accepted,
    ),
    (
        "ferry_successful_authentications",
        "SASL logins that succeeded (re-authentications included).",
        |t| t.authentications_succeeded,
    ),
    (
        "ferry_failed_authentications",
        "SASL logins that failed (wrong password, unknown user, invalid token).",
        |t| t.authentications_failed,
    ),
    (
        "ferry_tls_handshake_failures",
        "TLS handshakes that failed or timed out.",
        |t| t.tls_handshakes_failed,
    ),
    (
        "ferry_fsyncs",
        "fsync and fdatasync calls since the broker started (segments, indexes, \
         checkpoints, the journal).",
        |t| t.fsyncs,
    ),
    (
        "ferry_journal_fdatasyncs",
        "fdatasyncs of the durable-mode journal, each acknowledging a round of durable \
         appends.",
        |t| t.journal_fdatasyncs,
    ),
    (
        "ferry_retention_segments_deleted",
        "Segments retention took out of their logs.",
        |t| t.retention_segments_deleted,
    ),
    (
        "ferry_retention_bytes_deleted",
        "Bytes of the segments retention took out of their logs.",
        |t| t.retention_bytes_deleted,
    ),
    (
        "ferry_log_cleaner_passes",
        "Log cleaner passes completed (compacted partitions cleaned).",
        |t| t.cleaner_passes,
    ),
    (
        "ferry_log_cleaner_read_bytes",
        "Bytes the log cleaner read.",
        |t| t.cleaner_bytes_read,
    ),
    (
        "ferry_log_cleaner_written_bytes",
        "Bytes of cleaned segments the log cleaner wrote.",
        |t| t.cleaner_bytes_written,
    ),
    (
        "ferry_log_cleaner_records_removed",
        "Records the log cleaner removed (superseded, tombstones, aborted, markers).",
        |t| t.cleaner_records_removed,
    ),
    (
        "ferry_log_cleaner_segments_replaced",
        "Segments the log cleaner replaced with cleaned ones.",
        |t| t.cleaner_segments_replaced,
    ),
    (
        "ferry_log_cleaner_failures",
        "Cleaning passes that failed, leaving their partition uncleaned until a restart.",
        |t| t.cleaner_failures,
    ),
];

/// One group's position in one partition.
struct GroupLag<'a> {
    group: &'a str,
    topic: &'a str,
    partition: i32,
    committed: i64,
    lag: i64,
}

/// The `group`, `topic` and `partition` labels.
struct GroupLabels<'a>(&'a GroupLag<'a>);

impl EncodeLabelSet for GroupLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        [("group", self.0.group), ("topic", self.0.topic)].encode(encoder)?;
        [("partition", self.0.partition)].encode(encoder)
    }
}

/// The `topic` and `partition` labels.
struct PartitionLabels<'a>(&'a PartitionSample);

impl EncodeLabelSet for PartitionLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        [("topic", self.0.topic.as_str())].encode(encoder)?;
        [("partition", self.0.partition)].encode(encoder)
    }
}

/// One API's cumulative latency histogram, in seconds.
struct LatencySeconds<'a>(&'a LatencyHistogram);

impl TypedMetric for LatencySeconds<'_> {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencySeconds<'_> {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let histogram = self.0;
        // The encoder wants each bucket's own count and sums them up again.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = EXPORTED_BOUNDS_US
            .iter()
            .zip(histogram.at_or_below)
            .map(|(bound_us, at_or_below)| {
                let own = at_or_below.saturating_sub(below);
                below = at_or_below;
                (seconds(*bound_us), own)
            })
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            seconds(histogram.sum_us),
            histogram.requests,
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn seconds(micros: u64) -> f64 {
    micros as f64 / 1e6
}

/// One metric family: its descriptor, then one sample per label set.
fn family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (L, M)>,
) -> fmt::Result
where
    L: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    let mut metric = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A metric without labels.
fn scalar<M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: M,
) -> fmt::Result {
    value.encode(encoder.encode_descriptor(name, help, None, M::TYPE)?)
}

/// The broker's metrics, collected at each scrape.
pub struct BrokerCollector {
    broker: Arc<Broker>,
    network: Arc<NetworkStats>,
}

impl BrokerCollector {
    pub fn new(broker: Arc<Broker>, network: Arc<NetworkStats>) -> BrokerCollector {
        BrokerCollector { broker, network }
    }
}

impl fmt::Debug for BrokerCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BrokerCollector")
    }
}

impl Collector for BrokerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        Snapshot::take(&self.broker, &self.network).encode(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::coordinator::group::GroupOffsets;

    /// A collector exporting a fixed snapshot.
    #[derive(Debug)]
    struct Fixed(Snapshot);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            self.0.encode(&mut encoder)
        }
    }

    fn sample(topic: &str, partition: i32, high_watermark: i64) -> PartitionSample {
        PartitionSample {
            topic: topic.to_string(),
            partition,
            log_start_offset: 2,
            log_end_offset: high_watermark + 1,
            high_watermark,
            size_bytes: 4096,
            offline: partition == 1,
            traffic: TrafficCounts {
                bytes_in: 700,
                records_in: 10,
                bytes_out: 300,
                records_out: 4,
            },
        }
    }

    fn rendered(snapshot: Snapshot) -> Vec<String> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Fixed(snapshot)));
        let text = crate::metrics::render(&registry).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn group(id: &str, offsets: &[(&str, i32, i64)]) -> GroupOffsets {
        GroupOffsets {
            group_id: id.to_string(),
            offsets: offsets
                .iter()
                .map(|(topic, partition, offset)| (topic.to_string(), *partition, *offset))
                .collect(),
        }
    }

    #[test]
    fn partitions_groups_and_totals_are_exported_with_their_labels() {
        let snapshot = Snapshot {
            partitions: vec![sample("orders", 0, 10), sample("orders", 1, 5)],
            groups: CommittedOffsets {
                groups: vec![group(
                    "billing \"eu\"",
                    &[("gone", 0, 1), ("orders", 0, 4), ("orders", 1, 9)],
                )],
                groups_left_out: 3,
            },
            requests: Vec::new(),
            totals: Totals {
                connections_open: 2,
                connections_accepted: 7,
                fsyncs: 11,
                journal_fdatasyncs: 5,
                retention_segments_deleted: 1,
                retention_bytes_deleted: 1024,
                cleaner_passes: 3,
                cleaner_bytes_read: 9000,
                cleaner_bytes_written: 2000,
                cleaner_records_removed: 70,
                cleaner_segments_replaced: 6,
                cleaner_failures: 0,
                authentications_succeeded: 4,
                authentications_failed: 2,
                tls_handshakes_failed: 1,
            },
        };
        let lines = rendered(snapshot);
        let p0 = r#"{topic="orders",partition="0"}"#;
        let g = r#"group="billing \"eu\"",topic="orders""#;
        for expected in [
            format!("ferry_topic_partition_bytes_in_total{p0} 700"),
            format!("ferry_topic_partition_records_in_total{p0} 10"),
            format!("ferry_topic_partition_bytes_out_total{p0} 300"),
            format!("ferry_topic_partition_records_out_total{p0} 4"),
            format!("ferry_log_size_bytes{p0} 4096"),
            format!("ferry_log_start_offset{p0} 2"),
            format!("ferry_log_end_offset{p0} 11"),
            format!("ferry_partition_high_watermark{p0} 10"),
            "# TYPE ferry_topic_partition_bytes_in_total counter".to_string(),
            "# TYPE ferry_log_end_offset gauge".to_string(),
            "ferry_offline_partitions 1".to_string(),
            format!(r#"ferry_consumergroup_committed_offset{{{g},partition="0"}} 4"#),
            format!(r#"ferry_consumergroup_lag{{{g},partition="0"}} 6"#),
            format!(r#"ferry_consumergroup_lag{{{g},partition="1"}} 0"#),
            "ferry_consumergroups_not_exported 3".to_string(),
            "ferry_connections_open 2".to_string(),
            "ferry_connections_accepted_total 7".to_string(),
            "ferry_successful_authentications_total 4".to_string(),
            "ferry_failed_authentications_total 2".to_string(),
            "ferry_tls_handshake_failures_total 1".to_string(),
            "ferry_fsyncs_total 11".to_string(),
            "ferry_journal_fdatasyncs_total 5".to_string(),
            "ferry_retention_segments_deleted_total 1".to_string(),
            "ferry_retention_bytes_deleted_total 1024".to_string(),
            "ferry_log_cleaner_passes_total 3".to_string(),
            "ferry_log_cleaner_read_bytes_total 9000".to_string(),
            "ferry_log_cleaner_written_bytes_total 2000".to_string(),
            "ferry_log_cleaner_records_removed_total 70".to_string(),
            "ferry_log_cleaner_segments_replaced_total 6".to_string(),
            "ferry_log_cleaner_failures_total 0".to_string(),
        ] {
            assert!(lines.contains(&expected), "no {expected} in {lines:#?}");
        }
        assert!(
            !lines.iter().any(|l| l.contains("gone")),
            "no lag for a partition that does not exist"
        );
    }

    #[test]
    fn latency_histograms_are_in_seconds_with_cumulative_buckets() {
        let mut at_or_below = [5u64; EXPORTED_BOUNDS_US.len()];
        at_or_below[0] = 1;
        at_or_below[1] = 3;
        let snapshot = Snapshot {
            requests: vec![LatencyHistogram {
                api_key: 0,
                requests: 6,
                sum_us: 2_500_000,
                at_or_below,
            }],
            ..Snapshot::default()
        };
        let lines = rendered(snapshot);
        let bucket = |le: &str| {
            format!(r#"ferry_request_latency_seconds_bucket{{api="Produce",le="{le}"}}"#)
        };
        for expected in [
            "ferry_request_total{api=\"Produce\"} 6".to_string(),
            "# TYPE ferry_request_latency_seconds histogram".to_string(),
            format!("{} 1", bucket("6.4e-05")),
            format!("{} 3", bucket("0.000128")),
            format!("{} 5", bucket("16.777216")),
            format!("{} 6", bucket("+Inf")),
            "ferry_request_latency_seconds_sum{api=\"Produce\"} 2.5".to_string(),
            "ferry_request_latency_seconds_count{api=\"Produce\"} 6".to_string(),
        ] {
            assert!(lines.contains(&expected), "no {expected} in {lines:#?}");
        }
    }
}
