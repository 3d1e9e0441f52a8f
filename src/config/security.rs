//! Security settings Ferry cannot honour yet stop startup, naming the key: an operator who
//! asks for TLS, SASL, ACLs or a protocol map must never get an open broker that only
//! warns (Kafka fails on what it cannot configure, too). Until Ferry has its security
//! layer every listener is PLAINTEXT and there is no authorizer; this module is the one
//! place that knows which keys ask for more.

use super::{invalid, ConfigError};

/// Key prefixes that configure TLS, SASL, per-listener security or delegation tokens.
const SECURITY_PREFIXES: &[&str] = &["ssl.", "sasl.", "listener.name.", "delegation.token."];

/// Single keys that ask for authentication or authorization.
const SECURITY_KEYS: &[&str] = &[
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
    "principal.builder.class",
    "connections.max.reauth.ms",
    "security.providers",
];

const WHY: &str = "Ferry serves PLAINTEXT only for now (no TLS, SASL or authorizer); remove the \
                   key, or run Kafka for this until Ferry has security";

/// An error when `key` asks for security Ferry does not provide. Empty values (Kafka's
/// defaults for these keys) ask for nothing and pass.
pub fn check_key(key: &str, value: &str) -> Result<(), ConfigError> {
    let value = value.trim();
    let asks = SECURITY_KEYS.contains(&key)
        || SECURITY_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix));
    if asks && !value.is_empty() {
        return Err(invalid(key, WHY.to_string()));
    }
    match key {
        "security.inter.broker.protocol" if !value.eq_ignore_ascii_case("PLAINTEXT") => {
            Err(invalid(key, format!("{value} asks for security; {WHY}")))
        }
        "listener.security.protocol.map" => check_protocol_map(key, value),
        _ => Ok(()),
    }
}

/// Every `NAME:PROTOCOL` entry must map to PLAINTEXT.
fn check_protocol_map(key: &str, value: &str) -> Result<(), ConfigError> {
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let protocol = entry.split_once(':').map_or("", |(_, p)| p.trim());
        if !protocol.eq_ignore_ascii_case("PLAINTEXT") {
            return Err(invalid(key, format!("{entry:?} asks for security; {WHY}")));
        }
    }
    Ok(())
}

/// Checks every listener of a `listeners` / `advertised.listeners` value: one, PLAINTEXT
/// (named or not). A second listener would be dropped without a word, so it is refused.
pub fn check_listeners(key: &str, value: &str) -> Result<(), ConfigError> {
    let listeners: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if listeners.len() > 1 {
        return Err(invalid(
            key,
            format!(
                "Ferry serves one listener, {} are listed ({value}); several listeners come \
                 with its security work",
                listeners.len()
            ),
        ));
    }
    for listener in listeners {
        if let Some((protocol, _)) = listener.split_once("://") {
            if !protocol.eq_ignore_ascii_case("PLAINTEXT") {
                return Err(invalid(
                    key,
                    format!("listener {listener} asks for {protocol}; {WHY}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_settings_stop_startup_naming_the_key() {
        for (key, value) in [
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
            ("super.users", "User:admin"),
            ("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
            ("ssl.keystore.location", "/etc/kafka/broker.pem"),
            ("listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config", "x"),
            ("security.inter.broker.protocol", "SASL_SSL"),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL",
            ),
        ] {
            let err = check_key(key, value).unwrap_err();
            assert_eq!(err.key, key);
        }
        for (key, value) in [
            ("authorizer.class.name", ""),
            ("security.inter.broker.protocol", "PLAINTEXT"),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
            ),
            ("log.dirs", "/data"),
        ] {
            assert!(check_key(key, value).is_ok(), "{key}={value}");
        }
    }

    #[test]
    fn only_one_plaintext_listener() {
        assert!(check_listeners("listeners", "PLAINTEXT://127.0.0.1:9092").is_ok());
        assert!(check_listeners("listeners", "127.0.0.1:9092").is_ok());
        for value in [
            "PLAINTEXT://127.0.0.1:9092,SASL_SSL://127.0.0.1:9094",
            "SSL://:9093",
            "PLAINTEXT://a:1,PLAINTEXT://b:2",
        ] {
            assert_eq!(
                check_listeners("listeners", value).unwrap_err().key,
                "listeners"
            );
        }
    }
}
