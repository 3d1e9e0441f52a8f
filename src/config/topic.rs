//! Topic-level configuration: the keys a topic accepts (CreateTopics configs,
//! DescribeConfigs), their broker-level default keys (`log.segment.bytes` for
//! `segment.bytes`, ...), validation, and resolution into the storage layer's `LogConfig`.

use std::collections::BTreeMap;

use super::{invalid, parse_num, ConfigError};
use crate::storage::batch::{Compression, TimestampType};
use crate::storage::log::LogConfig;
use crate::storage::recompress::TopicCompression;

/// A config's type as DescribeConfigs v3+ reports it (Kafka's `ConfigType` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Long = 5,
    Double = 6,
    List = 7,
}

/// How a value is checked.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// An integer in `[min, max]`.
    Long { min: i64, max: i64 },
    /// One of a fixed set of words (comma-separated lists allowed when `list`).
    Choice {
        options: &'static [&'static str],
        list: bool,
    },
    /// A decimal number in `[min, max]`.
    Double { min: f64, max: f64 },
    /// Accepted and shown, but without effect in Ferry yet.
    Inert,
}

/// One topic config key.
#[derive(Debug)]
pub struct TopicKey {
    pub name: &'static str,
    /// The type Kafka declares for the key (DescribeConfigs v3+).
    pub config_type: ConfigType,
    /// The broker key whose value is the default, if any.
    pub broker_key: Option<&'static str>,
    pub default: &'static str,
    kind: Kind,
}

const DAY_MS: &str = "86400000";
const WEEK_MS: &str = "604800000";
const LONG_MAX: &str = "9223372036854775807";

/// Every topic config key Ferry accepts, sorted by name.
pub static TOPIC_KEYS: &[TopicKey] = &[
    TopicKey {
        name: "cleanup.policy",
        config_type: ConfigType::List,
        broker_key: Some("log.cleanup.policy"),
        default: "delete",
        kind: Kind::Choice {
            options: &["delete", "compact"],
            list: true,
        },
    },
    TopicKey {
        name: "compression.gzip.level",
        config_type: ConfigType::Int,
        broker_key: Some("compression.gzip.level"),
        default: "-1",
        kind: Kind::Long { min: -1, max: 9 },
    },
    TopicKey {
        name: "compression.lz4.level",
        config_type: ConfigType::Int,
        broker_key: Some("compression.lz4.level"),
        default: "9",
        kind: Kind::Long { min: 1, max: 17 },
    },
    TopicKey {
        name: "compression.type",
        config_type: ConfigType::String,
        broker_key: Some("compression.type"),
        default: "producer",
        // `producer` stores batches as produced; a codec has every batch rewritten to it
        // (storage::recompress).
        kind: Kind::Choice {
            options: &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
            list: false,
        },
    },
    TopicKey {
        name: "compression.zstd.level",
        config_type: ConfigType::Int,
        broker_key: Some("compression.zstd.level"),
        default: "3",
        kind: Kind::Long {
            min: -131_072,
            max: 22,
        },
    },
    TopicKey {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.cleaner.delete.retention.ms"),
        default: DAY_MS,
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "file.delete.delay.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.segment.delete.delay.ms"),
        default: "60000",
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "flush.messages",
        config_type: ConfigType::Long,
        broker_key: Some("log.flush.interval.messages"),
        default: LONG_MAX,
        kind: Kind::Long {
            min: 1,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "flush.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.flush.interval.ms"),
        default: LONG_MAX,
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        broker_key: Some("log.index.interval.bytes"),
        default: "4096",
        kind: Kind::Long {
            min: 0,
            max: i32::MAX as i64,
        },
    },
    TopicKey {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.cleaner.max.compaction.lag.ms"),
        default: LONG_MAX,
        kind: Kind::Long {
            min: 1,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        broker_key: Some("message.max.bytes"),
        default: "1048588",
        kind: Kind::Long {
            min: 0,
            max: i32::MAX as i64,
        },
    },
    TopicKey {
        name: "message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.message.timestamp.after.max.ms"),
        default: LONG_MAX,
        kind: Kind::Inert,
    },
    TopicKey {
        name: "message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.message.timestamp.before.max.ms"),
        default: LONG_MAX,
        kind: Kind::Inert,
    },
    TopicKey {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        broker_key: Some("log.message.timestamp.type"),
        default: "CreateTime",
        kind: Kind::Choice {
            options: &["CreateTime", "LogAppendTime"],
            list: false,
        },
    },
    TopicKey {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        broker_key: Some("log.cleaner.min.cleanable.ratio"),
        default: "0.5",
        kind: Kind::Double { min: 0.0, max: 1.0 },
    },
    TopicKey {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.cleaner.min.compaction.lag.ms"),
        default: "0",
        kind: Kind::Long {
            min: 0,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        broker_key: Some("min.insync.replicas"),
        default: "1",
        kind: Kind::Long { min: 1, max: 1 },
    },
    TopicKey {
        name: "preallocate",
        config_type: ConfigType::Boolean,
        broker_key: Some("log.preallocate"),
        default: "false",
        kind: Kind::Choice {
            options: &["true", "false"],
            list: false,
        },
    },
    TopicKey {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        broker_key: Some("log.retention.bytes"),
        default: "-1",
        kind: Kind::Long {
            min: -1,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "retention.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.retention.ms"),
        default: WEEK_MS,
        kind: Kind::Long {
            min: -1,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        broker_key: Some("log.segment.bytes"),
        default: "1073741824",
        // Positions in Kafka's index format are 32-bit.
        kind: Kind::Long {
            min: 14,
            max: i32::MAX as i64,
        },
    },
    TopicKey {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        broker_key: Some("log.index.size.max.bytes"),
        default: "10485760",
        kind: Kind::Inert,
    },
    TopicKey {
        name: "segment.jitter.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.roll.jitter.ms"),
        default: "0",
        kind: Kind::Inert,
    },
    TopicKey {
        name: "segment.ms",
        config_type: ConfigType::Long,
        broker_key: Some("log.roll.ms"),
        default: WEEK_MS,
        kind: Kind::Long {
            min: 1,
            max: i64::MAX,
        },
    },
    TopicKey {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        broker_key: Some("unclean.leader.election.enable"),
        default: "false",
        kind: Kind::Choice {
            options: &["true", "false"],
            list: false,
        },
    },
];

/// Broker keys that set a topic default in other units (`log.roll.hours`, ...).
static SCALED_BROKER_KEYS: &[(&str, &str, i64)] = &[
    ("log.roll.hours", "segment.ms", 3_600_000),
    ("log.roll.jitter.hours", "segment.jitter.ms", 3_600_000),
    ("log.retention.hours", "retention.ms", 3_600_000),
    ("log.retention.minutes", "retention.ms", 60_000),
];

/// What `compression.type` and the level keys ask of appended batches.
fn topic_compression<'a>(get: &impl Fn(&str) -> &'a str) -> TopicCompression {
    let level = |name: &str| get(name).trim().parse::<i32>().unwrap_or(-1);
    let codec = match get("compression.type").trim() {
        "uncompressed" => Compression::None,
        "gzip" => Compression::Gzip,
        "snappy" => Compression::Snappy,
        // lz4_flex has one level; compression.lz4.level is accepted and shown, and has no
        // effect (README).
        "lz4" => Compression::Lz4,
        "zstd" => Compression::Zstd,
        _ => return TopicCompression::Producer,
    };
    let level = match codec {
        Compression::Gzip => level("compression.gzip.level"),
        Compression::Zstd => level("compression.zstd.level"),
        _ => 0,
    };
    TopicCompression::Codec { codec, level }
}

/// A topic key's broker synonyms in Kafka's order (`ServerTopicConfigSynonyms`).
fn broker_synonyms(key: &TopicKey) -> Vec<&'static str> {
    match key.name {
        "retention.ms" => vec![
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "segment.ms" => vec!["log.roll.ms", "log.roll.hours"],
        "segment.jitter.ms" => vec!["log.roll.jitter.ms", "log.roll.jitter.hours"],
        _ => key.broker_key.into_iter().collect(),
    }
}

/// The synonym that carries Kafka's built-in default, with that default in its own unit:
/// the millisecond keys of these have no default in Kafka, their hour keys do.
fn default_synonym(key: &TopicKey) -> (&'static str, &'static str) {
    match key.name {
        "retention.ms" => ("log.retention.hours", "168"),
        "segment.ms" => ("log.roll.hours", "168"),
        "segment.jitter.ms" => ("log.roll.jitter.hours", "0"),
        _ => (key.broker_key.unwrap_or(key.name), key.default),
    }
}

/// The type Kafka declares for a broker key that sets a topic default, if `name` is one.
pub fn broker_key_type(name: &str) -> Option<ConfigType> {
    if SCALED_BROKER_KEYS.iter().any(|(k, _, _)| *k == name) {
        return Some(ConfigType::Int);
    }
    TOPIC_KEYS
        .iter()
        .find(|k| k.broker_key == Some(name))
        .map(|k| k.config_type)
}

/// Ferry's cap on records materialised to look inside one batch
/// (`ferry.max.decompressed.batch.bytes`).
const DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES: usize = 64 << 20;

/// Whether `name` is a broker key that only sets the default of a topic key Ferry accepts
/// without acting on it (`log.roll.jitter.ms`, ...): startup lists it among the keys
/// without effect.
pub fn is_inert_broker_key(name: &str) -> bool {
    let topic_key = SCALED_BROKER_KEYS
        .iter()
        .find(|(k, _, _)| *k == name)
        .and_then(|(_, topic_key, _)| lookup(topic_key))
        .or_else(|| TOPIC_KEYS.iter().find(|k| k.broker_key == Some(name)));
    topic_key.is_some_and(|k| matches!(k.kind, Kind::Inert))
}

pub fn lookup(name: &str) -> Option<&'static TopicKey> {
    TOPIC_KEYS.iter().find(|k| k.name == name)
}

fn check(key: &TopicKey, value: &str) -> Result<(), ConfigError> {
    match key.kind {
        Kind::Long { min, max } => {
            let n: i64 = parse_num(key.name, value)?;
            if n < min || n > max {
                return Err(invalid(key.name, format!("{n} is outside [{min}, {max}]")));
            }
        }
        // An empty list is valid, as in Kafka (SUBTRACT can leave `cleanup.policy` empty).
        Kind::Choice { list: true, .. } if value.trim().is_empty() => {}
        Kind::Choice { options, list } => {
            let words: Vec<&str> = if list {
                value.split(',').map(str::trim).collect()
            } else {
                vec![value.trim()]
            };
            if let Some(bad) = words.iter().find(|w| !options.contains(w)) {
                return Err(invalid(
                    key.name,
                    format!("{bad:?} is not supported; expected one of {options:?}"),
                ));
            }
        }
        Kind::Double { min, max } => {
            let x: f64 = parse_num(key.name, value)?;
            if !(min..=max).contains(&x) {
                return Err(invalid(key.name, format!("{x} is outside [{min}, {max}]")));
            }
        }
        Kind::Inert => {}
    }
    Ok(())
}

/// Broker-level defaults for every topic key.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    values: BTreeMap<&'static str, String>,
    /// Topic keys whose default was set by broker configuration rather than built in.
    /// Broker keys set in the broker's configuration, per topic key: `(broker key, value as
    /// written)`, for DescribeConfigs' synonyms.
    explicit: BTreeMap<&'static str, Vec<(String, String)>>,
    pub max_decompressed_batch_bytes: usize,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        let values = TOPIC_KEYS
            .iter()
            .map(|k| (k.name, k.default.to_string()))
            .collect();
        TopicDefaults {
            values,
            explicit: BTreeMap::new(),
            max_decompressed_batch_bytes: DEFAULT_MAX_DECOMPRESSED_BATCH_BYTES,
        }
    }
}

impl TopicDefaults {
    /// Applies a broker key if it sets a topic default; false if the key is unknown.
    pub fn apply_broker_key(&mut self, key: &str, value: &str) -> Result<bool, ConfigError> {
        if key == "ferry.max.decompressed.batch.bytes" {
            self.max_decompressed_batch_bytes = parse_num(key, value)?;
            return Ok(true);
        }
        if let Some((_, topic_key, scale)) = SCALED_BROKER_KEYS.iter().find(|(k, _, _)| *k == key) {
            let n: i64 = parse_num(key, value)?;
            let scaled = if n < 0 { -1 } else { n.saturating_mul(*scale) };
            return self
                .set(topic_key, &scaled.to_string(), key, value)
                .map(|()| true);
        }
        match TOPIC_KEYS.iter().find(|k| k.broker_key == Some(key)) {
            Some(topic_key) => self.set(topic_key.name, value, key, value).map(|()| true),
            None => Ok(false),
        }
    }

    /// Sets a topic key's broker default to `value` (in the topic key's unit) from
    /// `broker_key`, written as `written`.
    fn set(
        &mut self,
        topic_key: &str,
        value: &str,
        broker_key: &str,
        written: &str,
    ) -> Result<(), ConfigError> {
        let Some(key) = lookup(topic_key) else {
            return Err(invalid(
                broker_key,
                "not a topic config default".to_string(),
            ));
        };
        check(key, value).map_err(|e| invalid(broker_key, e.reason))?;
        self.values.insert(key.name, value.trim().to_string());
        let set = self.explicit.entry(key.name).or_default();
        set.retain(|(k, _)| k != broker_key);
        set.push((broker_key.to_string(), written.trim().to_string()));
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for key in TOPIC_KEYS {
            check(key, &self.values[key.name])?;
        }
        Ok(())
    }

    pub fn default_value(&self, topic_key: &str) -> Option<&str> {
        self.values.get(topic_key).map(String::as_str)
    }

    /// Checks a topic's overrides: known keys with acceptable values.
    pub fn validate_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        for (name, value) in overrides {
            let key = lookup(name).ok_or_else(|| invalid(name, "unknown topic config key"))?;
            check(key, value)?;
            if matches!(key.kind, Kind::Inert) && value.trim() != key.default {
                tracing::warn!(
                    key = name,
                    "topic config accepted as Kafka has it, but it has no effect in Ferry"
                );
            }
        }
        Ok(())
    }

    /// The effective value of every key for a topic with `overrides`.
    pub fn effective<'a>(
        &'a self,
        overrides: &'a BTreeMap<String, String>,
    ) -> impl Fn(&str) -> &'a str {
        move |name| {
            overrides
                .get(name)
                .map(String::as_str)
                .or_else(|| self.values.get(name).map(String::as_str))
                .unwrap_or("")
        }
    }

    /// Resolves the storage settings and flush policy for a topic.
    pub fn resolve(&self, overrides: &BTreeMap<String, String>) -> ResolvedTopicConfig {
        let get = self.effective(overrides);
        let long = |name: &str| get(name).trim().parse::<i64>().unwrap_or(i64::MAX);
        let timestamp_type = if get("message.timestamp.type") == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
        let compacted = get("cleanup.policy")
            .split(',')
            .any(|p| p.trim() == "compact");
        // Kafka rolls a compacted log's active segment within max.compaction.lag.ms too,
        // so that its records become cleanable in time.
        let segment_ms = if compacted {
            long("segment.ms").min(long("max.compaction.lag.ms"))
        } else {
            long("segment.ms")
        };
        ResolvedTopicConfig {
            log: LogConfig {
                segment_bytes: long("segment.bytes").max(14) as u64,
                segment_ms,
                index_interval_bytes: long("index.interval.bytes").max(0) as u64,
                max_message_bytes: long("max.message.bytes").max(0) as usize,
                timestamp_type,
                retention_ms: long("retention.ms"),
                retention_bytes: long("retention.bytes"),
                max_decompressed_batch_bytes: self.max_decompressed_batch_bytes,
                compacted,
                preallocate: get("preallocate").trim() == "true",
                compression: topic_compression(&get),
                delete_enabled: get("cleanup.policy")
                    .split(',')
                    .any(|p| p.trim() == "delete"),
                file_delete_delay_ms: long("file.delete.delay.ms").max(0),
                delete_retention_ms: long("delete.retention.ms").max(0),
                min_compaction_lag_ms: long("min.compaction.lag.ms").max(0),
                max_compaction_lag_ms: long("max.compaction.lag.ms").max(1),
                min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
                    .trim()
                    .parse::<f64>()
                    .unwrap_or(0.5),
            },
            flush_messages: long("flush.messages").max(1),
            flush_ms: long("flush.ms").max(0),
        }
    }
}

/// Where a config value comes from, with Kafka's DescribeConfigs source codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    StaticBroker = 4,
    Default = 5,
}

/// One config value as DescribeConfigs and CreateTopics report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub config_type: ConfigType,
    /// The values this one overrides, most specific first (Kafka's synonyms).
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

impl TopicDefaults {
    /// Every topic config key with its effective value for a topic with `overrides`, and
    /// Kafka's synonyms: the topic's override if any, then each broker key of that config
    /// set in the broker's configuration (in Kafka's synonym order: `log.retention.ms`,
    /// `.minutes`, `.hours`), then the default of the broker key that has one (for
    /// `retention.ms` that is `log.retention.hours=168`, as Kafka lists it).
    pub fn describe(&self, overrides: &BTreeMap<String, String>) -> Vec<ConfigEntry> {
        TOPIC_KEYS
            .iter()
            .map(|key| {
                let mut synonyms = Vec::new();
                if let Some(value) = overrides.get(key.name) {
                    synonyms.push((
                        key.name.to_string(),
                        value.clone(),
                        ConfigSource::DynamicTopic,
                    ));
                }
                let set = self.explicit.get(key.name);
                for broker_key in broker_synonyms(key) {
                    let written = set.and_then(|s| s.iter().find(|(k, _)| k == broker_key));
                    if let Some((name, value)) = written {
                        synonyms.push((name.clone(), value.clone(), ConfigSource::StaticBroker));
                    }
                }
                let (default_key, default_value) = default_synonym(key);
                synonyms.push((
                    default_key.to_string(),
                    default_value.to_string(),
                    ConfigSource::Default,
                ));
                let source = synonyms[0].2;
                ConfigEntry {
                    name: key.name.to_string(),
                    value: self.effective(overrides)(key.name).to_string(),
                    source,
                    config_type: key.config_type,
                    synonyms,
                }
            })
            .collect()
    }
}

/// A topic's settings as the broker uses them.
#[derive(Debug, Clone)]
pub struct ResolvedTopicConfig {
    pub log: LogConfig,
    /// `flush.messages`: 1 means every acknowledgement waits for an fsync (durable mode).
    pub flush_messages: i64,
    /// `flush.ms`: flush at least this often when there is unflushed data.
    pub flush_ms: i64,
}

impl ResolvedTopicConfig {
    /// True when acknowledgements wait for data to reach stable storage.
    pub fn is_durable(&self) -> bool {
        self.flush_messages == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_keys_set_topic_defaults_and_overrides_win() {
        let mut defaults = TopicDefaults::default();
        assert!(defaults
            .apply_broker_key("log.retention.hours", "2")
            .unwrap());
        assert!(defaults
            .apply_broker_key("log.flush.interval.messages", "1")
            .unwrap());
        assert!(!defaults.apply_broker_key("no.such.key", "1").unwrap());
        let mut overrides = BTreeMap::new();
        overrides.insert("segment.bytes".to_string(), "4096".to_string());
        let resolved = defaults.resolve(&overrides);
        assert_eq!(resolved.log.retention_ms, 7_200_000);
        assert_eq!(resolved.log.segment_bytes, 4096);
        assert!(resolved.is_durable());
    }

    #[test]
    fn overrides_are_validated() {
        let defaults = TopicDefaults::default();
        let bad = |k: &str, v: &str| {
            let map = BTreeMap::from([(k.to_string(), v.to_string())]);
            defaults.validate_overrides(&map).is_err()
        };
        assert!(bad("no.such.config", "1"));
        assert!(bad("segment.bytes", "-5"));
        assert!(!bad("compression.type", "gzip"));
        assert!(bad("compression.type", "brotli"));
        assert!(bad("compression.zstd.level", "23"));
        assert!(bad("cleanup.policy", "compact,bogus"));
        assert!(!bad("cleanup.policy", "compact,delete"));
        assert!(!bad("retention.ms", "-1"));
        assert!(
            !bad("cleanup.policy", ""),
            "an empty list, as SUBTRACT can leave"
        );
    }

    fn synonyms_of(defaults: &TopicDefaults, overrides: &[(&str, &str)], key: &str) -> Vec<String> {
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let entry = defaults
            .describe(&overrides)
            .into_iter()
            .find(|e| e.name == key)
            .unwrap();
        entry
            .synonyms
            .iter()
            .map(|(name, value, source)| format!("{name}={value}:{}", *source as i8))
            .collect()
    }

    /// Kafka lists a topic's override, the broker keys that are set, and the default of
    /// the broker key that has one (`log.retention.hours=168`, not `log.retention.ms`).
    #[test]
    fn synonyms_are_the_ones_kafka_lists() {
        let mut defaults = TopicDefaults::default();
        assert_eq!(
            synonyms_of(&defaults, &[], "retention.ms"),
            ["log.retention.hours=168:5"]
        );
        assert_eq!(
            synonyms_of(&defaults, &[("retention.ms", "1000")], "retention.ms"),
            ["retention.ms=1000:1", "log.retention.hours=168:5"]
        );
        defaults
            .apply_broker_key("log.retention.minutes", "60")
            .unwrap();
        assert_eq!(
            synonyms_of(&defaults, &[], "retention.ms"),
            ["log.retention.minutes=60:4", "log.retention.hours=168:5"]
        );
        assert_eq!(
            synonyms_of(&defaults, &[], "segment.bytes"),
            ["log.segment.bytes=1073741824:5"]
        );
        let entry = defaults
            .describe(&BTreeMap::new())
            .into_iter()
            .find(|e| e.name == "retention.ms")
            .unwrap();
        assert_eq!(
            (entry.value.as_str(), entry.source),
            ("3600000", ConfigSource::StaticBroker)
        );
    }
}
