//! The Fetch response (v4-v12), encoded by hand so that each partition's records can be a
//! region of a segment file sent with `sendfile`, instead of bytes copied into the response.
//! Everything but the records follows Kafka's `FetchResponse.json`; a unit test checks the
//! bytes against the generated codec.

use bytes::{BufMut, Bytes, BytesMut};

use super::frame::{Chunk, FileRegion, OutFrame};

/// First flexible version (compact strings, arrays and bytes; tagged fields).
const FLEXIBLE_FROM: i16 = 12;

/// A partition's records: bytes in memory or a file region.
#[derive(Debug, Clone)]
pub enum RecordsOut {
    Bytes(Bytes),
    File(FileRegion),
}

impl RecordsOut {
    pub fn len(&self) -> usize {
        match self {
            RecordsOut::Bytes(b) => b.len(),
            RecordsOut::File(f) => f.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, read from the file if need be (for readers inside the broker).
    pub fn load(&self) -> std::io::Result<Bytes> {
        match self {
            RecordsOut::Bytes(bytes) => Ok(bytes.clone()),
            RecordsOut::File(region) => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0u8; region.len];
                region.file.read_exact_at(&mut buf, region.position)?;
                Ok(Bytes::from(buf))
            }
        }
    }
}

/// One partition of a Fetch response.
#[derive(Debug, Clone)]
pub struct PartitionOut {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// `(producer_id, first_offset)`; `None` is encoded as a null array.
    pub aborted_transactions: Option<Vec<(i64, i64)>>,
    pub preferred_read_replica: i32,
    pub records: RecordsOut,
}

#[derive(Debug, Clone)]
pub struct TopicOut {
    pub name: String,
    pub partitions: Vec<PartitionOut>,
}

#[derive(Debug, Clone, Default)]
pub struct FetchResponseOut {
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
    pub topics: Vec<TopicOut>,
}

struct Writer {
    version: i16,
    buf: BytesMut,
    chunks: Vec<Chunk>,
}

impl Writer {
    fn flexible(&self) -> bool {
        self.version >= FLEXIBLE_FROM
    }

    fn uvarint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.buf.put_u8(value as u8);
    }

    /// An array length (compact: length + 1; `None` = null).
    fn array_len(&mut self, len: Option<usize>) {
        match (len, self.flexible()) {
            (Some(n), true) => self.uvarint(n as u64 + 1),
            (None, true) => self.uvarint(0),
            (Some(n), false) => self.buf.put_i32(i32::try_from(n).unwrap_or(i32::MAX)),
            (None, false) => self.buf.put_i32(-1),
        }
    }

    fn string(&mut self, text: &str) {
        if self.flexible() {
            self.uvarint(text.len() as u64 + 1);
        } else {
            self.buf
                .put_i16(i16::try_from(text.len()).unwrap_or(i16::MAX));
        }
        self.buf.put_slice(text.as_bytes());
    }

    fn no_tagged_fields(&mut self) {
        if self.flexible() {
            self.uvarint(0);
        }
    }

    fn records(&mut self, records: &RecordsOut) {
        let len = records.len();
        if self.flexible() {
            self.uvarint(len as u64 + 1);
        } else {
            self.buf.put_i32(i32::try_from(len).unwrap_or(i32::MAX));
        }
        if len == 0 {
            return;
        }
        let head = self.buf.split().freeze();
        self.chunks.push(Chunk::Bytes(head));
        self.chunks.push(match records {
            RecordsOut::Bytes(bytes) => Chunk::Bytes(bytes.clone()),
            RecordsOut::File(region) => Chunk::File(region.clone()),
        });
    }

    fn partition(&mut self, p: &PartitionOut) {
        self.buf.put_i32(p.partition_index);
        self.buf.put_i16(p.error_code);
        self.buf.put_i64(p.high_watermark);
        self.buf.put_i64(p.last_stable_offset);
        if self.version >= 5 {
            self.buf.put_i64(p.log_start_offset);
        }
        self.array_len(p.aborted_transactions.as_ref().map(Vec::len));
        for (producer_id, first_offset) in p.aborted_transactions.iter().flatten() {
            self.buf.put_i64(*producer_id);
            self.buf.put_i64(*first_offset);
            self.no_tagged_fields();
        }
        if self.version >= 11 {
            self.buf.put_i32(p.preferred_read_replica);
        }
        self.records(&p.records);
        self.no_tagged_fields();
    }
}

/// Encodes a Fetch response frame (size prefix, response header, body).
pub fn encode(response: &FetchResponseOut, version: i16, correlation_id: i32) -> OutFrame {
    debug_assert!((4..=12).contains(&version), "hand-written for Fetch v4-v12");
    let mut w = Writer {
        version,
        buf: BytesMut::with_capacity(256),
        chunks: Vec::new(),
    };
    w.buf.put_i32(correlation_id);
    w.no_tagged_fields(); // response header v1 from the first flexible version
    w.buf.put_i32(response.throttle_time_ms);
    if version >= 7 {
        w.buf.put_i16(response.error_code);
        w.buf.put_i32(response.session_id);
    }
    w.array_len(Some(response.topics.len()));
    for topic in &response.topics {
        w.string(&topic.name);
        w.array_len(Some(topic.partitions.len()));
        for partition in &topic.partitions {
            w.partition(partition);
        }
        w.no_tagged_fields();
    }
    w.no_tagged_fields();
    let tail = w.buf.split().freeze();
    w.chunks.push(Chunk::Bytes(tail));
    let size: usize = w.chunks.iter().map(Chunk::len).sum();
    let mut prefix = BytesMut::with_capacity(4);
    prefix.put_i32(i32::try_from(size).unwrap_or(i32::MAX));
    let mut chunks = Vec::with_capacity(w.chunks.len() + 1);
    chunks.push(Chunk::Bytes(prefix.freeze()));
    chunks.extend(w.chunks.into_iter().filter(|c| !c.is_empty()));
    OutFrame { chunks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_response;
    use proto_kafka::messages::fetch_response::{
        AbortedTransaction, FetchableTopicResponse, PartitionData,
    };
    use proto_kafka::messages::{ApiKey, BrokerId, FetchResponse, ProducerId, TopicName};
    use proto_kafka::protocol::StrBytes;

    fn sample(records: &[u8], aborted: Option<Vec<(i64, i64)>>) -> FetchResponseOut {
        FetchResponseOut {
            throttle_time_ms: 0,
            error_code: 0,
            session_id: 0,
            topics: vec![
                TopicOut {
                    name: "orders".into(),
                    partitions: vec![
                        PartitionOut {
                            partition_index: 0,
                            error_code: 0,
                            high_watermark: 42,
                            last_stable_offset: 40,
                            log_start_offset: 3,
                            aborted_transactions: aborted,
                            preferred_read_replica: -1,
                            records: RecordsOut::Bytes(Bytes::copy_from_slice(records)),
                        },
                        PartitionOut {
                            partition_index: 1,
                            error_code: 1,
                            high_watermark: -1,
                            last_stable_offset: -1,
                            log_start_offset: -1,
                            aborted_transactions: None,
                            preferred_read_replica: -1,
                            records: RecordsOut::Bytes(Bytes::new()),
                        },
                    ],
                },
                TopicOut {
                    name: "empty".into(),
                    partitions: Vec::new(),
                },
            ],
        }
    }

    /// The same response through the generated codec.
    fn reference(out: &FetchResponseOut, version: i16) -> Vec<u8> {
        let topics = out
            .topics
            .iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut data = PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(p.error_code)
                            .with_high_watermark(p.high_watermark)
                            .with_last_stable_offset(p.last_stable_offset)
                            .with_aborted_transactions(p.aborted_transactions.as_ref().map(|a| {
                                a.iter()
                                    .map(|(pid, first)| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(*pid))
                                            .with_first_offset(*first)
                                    })
                                    .collect()
                            }))
                            .with_records(Some(match &p.records {
                                RecordsOut::Bytes(b) => b.clone(),
                                RecordsOut::File(_) => unreachable!("bytes only in tests"),
                            }));
                        if version >= 5 {
                            data.log_start_offset = p.log_start_offset;
                        }
                        if version >= 11 {
                            data.preferred_read_replica = BrokerId(p.preferred_read_replica);
                        }
                        data
                    })
                    .collect();
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(t.name.clone())))
                    .with_partitions(partitions)
            })
            .collect();
        let response = FetchResponse::default().with_responses(topics);
        encode_response(ApiKey::Fetch, version, 9, &response)
            .unwrap()
            .to_vec()
    }

    #[test]
    fn matches_the_generated_codec_in_every_version() {
        for version in 4..=12 {
            for aborted in [None, Some(vec![]), Some(vec![(7, 100), (8, 120)])] {
                let out = sample(b"some record batch bytes", aborted);
                let ours = encode(&out, version, 9).to_vec().unwrap();
                assert_eq!(ours, reference(&out, version), "v{version}");
            }
        }
    }

    #[test]
    fn file_regions_are_chunks_of_their_own() {
        use std::io::Write;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"0123456789").unwrap();
        let mut out = sample(b"", None);
        out.topics[0].partitions[0].records = RecordsOut::File(FileRegion {
            file: std::sync::Arc::new(file),
            position: 2,
            len: 5,
        });
        let frame = encode(&out, 12, 1);
        assert!(frame
            .chunks
            .iter()
            .any(|c| matches!(c, Chunk::File(r) if r.len == 5)));
        let bytes = frame.to_vec().unwrap();
        assert!(bytes.windows(5).any(|w| w == b"23456"));
        assert_eq!(
            i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            bytes.len() - 4
        );
    }
}
