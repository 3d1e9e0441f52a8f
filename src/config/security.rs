//! Security settings Ferry cannot honour yet stop startup, naming the key: an operator who
//! asks for an authorizer or a custom principal builder must never get an open broker
//! that only warns (Kafka fails on what it cannot configure, too). Listener, TLS and SASL
//! keys belong to `listeners`, which refuses the ones it cannot use.

use super::{invalid, ConfigError};

/// Key prefixes that configure features Ferry lacks (delegation tokens).
const UNSUPPORTED_PREFIXES: &[&str] = &["delegation.token."];

/// Single keys that ask for authorization or Java plug-ins.
const UNSUPPORTED_KEYS: &[&str] = &[
    "authorizer.class.name",
    "super.users",
    "allow.everyone.if.no.acl.found",
    "principal.builder.class",
    "security.providers",
];

const WHY: &str = "Ferry has no authorizer yet (TLS and SASL authentication are served; ACLs \
                   are not); remove the key, or run Kafka for this until Ferry has ACLs";

/// An error when `key` asks for security Ferry does not provide. Empty values (Kafka's
/// defaults for these keys) ask for nothing and pass.
pub fn check_key(key: &str, value: &str) -> Result<(), ConfigError> {
    let asks = UNSUPPORTED_KEYS.contains(&key)
        || UNSUPPORTED_PREFIXES
            .iter()
            .any(|prefix| key.starts_with(prefix));
    if asks && !value.trim().is_empty() {
        return Err(invalid(key, WHY.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_settings_stop_startup_naming_the_key() {
        for (key, value) in [
            (
                "authorizer.class.name",
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            ),
            ("super.users", "User:admin"),
            ("delegation.token.secret.key", "x"),
        ] {
            let err = check_key(key, value).unwrap_err();
            assert_eq!(err.key, key);
        }
        for (key, value) in [("authorizer.class.name", ""), ("log.dirs", "/data")] {
            assert!(check_key(key, value).is_ok(), "{key}={value}");
        }
    }
}
