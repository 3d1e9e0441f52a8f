//! The client side of `ferry mirror`: the admin requests sent to a Ferry broker, and
//! `verify`, which reads a mirror topic and its source over the wire and compares them
//! batch by batch (so it works while mirroring continues and needs only read rights).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use crate::client::{ClientError, ClientOptions, Cluster};
use crate::mirror::source;
use crate::storage::batch::BatchHeader;

/// Sends one admin request to the Ferry at `bootstrap`; an answer with `error` becomes
/// `ClientError::Refused` carrying the broker's message.
pub async fn call(
    bootstrap: &str,
    options: &ClientOptions,
    request: Value,
) -> Result<Value, ClientError> {
    let mut connection =
        crate::client::Connection::connect_with(bootstrap, "ferry-mirror-cli", options).await?;
    let answer = connection.call_ferry_admin(&request).await?;
    if let Some(kind) = answer.get("error").and_then(Value::as_str) {
        let message = answer
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default();
        return Err(ClientError::Refused(format!("{message} ({kind})")));
    }
    Ok(answer)
}

/// The source address of `link`, from the Ferry's status.
pub async fn link_source(
    bootstrap: &str,
    options: &ClientOptions,
    link: &str,
) -> Result<(String, Vec<String>), ClientError> {
    let status = call(bootstrap, options, json!({ "op": "status", "link": link })).await?;
    let entry = status["links"]
        .as_array()
        .and_then(|links| links.first())
        .ok_or_else(|| ClientError::NotFound(format!("no link named {link}")))?;
    let source = entry["source"].as_str().unwrap_or_default().to_string();
    let topics = entry["topics"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["topic"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok((source, topics))
}

/// One partition compared.
#[derive(Debug, Clone)]
pub struct PartitionComparison {
    pub topic: String,
    pub partition: i32,
    /// The common offset range `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub batches: u64,
    /// Records in the compared data batches (control records not counted).
    pub records: u64,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    /// A digest of every compared batch's (base offset, last offset, CRC, length).
    pub digest: u32,
    /// Where the two differ first, and how.
    pub divergence: Option<String>,
}

/// Bytes per Fetch while verifying.
const VERIFY_FETCH_BYTES: i32 = 4 << 20;

/// Compares every partition of `topic` between the Ferry and the source.
pub async fn verify(
    ferry: &mut Cluster,
    source_cluster: &mut Cluster,
    topic: &str,
) -> Result<Vec<PartitionComparison>, ClientError> {
    let described = source::topics(ferry, &[topic.to_string()]).await?;
    let ferry_topic = described
        .first()
        .filter(|t| t.error_code == 0)
        .ok_or_else(|| ClientError::NotFound(format!("topic {topic} does not exist on Ferry")))?
        .clone();
    let source_described = source::topics(source_cluster, &[topic.to_string()]).await?;
    let source_topic = source_described
        .first()
        .filter(|t| t.error_code == 0)
        .ok_or_else(|| {
            ClientError::NotFound(format!("topic {topic} does not exist on the source"))
        })?
        .clone();
    let partitions: BTreeSet<(String, i32)> = source_topic
        .leaders
        .keys()
        .map(|p| (topic.to_string(), *p))
        .collect();
    let ferry_starts = source::offsets(ferry, &partitions, -2).await?;
    let ferry_ends = source::offsets(ferry, &partitions, -1).await?;
    let source_starts = source::offsets(source_cluster, &partitions, -2).await?;
    let source_ends = source::offsets(source_cluster, &partitions, -1).await?;
    let mut out = Vec::new();
    for key in &partitions {
        let index = key.1;
        let Some(&ferry_leader) = ferry_topic.leaders.get(&index) else {
            out.push(missing(
                topic,
                index,
                "the partition does not exist on Ferry",
            ));
            continue;
        };
        let source_leader = source_topic.leaders.get(&index).copied().unwrap_or(-1);
        let get = |m: &BTreeMap<(String, i32), i64>| m.get(key).copied().unwrap_or(0);
        let from = get(&ferry_starts).max(get(&source_starts));
        let to = get(&ferry_ends).min(get(&source_ends));
        let sides = Sides {
            ferry_leader,
            source_leader,
        };
        out.push(compare_partition(ferry, source_cluster, topic, index, from, to, sides).await?);
    }
    Ok(out)
}

fn missing(topic: &str, partition: i32, why: &str) -> PartitionComparison {
    PartitionComparison {
        topic: topic.to_string(),
        partition,
        from: 0,
        to: 0,
        batches: 0,
        records: 0,
        first_offset: None,
        last_offset: None,
        digest: 0,
        divergence: Some(why.to_string()),
    }
}

struct Sides {
    ferry_leader: i32,
    source_leader: i32,
}

/// The whole batches a fetch at `at` returned (at most `VERIFY_FETCH_BYTES`).
async fn batches_at(
    cluster: &mut Cluster,
    leader: i32,
    topic: &str,
    partition: i32,
    at: i64,
) -> Result<Vec<BatchHeader>, ClientError> {
    let wanted = [(topic.to_string(), partition, at)];
    let fetched = source::fetch(
        cluster,
        leader,
        &wanted,
        source::FetchLimits {
            max_wait_ms: 0,
            min_bytes: 1,
            max_bytes: VERIFY_FETCH_BYTES,
            partition_max_bytes: VERIFY_FETCH_BYTES,
            isolation_level: 0,
        },
    )
    .await?;
    let Some(answer) = fetched.into_iter().next() else {
        return Ok(Vec::new());
    };
    crate::client::check(answer.error_code, || {
        format!("Fetch {topic}-{partition} at {at}")
    })?;
    let whole = source::whole_batches(&answer.records);
    let mut headers = Vec::new();
    let mut position = 0;
    while position < whole {
        let Ok(header) = BatchHeader::parse_prefix(&answer.records[position..whole]) else {
            break;
        };
        position += header.total_bytes();
        headers.push(header);
    }
    Ok(headers)
}

async fn compare_partition(
    ferry: &mut Cluster,
    source_cluster: &mut Cluster,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    sides: Sides,
) -> Result<PartitionComparison, ClientError> {
    let mut result = PartitionComparison {
        topic: topic.to_string(),
        partition,
        from,
        to,
        batches: 0,
        records: 0,
        first_offset: None,
        last_offset: None,
        digest: 0,
        divergence: None,
    };
    let mut at = from;
    while at < to {
        let mine = batches_at(ferry, sides.ferry_leader, topic, partition, at).await?;
        let theirs = batches_at(source_cluster, sides.source_leader, topic, partition, at).await?;
        let mut progressed = false;
        for pair in mine.iter().zip(theirs.iter()) {
            let (m, s) = pair;
            if m.last_offset() < from {
                continue;
            }
            if m.base_offset >= to && s.base_offset >= to {
                at = to;
                break;
            }
            let same = m.base_offset == s.base_offset
                && m.last_offset() == s.last_offset()
                && m.crc == s.crc
                && m.batch_length == s.batch_length;
            if !same {
                result.divergence = Some(format!(
                    "at offset {}: Ferry has batch [{}, {}] crc {:08x}, the source [{}, {}] crc {:08x}",
                    m.base_offset.min(s.base_offset),
                    m.base_offset,
                    m.last_offset(),
                    m.crc,
                    s.base_offset,
                    s.last_offset(),
                    s.crc
                ));
                return Ok(result);
            }
            result.batches += 1;
            if !m.is_control() {
                result.records += u64::try_from(m.records_count).unwrap_or(0);
            }
            result.first_offset.get_or_insert(m.base_offset.max(from));
            result.last_offset = Some(m.last_offset().min(to - 1));
            let mut tuple = Vec::with_capacity(24);
            tuple.extend_from_slice(&m.base_offset.to_be_bytes());
            tuple.extend_from_slice(&m.last_offset().to_be_bytes());
            tuple.extend_from_slice(&m.crc.to_be_bytes());
            tuple.extend_from_slice(&m.batch_length.to_be_bytes());
            result.digest = crc32c::crc32c_append(result.digest, &tuple);
            at = m.next_offset();
            progressed = true;
        }
        if mine.len() != theirs.len() && at < to {
            let (shorter, side) = if mine.len() < theirs.len() {
                (mine.len(), "Ferry")
            } else {
                (theirs.len(), "the source")
            };
            if shorter == 0 {
                result.divergence = Some(format!(
                    "at offset {at}: {side} returned no batch where the other has one"
                ));
                return Ok(result);
            }
        }
        if !progressed {
            if at < to {
                result.divergence = Some(format!(
                    "at offset {at}: no batch could be read on one side"
                ));
            }
            break;
        }
    }
    Ok(result)
}
