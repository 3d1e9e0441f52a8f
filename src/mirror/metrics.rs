//! The mirror's Prometheus gauges (on `--metrics-listen` when it is set): per link, topic
//! and partition the source's and the mirror's end offsets, the lag in records and in
//! milliseconds, the bytes copied; per topic its state; per synced group and partition
//! the committed offsets on both sides. Labels are bounded by what the links mirror.

use std::fmt;
use std::sync::Weak;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::TypedMetric;

use super::status::PartitionStatus;
use super::Mirror;

/// Collects from the mirror at each scrape (nothing once it is gone).
pub struct MirrorCollector(pub Weak<Mirror>);

impl fmt::Debug for MirrorCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MirrorCollector")
    }
}

type PartitionRow = (Vec<(&'static str, String)>, PartitionStatus);

/// A gauge family of partitions: name, help, and the figure it exports.
type PartitionGauge = (&'static str, &'static str, fn(&PartitionStatus) -> i64);

const PARTITION_GAUGES: &[PartitionGauge] = &[
    (
        "ferry_mirror_source_log_end_offset",
        "The source partition's end offset, as last seen.",
        |s| s.source_log_end_offset,
    ),
    (
        "ferry_mirror_log_end_offset",
        "The mirror partition's end offset.",
        |s| s.mirrored_log_end_offset,
    ),
    (
        "ferry_mirror_lag_records",
        "Records the mirror lacks (source end minus mirror end, at least 0).",
        |s| s.lag_records,
    ),
    (
        "ferry_mirror_lag_ms",
        "How long the mirror has been behind the source (0 when in sync).",
        |s| s.lag_ms,
    ),
];

fn family<L: EncodeLabelSet, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (L, M)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, M::TYPE)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for MirrorCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(mirror) = self.0.upgrade() else {
            return Ok(());
        };
        let state = mirror.lock_state().clone();
        let mut partitions: Vec<PartitionRow> = Vec::new();
        let mut topics = Vec::new();
        let mut groups = Vec::new();
        for (link, record) in &state.links {
            let status = mirror.with_status(link, |s| s.clone());
            for (topic, entry) in &record.topics {
                topics.push((
                    vec![
                        ("link", link.clone()),
                        ("topic", topic.clone()),
                        ("state", entry.state.name().to_string()),
                    ],
                    ConstGauge::new(1i64),
                ));
                for (index, p) in status.partitions.get(topic).into_iter().flatten() {
                    let labels = vec![
                        ("link", link.clone()),
                        ("topic", topic.clone()),
                        ("partition", index.to_string()),
                    ];
                    partitions.push((labels, p.clone()));
                }
            }
            for (group, g) in &status.groups {
                for o in &g.offsets {
                    let labels = |side: &str| {
                        vec![
                            ("link", link.clone()),
                            ("group", group.clone()),
                            ("topic", o.topic.clone()),
                            ("partition", o.partition.to_string()),
                            ("side", side.to_string()),
                        ]
                    };
                    groups.push((labels("source"), ConstGauge::new(o.source_offset)));
                    groups.push((labels("ferry"), ConstGauge::new(o.ferry_offset)));
                }
            }
        }
        for (name, help, value) in PARTITION_GAUGES {
            let samples = partitions
                .iter()
                .map(|(labels, s)| (labels.clone(), ConstGauge::new(value(s))));
            family(&mut encoder, name, help, samples)?;
        }
        family(
            &mut encoder,
            "ferry_mirror_bytes",
            "Bytes of batches the mirror appended.",
            partitions
                .iter()
                .map(|(labels, s)| (labels.clone(), ConstCounter::new(s.bytes_mirrored))),
        )?;
        family(
            &mut encoder,
            "ferry_mirror_topic_state",
            "1 for each mirrored topic, labelled with its state (mirroring, paused, failed, \
             promoted).",
            topics.into_iter(),
        )?;
        family(
            &mut encoder,
            "ferry_mirror_group_committed_offset",
            "A synced group's committed offset on the source and on Ferry (-1: none).",
            groups.into_iter(),
        )
    }
}
