//! Records of the `__consumer_offsets` topic in Kafka's own formats
//! (`group-coordinator/src/main/resources/common/message/*.json`), so that the topic means
//! the same thing to Ferry and to Kafka tools:
//!
//! ```text
//! key   = version i16 | struct            value = version i16 | struct   (null value = tombstone)
//! key v1  OffsetCommitKey    { group str, topic str, partition i32 }
//! value v3 OffsetCommitValue { offset i64, leader_epoch i32, metadata str, commit_timestamp i64 }
//! key v2  GroupMetadataKey   { group str }
//! value v3 GroupMetadataValue { protocol_type str, generation i32, protocol str?, leader str?,
//!                               current_state_timestamp i64,
//!                               members [{ member_id str, group_instance_id str?, client_id str,
//!                                          client_host str, rebalance_timeout i32,
//!                                          session_timeout i32, subscription bytes,
//!                                          assignment bytes }] }
//! ```
//! Strings are i16-length-prefixed UTF-8 (-1 = null), arrays and bytes i32-prefixed.
//! Offset values v1 (with an expire timestamp) and v0-v2 group values are read as well.

use std::fmt;

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordDecodeError(pub &'static str);

impl fmt::Display for RecordDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed __consumer_offsets record: {}", self.0)
    }
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

/// A member as persisted in group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// Group metadata as persisted after each rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
}

struct Writer(Vec<u8>);

impl Writer {
    fn i16(&mut self, v: i16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn str(&mut self, v: &str) {
        // Group ids, topics and member ids are far below 32 KiB; the coordinator rejects
        // longer metadata before it gets here (offset.metadata.max.bytes).
        let len = i16::try_from(v.len()).unwrap_or(i16::MAX);
        self.i16(len);
        self.0.extend_from_slice(&v.as_bytes()[..len as usize]);
    }
    fn opt_str(&mut self, v: Option<&str>) {
        match v {
            Some(v) => self.str(v),
            None => self.i16(-1),
        }
    }
    fn bytes(&mut self, v: &[u8]) {
        self.i32(i32::try_from(v.len()).unwrap_or(i32::MAX));
        self.0.extend_from_slice(v);
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordDecodeError> {
        if self.buf.len() < n {
            return Err(RecordDecodeError("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn i16(&mut self) -> Result<i16, RecordDecodeError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Result<i32, RecordDecodeError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Result<i64, RecordDecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
    fn opt_str(&mut self) -> Result<Option<String>, RecordDecodeError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| RecordDecodeError("invalid UTF-8"))
    }
    fn str(&mut self) -> Result<String, RecordDecodeError> {
        self.opt_str()?
            .ok_or(RecordDecodeError("unexpected null string"))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, RecordDecodeError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Vec::new());
        }
        Ok(self.take(len as usize)?.to_vec())
    }
}

/// Key of a committed offset.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.i16(1);
    w.str(group);
    w.str(topic);
    w.i32(partition);
    w.0
}

/// Value of a committed offset (v3).
pub fn offset_value(value: &OffsetValue) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.i16(3);
    w.i64(value.offset);
    w.i32(value.leader_epoch);
    w.str(&value.metadata);
    w.i64(value.commit_timestamp);
    w.0
}

/// Key of a group's metadata.
pub fn group_key(group: &str) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.i16(2);
    w.str(group);
    w.0
}

/// Value of a group's metadata (v3).
pub fn group_value(value: &GroupValue) -> Vec<u8> {
    let mut w = Writer(Vec::new());
    w.i16(3);
    w.str(&value.protocol_type);
    w.i32(value.generation);
    w.opt_str(value.protocol.as_deref());
    w.opt_str(value.leader.as_deref());
    w.i64(value.current_state_timestamp);
    w.i32(i32::try_from(value.members.len()).unwrap_or(i32::MAX));
    for member in &value.members {
        w.str(&member.member_id);
        w.opt_str(member.group_instance_id.as_deref());
        w.str(&member.client_id);
        w.str(&member.client_host);
        w.i32(member.rebalance_timeout_ms);
        w.i32(member.session_timeout_ms);
        w.bytes(&member.subscription);
        w.bytes(&member.assignment);
    }
    w.0
}

/// Decodes a record; `None` for key versions this coordinator does not own (KIP-848 and
/// share-group records), which are skipped.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Option<GroupRecord>, RecordDecodeError> {
    let mut k = Reader { buf: key };
    match k.i16()? {
        0 | 1 => {
            let (group, topic, partition) = (k.str()?, k.str()?, k.i32()?);
            let value = value.map(decode_offset_value).transpose()?;
            Ok(Some(GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            }))
        }
        2 => {
            let group = k.str()?;
            let value = value.map(decode_group_value).transpose()?;
            Ok(Some(GroupRecord::Group { group, value }))
        }
        _ => Ok(None),
    }
}

fn decode_offset_value(bytes: &[u8]) -> Result<OffsetValue, RecordDecodeError> {
    let mut r = Reader { buf: bytes };
    let version = r.i16()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.str()?;
    let commit_timestamp = r.i64()?;
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
    })
}

fn decode_group_value(bytes: &[u8]) -> Result<GroupValue, RecordDecodeError> {
    let mut r = Reader { buf: bytes };
    let version = r.i16()?;
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.opt_str()?;
    let leader = r.opt_str()?;
    let current_state_timestamp = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?.max(0) as usize;
    let mut members = Vec::with_capacity(count.min(r.buf.len() / 16));
    for _ in 0..count {
        let member_id = r.str()?;
        let group_instance_id = if version >= 3 { r.opt_str()? } else { None };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp,
        members,
    })
}

pub use crate::coordinator::{java_string_hash, partition_for};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta\0data".to_string(),
            commit_timestamp: 1_700_000_000_000,
        };
        let decoded = decode(&offset_key("g", "t", 7), Some(&offset_value(&value))).unwrap();
        assert_eq!(
            decoded,
            Some(GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value: Some(value)
            })
        );
        let tombstone = decode(&offset_key("g", "t", 7), None).unwrap();
        assert!(matches!(
            tombstone,
            Some(GroupRecord::Offset { value: None, .. })
        ));
    }

    #[test]
    fn group_metadata_round_trips() {
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("c-1".into()),
            current_state_timestamp: 99,
            members: vec![MemberValue {
                member_id: "c-1".into(),
                group_instance_id: Some("static-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: vec![1, 2, 3],
                assignment: vec![4, 5],
            }],
        };
        let decoded = decode(&group_key("g"), Some(&group_value(&value))).unwrap();
        assert_eq!(
            decoded,
            Some(GroupRecord::Group {
                group: "g".into(),
                value: Some(value)
            })
        );
    }

    #[test]
    fn partition_choice_matches_kafka() {
        // "test-group".hashCode() == 627841412 in Java; 627841412 % 50 == 12.
        assert_eq!(java_string_hash("test-group"), 627_841_412);
        assert_eq!(partition_for("test-group", 50), 12);
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(&[0, 1, 0, 200], None).is_err());
        assert!(decode(&group_key("g"), Some(&[0, 3, 0, 5, b'a'])).is_err());
        assert_eq!(decode(&[0, 9], None).unwrap(), None);
    }
}
