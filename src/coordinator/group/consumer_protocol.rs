//! The "consumer" embedded protocol (Kafka's `ConsumerProtocolSubscription` and
//! `ConsumerProtocolAssignment`), read only where the broker or its tools must look inside:
//! OffsetDelete refuses to delete offsets of subscribed topics, and `ferry groups describe`
//! shows assignments. The coordinator otherwise treats these bytes as opaque.
//!
//! ```text
//! Subscription: version i16 | topics [str] | user_data bytes? | owned_partitions (v1+) ...
//! Assignment:   version i16 | [topic str | partitions [i32]] | user_data bytes?
//! ```
//! (versions 0-3, non-flexible: i32 array counts, i16 string lengths).

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
    /// An array count, checked against the bytes left (each element takes at least
    /// `min_element_bytes`).
    fn count(&mut self, min_element_bytes: usize) -> Option<usize> {
        let n = usize::try_from(self.i32()?).ok()?;
        (n.saturating_mul(min_element_bytes) <= self.0.len()).then_some(n)
    }
}

/// Topics a member subscribes to, from its subscription metadata.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(metadata);
    r.i16()?;
    let n = r.count(2)?;
    (0..n).map(|_| r.string()).collect()
}

/// Partitions assigned to a member: `(topic, partitions)`.
pub fn assigned_partitions(assignment: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(assignment);
    r.i16()?;
    let topics = r.count(6)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let topic = r.string()?;
        let n = r.count(4)?;
        let partitions = (0..n).map(|_| r.i32()).collect::<Option<Vec<i32>>>()?;
        out.push((topic, partitions));
    }
    Some(out)
}

/// Encodes an assignment (version 0), as consumer leaders and `ferry groups` tests write them.
pub fn encode_assignment(assignment: &[(String, Vec<i32>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(assignment.len() as i32).to_be_bytes());
    for (topic, partitions) in assignment {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
        out.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for p in partitions {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_round_trips_and_garbage_is_none() {
        let assignment = vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])];
        assert_eq!(
            assigned_partitions(&encode_assignment(&assignment)),
            Some(assignment)
        );
        assert_eq!(assigned_partitions(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn subscription_topics() {
        let mut sub = vec![0, 1, 0, 0, 0, 2, 0, 1, b'x', 0, 2, b'y', b'z'];
        sub.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(
            subscribed_topics(&sub),
            Some(vec!["x".to_string(), "yz".to_string()])
        );
        assert_eq!(subscribed_topics(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
    }
}
