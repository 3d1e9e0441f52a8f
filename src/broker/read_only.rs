//! Topics that clients may read but not write. A mirror topic is one until it is promoted
//! (`mirror/`): Produce answers INVALID_TOPIC_EXCEPTION, Kafka's error for a topic that
//! takes no client writes (its internal topics), with the reason the owner gave, and the
//! log cleaner leaves it alone so its batches stay byte-identical to the source's.
//!
//! The owner sets the mark before the topic exists and clears it only after it recorded
//! the promotion durably, so no restart opens a window in which a mirror takes writes.

use std::collections::HashMap;
use std::sync::RwLock;

/// Topic name -> why it is read-only (shown to producers).
#[derive(Debug, Default)]
pub struct ReadOnlyTopics {
    reasons: RwLock<HashMap<String, String>>,
}

impl ReadOnlyTopics {
    /// Marks `topic` read-only; `reason` is the message producers get.
    pub fn set(&self, topic: &str, reason: String) {
        crate::sync::write(&self.reasons, "read-only topics").insert(topic.to_string(), reason);
    }

    /// Lets clients write `topic` again.
    pub fn clear(&self, topic: &str) {
        crate::sync::write(&self.reasons, "read-only topics").remove(topic);
    }

    /// Why `topic` takes no writes, if it is read-only.
    pub fn reason(&self, topic: &str) -> Option<String> {
        crate::sync::read(&self.reasons, "read-only topics")
            .get(topic)
            .cloned()
    }

    pub fn contains(&self, topic: &str) -> bool {
        crate::sync::read(&self.reasons, "read-only topics").contains_key(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_and_clears() {
        let topics = ReadOnlyTopics::default();
        assert!(topics.reason("orders").is_none());
        topics.set("orders", "mirrored by link east".into());
        assert!(topics.contains("orders"));
        assert_eq!(topics.reason("orders").unwrap(), "mirrored by link east");
        topics.clear("orders");
        assert!(!topics.contains("orders"));
    }
}
