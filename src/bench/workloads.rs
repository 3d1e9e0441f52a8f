//! The workloads W1-W8 as data: names, topics, record sizes, partition counts, rates and
//! durations are fixed here so results compare across versions and brokers. Changing any of
//! them makes old results incomparable: add a new workload instead.

use std::time::Duration;

/// Length of a timed phase.
pub const PHASE_DURATION_FULL: Duration = Duration::from_secs(30);
pub const PHASE_DURATION_QUICK: Duration = Duration::from_secs(4);
/// W5: bytes of values produced before the catch-up reads.
pub const W5_BACKLOG_BYTES_FULL: u64 = 5 * 1024 * 1024 * 1024;
pub const W5_BACKLOG_BYTES_QUICK: u64 = 256 * 1024 * 1024;
/// W4: values plus keys per second, over all partitions.
pub const W4_TARGET_BYTES_PER_S: u64 = 20 * 1024 * 1024;
/// W4: key and value sizes (together 1 KiB) and how many distinct keys cycle.
pub const W4_KEY_BYTES: usize = 8;
pub const W4_VALUE_BYTES: usize = 1024 - W4_KEY_BYTES;
pub const W4_DISTINCT_KEYS: u64 = 100_000;
/// W7's rate: 10 MiB/s of 1 KiB keyed records, each key written again every ~10 s.
pub const W7_RECORDS_PER_S: u64 = 10_240;
/// W8: the source's backlog the mirror catches up on, and the source's steady rate
/// (20 MiB/s of 1 KiB records).
pub const W8_BACKLOG_BYTES_FULL: u64 = 2 * 1024 * 1024 * 1024;
pub const W8_BACKLOG_BYTES_QUICK: u64 = 256 * 1024 * 1024;
pub const W8_STEADY_RECORDS_PER_S: u64 = 20_480;
/// `linger.ms` of throughput phases and of the fixed-rate latency phases.
pub const THROUGHPUT_LINGER_MS: u32 = 5;
pub const LATENCY_LINGER_MS: u32 = 0;
/// `batch.size` of every producer.
pub const PRODUCER_BATCH_BYTES: u32 = 1024 * 1024;
/// `fetch.wait.max.ms` of readers in fixed-rate phases, and in all others.
pub const LATENCY_FETCH_WAIT_MS: u32 = 10;
pub const THROUGHPUT_FETCH_WAIT_MS: u32 = 100;
/// Consumer groups reading at once in W2's fan-out phase.
pub const W2_FANOUT_GROUPS: usize = 3;

/// A workload: a named group of phases whose main phase gives the headline figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkloadId {
    W1,
    W2,
    W3,
    W4,
    W5,
    W6,
    W7,
    W8,
    W9,
}

impl WorkloadId {
    pub const ALL: [WorkloadId; 9] = [
        WorkloadId::W1,
        WorkloadId::W2,
        WorkloadId::W3,
        WorkloadId::W4,
        WorkloadId::W5,
        WorkloadId::W6,
        WorkloadId::W7,
        WorkloadId::W8,
        WorkloadId::W9,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WorkloadId::W1 => "W1",
            WorkloadId::W2 => "W2",
            WorkloadId::W3 => "W3",
            WorkloadId::W4 => "W4",
            WorkloadId::W5 => "W5",
            WorkloadId::W6 => "W6",
            WorkloadId::W7 => "W7",
            WorkloadId::W8 => "W8",
            WorkloadId::W9 => "W9",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            WorkloadId::W1 => "small records: 100-byte values, 8 partitions, unthrottled, acks=1 then acks=all, then acks=1 with no reader",
            WorkloadId::W2 => "1 KiB records, 16 partitions, unthrottled; one reader, then three consumer groups at once",
            WorkloadId::W3 => "latency at fixed rates: 1 KiB @ 5,000/s over 16 partitions, 100 B @ 1,000/s on one; default flush, then durable (flush.messages=1)",
            WorkloadId::W4 => "many partitions: 1,000 then 10,000, keyed, 20 MiB/s total",
            WorkloadId::W5 => "backlog: produce a backlog, then catch up from the start with a cold page cache, then warm",
            WorkloadId::W6 => "topic compression: distinct 1 KiB text records produced uncompressed, 8 partitions, unthrottled, no reader; stored as produced, then into a compression.type=zstd topic (every batch recompressed)",
            WorkloadId::W7 => "compaction: 1 KiB records with 8-byte keys over 100,000 keys at 10,240/s (10 MiB/s), 4 partitions of 4 MiB segments, no reader; into a cleanup.policy=delete topic, then a compact one the log cleaner cleans while it is written",
            WorkloadId::W9 => "security: 1 KiB records, 8 partitions, unthrottled, acks=1, one reader; over PLAINTEXT, then over SASL_SSL (TLS 1.3, SCRAM-SHA-512) on a second listener of the same broker",
            WorkloadId::W8 => "mirror: a second Ferry mirrors an 8-partition topic of 1 KiB records from the broker under test: catch-up on a backlog (2 GiB) read cold by the source, then steady state with the source taking 20 MiB/s and a reader on the mirror (end-to-end = source append to mirror reader); broker figures of both mirror phases are the mirroring Ferry's",
        }
    }

    pub fn phases(self) -> Vec<PhaseSpec> {
        let live = |name, topic, partitions, value_bytes, acks, load| PhaseSpec {
            name,
            topic,
            partitions,
            topic_configs: &[],
            value_bytes,
            key_bytes: 0,
            acks,
            kind: PhaseKind::Live { load },
            readers: Readers::Assign,
            profile: Profile::Throughput,
            values: Values::Same,
            transport: Transport::Plaintext,
        };
        match self {
            WorkloadId::W1 => vec![
                live("acks=1", "bench-w1-acks1", 8, 100, "1", Load::Unthrottled),
                live(
                    "acks=all",
                    "bench-w1-acksall",
                    8,
                    100,
                    "all",
                    Load::Unthrottled,
                ),
                // The producer alone, as librdkafka's `rdkafka_performance` measures it (the
                // reference the W1 target cites): with clients and broker sharing two cores,
                // the reader of the first two phases takes about a quarter of the producer's
                // rate.
                PhaseSpec {
                    readers: Readers::None,
                    ..live(
                        "acks=1-no-reader",
                        "bench-w1-acks1-alone",
                        8,
                        100,
                        "1",
                        Load::Unthrottled,
                    )
                },
            ],
            WorkloadId::W2 => vec![
                live(
                    "1-reader",
                    "bench-w2-1kib",
                    16,
                    1024,
                    "all",
                    Load::Unthrottled,
                ),
                PhaseSpec {
                    readers: Readers::Groups(W2_FANOUT_GROUPS),
                    ..live(
                        "3-groups",
                        "bench-w2-fanout",
                        16,
                        1024,
                        "all",
                        Load::Unthrottled,
                    )
                },
            ],
            WorkloadId::W3 => {
                let durable: &'static [(&str, &str)] = &[("flush.messages", "1")];
                let live = |name, topic, partitions, value_bytes, acks, load| PhaseSpec {
                    profile: Profile::Latency,
                    ..live(name, topic, partitions, value_bytes, acks, load)
                };
                vec![
                    live(
                        "1k@5000/s",
                        "bench-w3-1kib-5000",
                        16,
                        1024,
                        "all",
                        Load::Rate(5_000),
                    ),
                    live(
                        "100b@1000/s",
                        "bench-w3-100b-1000",
                        1,
                        100,
                        "all",
                        Load::Rate(1_000),
                    ),
                    PhaseSpec {
                        topic_configs: durable,
                        ..live(
                            "1k@5000/s-durable",
                            "bench-w3-1kib-5000-durable",
                            16,
                            1024,
                            "all",
                            Load::Rate(5_000),
                        )
                    },
                    PhaseSpec {
                        topic_configs: durable,
                        ..live(
                            "100b@1000/s-durable",
                            "bench-w3-100b-1000-durable",
                            1,
                            100,
                            "all",
                            Load::Rate(1_000),
                        )
                    },
                ]
            }
            WorkloadId::W4 => {
                let rate = W4_TARGET_BYTES_PER_S / (W4_KEY_BYTES + W4_VALUE_BYTES) as u64;
                let keyed = |name, topic, partitions| PhaseSpec {
                    key_bytes: W4_KEY_BYTES,
                    ..live(
                        name,
                        topic,
                        partitions,
                        W4_VALUE_BYTES,
                        "all",
                        Load::Rate(rate),
                    )
                };
                vec![
                    keyed("1000-partitions", "bench-w4-1000p", 1_000),
                    keyed("10000-partitions", "bench-w4-10000p", 10_000),
                ]
            }
            WorkloadId::W6 => {
                let zstd: &'static [(&str, &str)] = &[("compression.type", "zstd")];
                let alone = |name, topic| PhaseSpec {
                    readers: Readers::None,
                    values: Values::DistinctText,
                    ..live(name, topic, 8, 1024, "1", Load::Unthrottled)
                };
                vec![
                    alone("as-produced", "bench-w6-producer"),
                    PhaseSpec {
                        topic_configs: zstd,
                        ..alone("to-zstd", "bench-w6-zstd")
                    },
                ]
            }
            WorkloadId::W7 => {
                let delete: &'static [(&str, &str)] =
                    &[("cleanup.policy", "delete"), ("segment.bytes", "4194304")];
                let compact: &'static [(&str, &str)] = &[
                    ("cleanup.policy", "compact"),
                    ("segment.bytes", "4194304"),
                    ("min.cleanable.dirty.ratio", "0.1"),
                ];
                let keyed = |name, topic, topic_configs| PhaseSpec {
                    key_bytes: W4_KEY_BYTES,
                    readers: Readers::None,
                    topic_configs,
                    ..live(
                        name,
                        topic,
                        4,
                        W4_VALUE_BYTES,
                        "all",
                        Load::Rate(W7_RECORDS_PER_S),
                    )
                };
                vec![
                    keyed("keyed-delete", "bench-w7-delete", delete),
                    keyed("keyed-compact", "bench-w7-compact", compact),
                ]
            }
            WorkloadId::W9 => vec![
                live(
                    "plaintext",
                    "bench-w9-plaintext",
                    8,
                    1024,
                    "1",
                    Load::Unthrottled,
                ),
                PhaseSpec {
                    transport: Transport::SaslSsl,
                    ..live(
                        "sasl_ssl",
                        "bench-w9-sasl-ssl",
                        8,
                        1024,
                        "1",
                        Load::Unthrottled,
                    )
                },
            ],
            WorkloadId::W8 => {
                let topic = "bench-w8-mirror";
                vec![
                    PhaseSpec {
                        kind: PhaseKind::Backlog {
                            full_bytes: W8_BACKLOG_BYTES_FULL,
                            quick_bytes: W8_BACKLOG_BYTES_QUICK,
                        },
                        readers: Readers::None,
                        ..live("backlog", topic, 8, 1024, "all", Load::Unthrottled)
                    },
                    PhaseSpec {
                        kind: PhaseKind::MirrorCatchUp,
                        readers: Readers::None,
                        ..live("mirror-catch-up", topic, 8, 1024, "all", Load::Unthrottled)
                    },
                    PhaseSpec {
                        kind: PhaseKind::MirrorLive {
                            load: Load::Rate(W8_STEADY_RECORDS_PER_S),
                        },
                        profile: Profile::Latency,
                        ..live(
                            "mirror-steady",
                            "bench-w8-steady",
                            8,
                            1024,
                            "all",
                            Load::Unthrottled,
                        )
                    },
                ]
            }
            WorkloadId::W5 => {
                let topic = "bench-w5-backlog";
                vec![
                    PhaseSpec {
                        kind: PhaseKind::Backlog {
                            full_bytes: W5_BACKLOG_BYTES_FULL,
                            quick_bytes: W5_BACKLOG_BYTES_QUICK,
                        },
                        readers: Readers::None,
                        ..live("produce", topic, 16, 1024, "all", Load::Unthrottled)
                    },
                    PhaseSpec {
                        kind: PhaseKind::CatchUp { cold: true },
                        ..live("cold-catch-up", topic, 16, 1024, "all", Load::Unthrottled)
                    },
                    PhaseSpec {
                        kind: PhaseKind::CatchUp { cold: false },
                        ..live("warm-catch-up", topic, 16, 1024, "all", Load::Unthrottled)
                    },
                ]
            }
        }
    }

    /// The phase whose figures are the workload's headline numbers in the JSON.
    pub fn main_phase(self) -> &'static str {
        match self {
            WorkloadId::W1 => "acks=1",
            WorkloadId::W2 => "1-reader",
            WorkloadId::W3 => "1k@5000/s",
            WorkloadId::W4 => "10000-partitions",
            WorkloadId::W5 => "cold-catch-up",
            WorkloadId::W6 => "to-zstd",
            WorkloadId::W7 => "keyed-compact",
            WorkloadId::W8 => "mirror-catch-up",
            WorkloadId::W9 => "sasl_ssl",
        }
    }
}

/// How fast producers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    /// As fast as the producer's queue accepts records.
    Unthrottled,
    /// Records per second, scheduled by the clock: record `i` is due at `start + i / rate`
    /// and its latencies are measured from that instant, however late it is sent.
    Rate(u64),
}

/// What a phase does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseKind {
    /// Producing for the phase duration while the readers consume.
    Live { load: Load },
    /// Producing a fixed number of bytes (a full or a `--quick` run's) with no readers.
    Backlog { full_bytes: u64, quick_bytes: u64 },
    /// W8: a second Ferry (the harness's) mirrors the topic an earlier phase filled, from
    /// its start, until it has all of it; the source's pages are dropped from the page
    /// cache first (when the harness started the source).
    MirrorCatchUp,
    /// W8: producing to a new topic of the broker under test, mirrored from its creation,
    /// while a reader reads the mirroring Ferry.
    MirrorLive { load: Load },
    /// Reading a topic an earlier phase filled, from its start; `cold` drops its pages from
    /// the page cache first (possible only when the harness started the broker).
    CatchUp { cold: bool },
}

/// Who consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    None,
    /// One consumer assigned every partition from the start (no group).
    Assign,
    /// This many consumer groups of one member each, subscribed to the topic.
    Groups(usize),
}

#[derive(Debug, Clone)]
pub struct PhaseSpec {
    /// Column header and JSON name; unique within the workload.
    pub name: &'static str,
    pub topic: &'static str,
    pub partitions: i32,
    pub topic_configs: &'static [(&'static str, &'static str)],
    pub value_bytes: usize,
    /// 0: no key (librdkafka's default partitioner spreads records); otherwise keys of this
    /// size cycling through [`W4_DISTINCT_KEYS`] values.
    pub key_bytes: usize,
    pub acks: &'static str,
    pub kind: PhaseKind,
    pub readers: Readers,
    pub profile: Profile,
    pub values: Values,
    pub transport: Transport,
}

/// How a phase's clients connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plaintext,
    /// TLS and SCRAM-SHA-512 on the harness's own Ferry's second listener (W9).
    SaslSsl,
}

/// What producers send as values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values {
    /// One random value for every record (W1-W5), with the send time in its first bytes
    /// for end-to-end latency: cheap for the producer, and incompressible per record.
    Same,
    /// A different value per record, cut from a pool of generated text that compresses
    /// about as well as log lines (W6: recompression cost on data like users'). No send
    /// time is embedded, so the phase must have no readers.
    DistinctText,
}

/// Client settings: batching and long fetch waits for throughput, neither for latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `linger.ms` = [`THROUGHPUT_LINGER_MS`], `fetch.wait.max.ms` = [`THROUGHPUT_FETCH_WAIT_MS`].
    Throughput,
    /// `linger.ms` = [`LATENCY_LINGER_MS`], `fetch.wait.max.ms` = [`LATENCY_FETCH_WAIT_MS`].
    Latency,
}

impl PhaseSpec {
    pub fn load(&self) -> Load {
        match self.kind {
            PhaseKind::Live { load } | PhaseKind::MirrorLive { load } => load,
            _ => Load::Unthrottled,
        }
    }

    pub fn linger_ms(&self) -> u32 {
        match self.profile {
            Profile::Latency => LATENCY_LINGER_MS,
            Profile::Throughput => THROUGHPUT_LINGER_MS,
        }
    }

    pub fn fetch_wait_ms(&self) -> u32 {
        match self.profile {
            Profile::Latency => LATENCY_FETCH_WAIT_MS,
            Profile::Throughput => THROUGHPUT_FETCH_WAIT_MS,
        }
    }

    pub fn durable(&self) -> bool {
        self.topic_configs
            .iter()
            .any(|(k, v)| *k == "flush.messages" && *v == "1")
    }

    /// Whether this phase creates its topic (catch-up phases read an earlier one's).
    pub fn creates_topic(&self) -> bool {
        matches!(
            self.kind,
            PhaseKind::Live { .. } | PhaseKind::Backlog { .. } | PhaseKind::MirrorLive { .. }
        )
    }

    pub fn record_bytes(&self) -> usize {
        self.key_bytes + self.value_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_are_well_formed() {
        for workload in WorkloadId::ALL {
            let phases = workload.phases();
            assert!(phases.iter().any(|p| p.name == workload.main_phase()));
            for (i, phase) in phases.iter().enumerate() {
                assert!(phases[..i].iter().all(|p| p.name != phase.name));
                // Values carry the send timestamp in their first 8 bytes.
                assert!(phase.value_bytes >= 8);
                // The harness sends unthrottled records unkeyed, in batches.
                if phase.load() == Load::Unthrottled && phase.creates_topic() {
                    assert_eq!(phase.key_bytes, 0, "{}", phase.name);
                }
            }
        }
        let w1 = WorkloadId::W1.phases();
        assert_eq!(w1[0].readers, Readers::Assign);
        assert_eq!((w1[2].acks, w1[2].readers), ("1", Readers::None));
        let w4 = WorkloadId::W4.phases();
        assert_eq!(w4[0].load(), Load::Rate(20 * 1024));
        assert_eq!(w4[1].partitions, 10_000);
        assert_eq!(w4[1].linger_ms(), THROUGHPUT_LINGER_MS);
        let w3 = WorkloadId::W3.phases();
        assert!(w3[2].durable() && !w3[0].durable());
        assert_eq!(w3[1].linger_ms(), LATENCY_LINGER_MS);
        assert_eq!(w3[3].fetch_wait_ms(), LATENCY_FETCH_WAIT_MS);
        assert_eq!(w4[1].fetch_wait_ms(), THROUGHPUT_FETCH_WAIT_MS);
    }
}
