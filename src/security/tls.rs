//! TLS for a listener, with rustls: the server configuration built from Kafka's PEM keys
//! (`config::listeners::TlsSettings`), re-built when its files change (`TlsReloader`;
//! new connections get the new certificate, open ones keep their session, as in Kafka),
//! and the principal of a client certificate (its subject as an RFC 2253 name, mapped by
//! `ssl.principal.mapping.rules`).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::Principal;
use crate::config::listeners::{ClientAuth, PemSource, TlsSettings};

/// Why a listener's TLS configuration cannot be built; names the key to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid configuration {}: {}", self.key, self.reason)
    }
}

impl std::error::Error for TlsError {}

fn error(key: &str, reason: impl Into<String>) -> TlsError {
    TlsError {
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// Largest PEM file read.
const MAX_PEM_BYTES: u64 = 1 << 20;

fn read_pem(source: &PemSource, key: &str) -> Result<Vec<u8>, TlsError> {
    match source {
        PemSource::Inline(text) => Ok(text.as_bytes().to_vec()),
        PemSource::File(path) => {
            let meta = std::fs::metadata(path)
                .map_err(|e| error(key, format!("cannot read {}: {e}", path.display())))?;
            if meta.len() > MAX_PEM_BYTES {
                return Err(error(
                    key,
                    format!("{} is larger than 1 MiB", path.display()),
                ));
            }
            std::fs::read(path)
                .map_err(|e| error(key, format!("cannot read {}: {e}", path.display())))
        }
    }
}

fn keystore_key(settings: &TlsSettings) -> &'static str {
    match settings.keystore.first() {
        Some(PemSource::File(_)) => "ssl.keystore.location",
        _ => "ssl.keystore.certificate.chain",
    }
}

/// The certificate chain and private key of the keystore.
fn load_keystore(
    settings: &TlsSettings,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let key_name = keystore_key(settings);
    let mut pem = Vec::new();
    for source in &settings.keystore {
        pem.extend(read_pem(source, key_name)?);
        pem.push(b'\n');
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| error(key_name, format!("bad PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(error(key_name, "no CERTIFICATE block found"));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        error(
            if key_name == "ssl.keystore.location" {
                key_name
            } else {
                "ssl.keystore.key"
            },
            format!("no usable unencrypted private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    Ok((chain, key))
}

fn load_roots(source: &PemSource) -> Result<RootCertStore, TlsError> {
    let key = match source {
        PemSource::File(_) => "ssl.truststore.location",
        PemSource::Inline(_) => "ssl.truststore.certificates",
    };
    let pem = read_pem(source, key)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| error(key, format!("bad PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| error(key, format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error(key, "no CERTIFICATE block found"));
    }
    Ok(roots)
}

/// rustls's ring provider with `ssl.cipher.suites` applied.
fn provider(settings: &TlsSettings) -> Result<Arc<CryptoProvider>, TlsError> {
    // ring's provider is deprecated in rustls 0.23.48 for lacking post-quantum key
    // exchange; aws-lc-rs has it but needs a much heavier C build. Revisit with rustls 0.24.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    if !settings.cipher_suites.is_empty() {
        let known: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        for wanted in &settings.cipher_suites {
            if !known.contains(wanted) {
                return Err(error(
                    "ssl.cipher.suites",
                    format!(
                        "{wanted} is not available; choose from {}",
                        known.join(", ")
                    ),
                ));
            }
        }
        provider
            .cipher_suites
            .retain(|s| settings.cipher_suites.contains(&format!("{:?}", s.suite())));
    }
    Ok(Arc::new(provider))
}

/// Builds the server configuration of one listener.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider(settings)?;
    let mut versions = Vec::new();
    if settings.protocols.iter().any(|p| p == "TLSv1.3") {
        versions.push(&rustls::version::TLS13);
    }
    if settings.protocols.iter().any(|p| p == "TLSv1.2") {
        versions.push(&rustls::version::TLS12);
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| error("ssl.enabled.protocols", e.to_string()))?;
    let builder = match (&settings.truststore, settings.client_auth) {
        (Some(store), auth) if auth != ClientAuth::None => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(store)?), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| error("ssl.truststore.location", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let (chain, key) = load_keystore(settings)?;
    let config = builder.with_single_cert(chain, key).map_err(|e| {
        error(
            keystore_key(settings),
            format!("the certificate and key cannot be used together: {e}"),
        )
    })?;
    Ok(Arc::new(config))
}

/// A listener's current TLS configuration, rebuilt when one of its files changes.
#[derive(Debug)]
pub struct TlsReloader {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
    stamps: RwLock<Vec<Option<SystemTime>>>,
}

fn file_stamps(settings: &TlsSettings) -> Vec<Option<SystemTime>> {
    let files: Vec<&PathBuf> = settings
        .keystore
        .iter()
        .chain(settings.truststore.iter())
        .filter_map(|s| match s {
            PemSource::File(path) => Some(path),
            PemSource::Inline(_) => None,
        })
        .collect();
    files
        .into_iter()
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

impl TlsReloader {
    pub fn new(settings: TlsSettings) -> Result<TlsReloader, TlsError> {
        let config = server_config(&settings)?;
        Ok(TlsReloader {
            stamps: RwLock::new(file_stamps(&settings)),
            settings,
            current: RwLock::new(config),
        })
    }

    /// The configuration new connections use.
    pub fn current(&self) -> Arc<ServerConfig> {
        Arc::clone(&crate::sync::read(&self.current, "TLS configuration"))
    }

    /// Rebuilds the configuration if a file changed since the last look. `Ok(true)` when
    /// a new one is in use; on an error the old one stays.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = file_stamps(&self.settings);
        if *crate::sync::read(&self.stamps, "TLS file stamps") == stamps {
            return Ok(false);
        }
        *crate::sync::write(&self.stamps, "TLS file stamps") = stamps;
        let config = server_config(&self.settings)?;
        *crate::sync::write(&self.current, "TLS configuration") = config;
        Ok(true)
    }
}

/// An X.509 name in RFC 2253 form (Java's `X500Principal.getName()`): the most specific
/// attribute first, `CN=client,OU=eng,O=Example,C=US`.
fn rfc2253(name: &x509_parser::x509::X509Name) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let short = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.9" => "STREET",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        "0.9.2342.19200300.100.1.1" => "UID",
                        other => other,
                    }
                    .to_string();
                    let value = attr.as_str().unwrap_or_default();
                    format!("{short}={}", escape_dn_value(value))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge =
            (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.chars().count() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One `ssl.principal.mapping.rules` entry.
#[derive(Debug, Clone)]
enum MappingRule {
    Default,
    Rule {
        pattern: regex::Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// Parsed `ssl.principal.mapping.rules` (Kafka's `SslPrincipalMapper`).
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<MappingRule>,
}

/// Reads up to an unescaped `/`; returns the part (with `\/` unescaped) and the rest.
fn until_slash(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if text[i + 1..].starts_with('/') => {
                out.push('/');
                chars.next();
            }
            '/' => return Some((out, &text[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

impl PrincipalMapper {
    pub fn parse(rules: &str) -> Result<PrincipalMapper, TlsError> {
        let key = "ssl.principal.mapping.rules";
        let mut parsed = Vec::new();
        let mut rest = rules.trim();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                parsed.push(MappingRule::Default);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("RULE:") {
                let bad = || error(key, format!("cannot parse rule {rest:?}"));
                let (pattern, after) = until_slash(after).ok_or_else(bad)?;
                let (replacement, after) = until_slash(after).ok_or_else(bad)?;
                let (case, after) = match after.chars().next() {
                    Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                    _ => (None, after),
                };
                let pattern = regex::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| error(key, format!("bad pattern {pattern:?}: {e}")))?;
                parsed.push(MappingRule::Rule {
                    pattern,
                    replacement,
                    case,
                });
                rest = after;
            } else {
                return Err(error(key, format!("cannot parse rule {rest:?}")));
            }
            rest = rest.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        Ok(PrincipalMapper { rules: parsed })
    }

    /// The user name for a distinguished name; `None` when no rule matches (Kafka fails
    /// the connection then).
    pub fn map(&self, dn: &str) -> Option<String> {
        for rule in &self.rules {
            match rule {
                MappingRule::Default => return Some(dn.to_string()),
                MappingRule::Rule {
                    pattern,
                    replacement,
                    case,
                } => {
                    if pattern.is_match(dn) {
                        let name = pattern.replace(dn, replacement.as_str()).into_owned();
                        return Some(match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        });
                    }
                }
            }
        }
        None
    }
}

/// The principal of a TLS connection: `User:<mapped subject>` of the client certificate,
/// `User:ANONYMOUS` without one. `Err` names why the certificate cannot be used.
pub fn principal_of(
    peer_certificates: Option<&[CertificateDer<'_>]>,
    mapper: &PrincipalMapper,
) -> Result<Principal, String> {
    let Some(first) = peer_certificates.and_then(|c| c.first()) else {
        return Ok(Principal::anonymous());
    };
    let (_, cert) = x509_parser::parse_x509_certificate(first.as_ref())
        .map_err(|e| format!("unreadable client certificate: {e}"))?;
    let dn = rfc2253(cert.subject());
    mapper
        .map(&dn)
        .map(Principal::user)
        .ok_or_else(|| format!("no ssl.principal.mapping.rules rule matches {dn:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_rules_follow_kafka() {
        let mapper = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            mapper
                .map("CN=kafka-svc,OU=ServiceUsers,O=Ex,C=US")
                .as_deref(),
            Some("kafka-svc")
        );
        assert_eq!(
            mapper.map("CN=Duke,OU=JavaSoft,O=Sun").as_deref(),
            Some("duke@javasoft")
        );
        assert_eq!(mapper.map("CN=other").as_deref(), Some("CN=other"));
        let strict = PrincipalMapper::parse("RULE:^CN=([a-z]+)$/$1/U").unwrap();
        assert_eq!(strict.map("CN=abc").as_deref(), Some("ABC"));
        assert_eq!(strict.map("CN=Abc,O=x"), None);
        assert!(PrincipalMapper::parse("RULE:broken").is_err());
    }

    #[test]
    fn a_certificate_subject_becomes_an_rfc_2253_principal() {
        let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Example, Inc");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = vec![cert.der().clone()];
        let default = PrincipalMapper::parse("DEFAULT").unwrap();
        assert_eq!(
            principal_of(Some(&der), &default).unwrap(),
            Principal::user("CN=alice,O=Example\\, Inc,C=US")
        );
        assert_eq!(
            principal_of(None, &default).unwrap(),
            Principal::anonymous()
        );
    }
}
