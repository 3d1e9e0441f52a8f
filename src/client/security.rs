//! How Ferry's own client connects: Kafka's client security properties
//! (`security.protocol`, `ssl.*`, `sasl.mechanism`, `sasl.username`/`sasl.password` or
//! `sasl.jaas.config`), read from a `--command-config` file or a mirror link's source
//! properties, turned into TLS (rustls) and a SASL login (PLAIN, SCRAM-SHA-256/512).
//! One implementation for every tool and for the mirror.

use std::collections::BTreeMap;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::listeners::{SaslMechanism, SecurityProtocol};

/// A SASL login.
#[derive(Debug, Clone)]
pub struct SaslLogin {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

/// The security of the client's connections.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// TLS, which always checks that the broker's certificate names the host connected
    /// to (Kafka's default `ssl.endpoint.identification.algorithm=https`).
    pub tls: Option<Arc<ClientConfig>>,
    pub sasl: Option<SaslLogin>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("tls", &self.tls.is_some())
            .field(
                "sasl",
                &self.sasl.as_ref().map(|s| (s.mechanism, &s.username)),
            )
            .finish()
    }
}

/// Keys this module reads; any other `ssl.`/`sasl.` key is refused so that a setting
/// is never silently ignored.
const KNOWN_KEYS: &[&str] = &[
    "security.protocol",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.certificates",
    "ssl.ca.location",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.endpoint.identification.algorithm",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "sasl.jaas.config",
];

/// The value of `key=` in a JAAS line: `... username="alice" password="s3cret";`.
fn jaas_option(jaas: &str, key: &str) -> Option<String> {
    let start = jaas.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &jaas[start..];
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

fn read(path: &str, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {path}: {e}"))
}

impl ClientSecurity {
    /// Reads the security properties. `Err` names the key that cannot be used.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<ClientSecurity, String> {
        for key in props.keys() {
            let security_family = key.starts_with("ssl.") || key.starts_with("sasl.");
            if security_family && !KNOWN_KEYS.contains(&key.as_str()) {
                return Err(format!("{key}: not supported by Ferry's client"));
            }
        }
        let get = Props(props);
        let get = |key: &str| get.get(key);
        let protocol = match get("security.protocol") {
            None => SecurityProtocol::Plaintext,
            Some(p) => match p.to_ascii_uppercase().as_str() {
                "PLAINTEXT" => SecurityProtocol::Plaintext,
                "SSL" => SecurityProtocol::Ssl,
                "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
                "SASL_SSL" => SecurityProtocol::SaslSsl,
                other => return Err(format!("security.protocol: unknown protocol {other}")),
            },
        };
        let tls = if protocol.uses_tls() {
            Some(Arc::new(tls_config(&get)?))
        } else {
            None
        };
        if props
            .get("ssl.endpoint.identification.algorithm")
            .is_some_and(|v| !v.trim().eq_ignore_ascii_case("https"))
        {
            return Err(
                "ssl.endpoint.identification.algorithm: Ferry's client always checks that the \
                 broker's certificate names the host it connects to (https); give the broker a \
                 certificate with that name or address"
                    .into(),
            );
        }
        let sasl = if protocol.uses_sasl() {
            Some(sasl_login(&get)?)
        } else {
            None
        };
        Ok(ClientSecurity { tls, sasl })
    }

    /// Reads a Kafka client properties file (`--command-config`).
    pub fn from_file(path: &std::path::Path) -> Result<ClientSecurity, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--command-config: cannot read {}: {e}", path.display()))?;
        ClientSecurity::from_properties(&crate::properties::parse(&text))
    }

    /// The name TLS checks the certificate against.
    pub fn server_name(&self, address: &str) -> Result<ServerName<'static>, String> {
        let host = address
            .rsplit_once(':')
            .map_or(address, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        ServerName::try_from(host.to_string()).map_err(|e| format!("{host}: {e}"))
    }
}

/// Non-empty property values.
struct Props<'a>(&'a BTreeMap<String, String>);

impl<'a> Props<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

fn sasl_login<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> Result<SaslLogin, String> {
    let name = get("sasl.mechanism")
        .or_else(|| get("sasl.mechanisms"))
        .unwrap_or("GSSAPI");
    let mechanism = SaslMechanism::parse(name).ok_or_else(|| {
        format!("sasl.mechanism: {name} is not supported (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
    })?;
    let jaas = get("sasl.jaas.config");
    let username = get("sasl.username")
        .map(str::to_string)
        .or_else(|| jaas.and_then(|j| jaas_option(j, "username")))
        .ok_or("sasl.username (or sasl.jaas.config with username=\"...\") is required")?;
    let password = get("sasl.password")
        .map(str::to_string)
        .or_else(|| jaas.and_then(|j| jaas_option(j, "password")))
        .ok_or("sasl.password (or sasl.jaas.config with password=\"...\") is required")?;
    Ok(SaslLogin {
        mechanism,
        username,
        password,
    })
}

fn tls_config<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> Result<ClientConfig, String> {
    for key in ["ssl.truststore.type", "ssl.keystore.type"] {
        if let Some(kind) = get(key) {
            if !kind.eq_ignore_ascii_case("PEM") {
                return Err(format!("{key}: only PEM stores are supported"));
            }
        }
    }
    let ca = match (
        get("ssl.truststore.location").or_else(|| get("ssl.ca.location")),
        get("ssl.truststore.certificates"),
    ) {
        (Some(path), _) => read(path, "ssl.truststore.location")?,
        (None, Some(pem)) => pem.as_bytes().to_vec(),
        (None, None) => {
            return Err(
                "ssl.truststore.location: Ferry's client needs the CA certificates (PEM) to \
                 trust"
                    .into(),
            )
        }
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&ca) {
        let cert = cert.map_err(|e| format!("ssl.truststore.location: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("ssl.truststore.location: {e}"))?;
    }
    #[allow(deprecated)] // ring: see security::tls
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let identity = match (
        get("ssl.keystore.location"),
        get("ssl.certificate.location"),
        get("ssl.key.location"),
        get("ssl.keystore.certificate.chain"),
        get("ssl.keystore.key"),
    ) {
        (Some(path), ..) => Some(read(path, "ssl.keystore.location")?),
        (None, Some(cert), Some(key), ..) => {
            let mut pem = read(cert, "ssl.certificate.location")?;
            pem.push(b'\n');
            pem.extend(read(key, "ssl.key.location")?);
            Some(pem)
        }
        (None, None, None, Some(chain), Some(key)) => Some(format!("{chain}\n{key}").into_bytes()),
        (None, None, None, None, None) => None,
        _ => return Err("ssl.certificate.location and ssl.key.location go together".into()),
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(pem) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("ssl.keystore.location: {e}"))?;
            let key = PrivateKeyDer::from_pem_slice(&pem)
                .map_err(|e| format!("ssl.keystore.location: no private key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("ssl.keystore.location: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sasl_logins_come_from_keys_or_jaas() {
        let security = ClientSecurity::from_properties(&props(&[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"a b\";",
            ),
        ]))
        .unwrap();
        let login = security.sasl.unwrap();
        assert_eq!(login.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("alice", "a b")
        );
        assert!(security.tls.is_none());
        for bad in [
            props(&[("security.protocol", "SASL_PLAINTEXT")]),
            props(&[("security.protocol", "SSL")]),
            props(&[("security.protocol", "KERBEROS")]),
            props(&[("sasl.kerberos.service.name", "kafka")]),
        ] {
            assert!(ClientSecurity::from_properties(&bad).is_err(), "{bad:?}");
        }
        assert!(ClientSecurity::from_properties(&props(&[]))
            .unwrap()
            .sasl
            .is_none());
    }
}
