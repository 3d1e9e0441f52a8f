//! KIP-430's authorized operations: the operations a client may perform on a resource, as
//! a bit field (bit n set for ACL operation code n) in Metadata, DescribeCluster and
//! DescribeGroups when the client asks for it. Without an authorizer, as Kafka's
//! `AuthHelper.authorizedOperations` does, every operation the resource type supports is
//! reported (`AclEntry.supportedOperations`); an authorizer will narrow them to the
//! principal's.

/// The field's value when the client did not ask.
pub const NOT_REQUESTED: i32 = i32::MIN;

// Kafka's `AclOperation` codes.
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

const TOPIC_OPERATIONS: [u8; 8] = [
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
];
const CLUSTER_OPERATIONS: [u8; 7] = [
    CREATE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
    ALTER,
    DESCRIBE,
];
const GROUP_OPERATIONS: [u8; 3] = [READ, DESCRIBE, DELETE];

fn field(requested: bool, operations: &[u8]) -> i32 {
    if !requested {
        return NOT_REQUESTED;
    }
    operations.iter().fold(0, |bits, op| bits | (1 << op))
}

/// A topic's authorized operations, or [`NOT_REQUESTED`].
pub fn topic(requested: bool) -> i32 {
    field(requested, &TOPIC_OPERATIONS)
}

/// The cluster's authorized operations, or [`NOT_REQUESTED`].
pub fn cluster(requested: bool) -> i32 {
    field(requested, &CLUSTER_OPERATIONS)
}

/// A group's authorized operations, or [`NOT_REQUESTED`].
pub fn group(requested: bool) -> i32 {
    field(requested, &GROUP_OPERATIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_operation_without_an_authorizer() {
        assert_eq!(topic(false), i32::MIN);
        // READ..ALTER_CONFIGS but CLUSTER_ACTION: bits 3-8, 10, 11 (Kafka's 3576).
        assert_eq!(topic(true), 0b1101_1111_1000);
        // CREATE, ALTER, DESCRIBE, CLUSTER_ACTION..IDEMPOTENT_WRITE: bits 5, 7-12.
        assert_eq!(cluster(true), 0b1_1111_1010_0000);
        assert_eq!(group(true), (1 << 3) | (1 << 6) | (1 << 8));
    }
}
