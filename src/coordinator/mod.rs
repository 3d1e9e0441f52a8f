//! Coordinators: the group coordinator (consumer groups and committed offsets) and, later,
//! the transaction coordinator. Both keep their state in Ferry's own internal topics and
//! are driven without sockets: requests in, answers (or parked answers) out.

pub mod group;
