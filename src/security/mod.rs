//! Authentication: who a connection is. TLS server configuration from PEM files
//! (`tls`), SASL exchanges (`sasl`: PLAIN and SCRAM, `scram`), the SCRAM credential store
//! (`credentials`), the per-address limit on failed authentications (`failed_auth`), and
//! the principal a connection acts as. Sockets stay in `network`; this module is testable
//! without them.

pub mod credentials;
pub mod failed_auth;
pub mod oauth;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::listeners::BoundListener;

/// Kafka's principal: a type and a name, written `User:alice`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// `User:<name>`.
    pub fn user(name: impl Into<String>) -> Principal {
        Principal {
            kind: "User".to_string(),
            name: name.into(),
        }
    }

    /// `User:ANONYMOUS`: PLAINTEXT connections and TLS ones without a client certificate.
    pub fn anonymous() -> Principal {
        Principal::user("ANONYMOUS")
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Who sent a request: the client's address, the listener it came in on and the
/// principal it authenticated as.
#[derive(Debug, Clone)]
pub struct Session {
    pub peer: SocketAddr,
    pub listener: Arc<BoundListener>,
    pub principal: Arc<Principal>,
}
