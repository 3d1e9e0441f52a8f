//! DescribeLogDirs (key 35), v1-4: the data directory (Ferry has one `log.dirs`), each
//! partition's size on disk (the bytes of its segments), and (v4) the file system's total
//! and usable bytes. A null topic list asks for every partition; partitions that do not
//! exist are left out, as Kafka does.

use std::path::Path;
use std::sync::Arc;

use proto_kafka::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use proto_kafka::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{str_bytes, topic_name};
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::Broker;

pub fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    request: DescribeLogDirsRequest,
) -> Handled<DescribeLogDirsResponse> {
    let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect()
    });
    let mut topics = Vec::new();
    for topic in broker.topics.list() {
        let asked = match &wanted {
            None => None,
            Some(list) => match list.iter().find(|(name, _)| *name == topic.name) {
                Some((_, partitions)) => Some(partitions),
                None => continue,
            },
        };
        let partitions: Vec<DescribeLogDirsPartition> = topic
            .partitions
            .iter()
            .filter(|p| asked.is_none_or(|ps| ps.contains(&p.index())))
            .map(|p| {
                DescribeLogDirsPartition::default()
                    .with_partition_index(p.index())
                    .with_partition_size(i64::try_from(p.size_bytes()).unwrap_or(i64::MAX))
                    .with_offset_lag(0)
                    .with_is_future_key(false)
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                DescribeLogDirsTopic::default()
                    .with_name(topic_name(&topic.name))
                    .with_partitions(partitions),
            );
        }
    }
    let dir = &broker.config.data_dir;
    let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&absolute.display().to_string()))
        .with_topics(topics);
    if ctx.api_version >= 4 {
        let (total, usable) = file_system_bytes(&absolute).unwrap_or((-1, -1));
        result.total_bytes = total;
        result.usable_bytes = usable;
    }
    Handled::Now(DescribeLogDirsResponse::default().with_results(vec![result]))
}

/// Total and usable bytes of the file system holding `dir` (`statvfs`).
fn file_system_bytes(dir: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stats` a writable statvfs for the call.
    let rc = unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled the struct.
    let stats = unsafe { stats.assume_init() };
    let block = stats.f_frsize;
    let total = i64::try_from(stats.f_blocks.saturating_mul(block)).ok()?;
    let usable = i64::try_from(stats.f_bavail.saturating_mul(block)).ok()?;
    Some((total, usable))
}
