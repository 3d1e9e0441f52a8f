//! Listeners and their security: Kafka's `listeners`, `listener.security.protocol.map`,
//! `advertised.listeners`, and the TLS (`ssl.*`) and SASL (`sasl.*`,
//! `connections.max.reauth.ms`) keys, each of which may be given per listener with
//! Kafka's `listener.name.<name>.` prefix (SASL keys also per mechanism,
//! `listener.name.<name>.<mechanism>.`).
//!
//! Every key of these families is either used or refused with a message naming it: an
//! operator who asks for security Ferry cannot give must never get an open broker. Keys
//! that only matter between brokers or in Java (`ssl.endpoint.identification.algorithm`,
//! ...) are accepted and reported in the startup warning of keys without effect.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use super::{invalid, parse_bool, parse_num, resolve, ConfigError, Endpoint};
use crate::security::oauth::{OAuthSettings, OAuthValidation};

/// Ferry's own key that allows unsigned OAUTHBEARER tokens (development only).
const UNSECURED_OAUTH_KEY: &str = "ferry.sasl.oauthbearer.unsecured.enable";

/// Kafka's four security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn parse(text: &str) -> Option<SecurityProtocol> {
        match text.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// The SASL mechanisms Ferry serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OAuthBearer,
}

impl SaslMechanism {
    pub const ALL: [SaslMechanism; 4] = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::OAuthBearer,
    ];

    pub fn parse(text: &str) -> Option<SaslMechanism> {
        SaslMechanism::ALL
            .into_iter()
            .find(|m| m.name() == text.trim())
    }

    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// Where PEM text comes from: a file (re-read when it changes) or the config itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    File(PathBuf),
    Inline(String),
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// One listener's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain and the PKCS#8 private key: one file
    /// (`ssl.keystore.location`) or the pair of inline keys, read as one PEM text.
    pub keystore: Vec<PemSource>,
    /// CA certificates that client certificates must chain to.
    pub truststore: Option<PemSource>,
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`: "TLSv1.2", "TLSv1.3".
    pub protocols: Vec<String>,
    /// `ssl.cipher.suites` (IANA names); empty means rustls's defaults.
    pub cipher_suites: Vec<String>,
    /// `ssl.principal.mapping.rules`, as written.
    pub principal_mapping_rules: String,
}

/// One listener's SASL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    pub mechanisms: Vec<SaslMechanism>,
    /// `connections.max.reauth.ms`: 0 means sessions never expire.
    pub max_reauth_ms: u64,
    /// `sasl.server.max.receive.size`: the largest SASL token accepted.
    pub max_receive_bytes: usize,
    /// How OAUTHBEARER tokens are validated, when the mechanism is enabled.
    pub oauthbearer: Option<OAuthSettings>,
}

/// One configured listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Its name as written in `listeners`, upper-case (`PLAINTEXT`, `SASL_SSL`, `CLIENT`).
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: SocketAddr,
    /// From `advertised.listeners`; `None` advertises the bound address.
    pub advertised: Option<Endpoint>,
    pub tls: Option<TlsSettings>,
    pub sasl: Option<SaslSettings>,
}

/// A listener once bound: what Metadata, FindCoordinator and DescribeCluster tell the
/// clients that came in on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundListener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bound: SocketAddr,
    pub advertised: Endpoint,
}

impl ListenerConfig {
    /// The listener bound at `bound`: advertised as configured, else as bound (a wildcard
    /// address advertises the host name, port 0 the port the system chose).
    pub fn bound_at(&self, bound: SocketAddr) -> BoundListener {
        let advertised = self.advertised.clone().unwrap_or_else(|| {
            let host = if bound.ip().is_unspecified() {
                std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map(|h| h.trim().to_string())
                    .unwrap_or_else(|_| "localhost".to_string())
            } else {
                bound.ip().to_string()
            };
            Endpoint {
                host,
                port: bound.port(),
            }
        });
        let advertised = Endpoint {
            port: if advertised.port == 0 {
                bound.port()
            } else {
                advertised.port
            },
            ..advertised
        };
        BoundListener {
            name: self.name.clone(),
            protocol: self.protocol,
            bound,
            advertised,
        }
    }
}

/// Kafka's default `sasl.server.max.receive.size`.
const DEFAULT_SASL_MAX_RECEIVE_BYTES: usize = 524_288;
/// Most listeners one broker binds.
pub const MAX_LISTENERS: usize = 16;

/// Keys accepted without effect on a single-node broker (they configure connections
/// between brokers, or Java's crypto providers), reported in the startup warning.
const INERT_KEYS: &[&str] = &[
    "security.inter.broker.protocol",
    "inter.broker.listener.name",
    "sasl.mechanism.inter.broker.protocol",
    "sasl.mechanism.controller.protocol",
    "ssl.endpoint.identification.algorithm",
    "ssl.keymanager.algorithm",
    "ssl.trustmanager.algorithm",
    "ssl.secure.random.implementation",
    "ssl.protocol",
];

/// Whether `key` belongs to this module.
pub fn owns_key(key: &str) -> bool {
    matches!(
        key,
        "listeners"
            | "advertised.listeners"
            | "listener.security.protocol.map"
            | "controller.listener.names"
            | "connections.max.reauth.ms"
            | UNSECURED_OAUTH_KEY
    ) || INERT_KEYS.contains(&key)
        || key.starts_with("ssl.")
        || key.starts_with("sasl.")
        || key.starts_with("listener.name.")
}

/// Reads the keys of a listener, trying the listener-prefixed form first and recording
/// every key it looks at.
struct Lookup<'a> {
    props: &'a BTreeMap<String, String>,
    used: BTreeSet<String>,
}

impl<'a> Lookup<'a> {
    fn raw(&mut self, key: &str) -> Option<(&'a str, String)> {
        let value = self.props.get(key)?;
        self.used.insert(key.to_string());
        Some((value.trim(), key.to_string()))
    }

    /// `listener.name.<l>.<key>`, else `<key>`; with the key actually found.
    fn get(&mut self, listener: &str, key: &str) -> Option<(&'a str, String)> {
        let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        self.raw(&prefixed).or_else(|| self.raw(key))
    }

    /// Only the prefixed form (Kafka ignores an unprefixed `ssl.client.auth` on SASL_SSL).
    fn prefixed(&mut self, listener: &str, key: &str) -> Option<(&'a str, String)> {
        self.raw(&format!(
            "listener.name.{}.{key}",
            listener.to_ascii_lowercase()
        ))
    }
}

/// Builds the listeners from the properties; `props` holds every key (file and overrides).
pub fn from_properties(
    props: &BTreeMap<String, String>,
) -> Result<(Vec<ListenerConfig>, Vec<String>), ConfigError> {
    let mut lookup = Lookup {
        props,
        used: BTreeSet::new(),
    };
    let map = protocol_map(&mut lookup)?;
    let controller_names: Vec<String> = lookup
        .raw("controller.listener.names")
        .map(|(v, _)| split_list(v).map(str::to_ascii_uppercase).collect())
        .unwrap_or_default();
    let value = lookup
        .raw("listeners")
        .map(|(v, _)| v.to_string())
        .unwrap_or_else(|| "PLAINTEXT://127.0.0.1:9092".to_string());
    let mut listeners = Vec::new();
    for entry in split_list(&value) {
        let (name, endpoint) = parse_entry("listeners", entry)?;
        if controller_names.contains(&name) {
            continue;
        }
        if listeners.iter().any(|l: &ListenerConfig| l.name == name) {
            return Err(invalid(
                "listeners",
                format!("listener name {name} is used twice"),
            ));
        }
        let protocol = protocol_of(&map, &name)?;
        let bind = resolve("listeners", &endpoint)?;
        if bind.port() != 0 && listeners.iter().any(|l| l.bind.port() == bind.port()) {
            return Err(invalid(
                "listeners",
                format!("port {} is used by two listeners", bind.port()),
            ));
        }
        listeners.push(ListenerConfig {
            tls: tls_settings(&mut lookup, &name, protocol)?,
            sasl: sasl_settings(&mut lookup, &name, protocol)?,
            name,
            protocol,
            bind,
            advertised: None,
        });
    }
    if listeners.is_empty() {
        return Err(invalid("listeners", "no client listener is configured"));
    }
    if listeners.len() > MAX_LISTENERS {
        return Err(invalid(
            "listeners",
            format!("at most {MAX_LISTENERS} listeners are supported"),
        ));
    }
    apply_advertised(&mut lookup, &mut listeners)?;
    let inert = check_all_used(&lookup)?;
    Ok((listeners, inert))
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// `NAME://host:port` (or a bare `host:port`, taken as PLAINTEXT), name upper-cased.
fn parse_entry(key: &str, entry: &str) -> Result<(String, Endpoint), ConfigError> {
    let (name, address) = match entry.split_once("://") {
        Some((name, rest)) => (name.trim().to_ascii_uppercase(), rest),
        None => ("PLAINTEXT".to_string(), entry),
    };
    if name.is_empty() {
        return Err(invalid(key, format!("{entry:?} has no listener name")));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid(key, format!("expected NAME://HOST:PORT, got {entry:?}")))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid(key, format!("bad port in {entry:?}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((
        name,
        Endpoint {
            host: host.to_string(),
            port,
        },
    ))
}

/// `listener.security.protocol.map`; unset, each protocol name maps to itself.
fn protocol_map(lookup: &mut Lookup) -> Result<BTreeMap<String, SecurityProtocol>, ConfigError> {
    let key = "listener.security.protocol.map";
    let mut map = BTreeMap::new();
    let Some((value, _)) = lookup.raw(key) else {
        return Ok(map);
    };
    for entry in split_list(value) {
        let (name, protocol) = entry
            .split_once(':')
            .ok_or_else(|| invalid(key, format!("expected NAME:PROTOCOL, got {entry:?}")))?;
        let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
            invalid(
                key,
                format!(
                    "{entry:?}: unknown security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, \
                     SASL_SSL)"
                ),
            )
        })?;
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

fn protocol_of(
    map: &BTreeMap<String, SecurityProtocol>,
    name: &str,
) -> Result<SecurityProtocol, ConfigError> {
    if let Some(protocol) = map.get(name) {
        return Ok(*protocol);
    }
    if map.is_empty() {
        if let Some(protocol) = SecurityProtocol::parse(name) {
            return Ok(protocol);
        }
    }
    Err(invalid(
        "listener.security.protocol.map",
        format!("listener {name} has no security protocol; add {name}:PROTOCOL to the map"),
    ))
}

/// `advertised.listeners`: entries by listener name; unnamed listeners keep their bind
/// address. An entry for a listener that does not exist is refused.
fn apply_advertised(
    lookup: &mut Lookup,
    listeners: &mut [ListenerConfig],
) -> Result<(), ConfigError> {
    let key = "advertised.listeners";
    let Some((value, _)) = lookup.raw(key) else {
        return Ok(());
    };
    for entry in split_list(value) {
        let (name, endpoint) = parse_entry(key, entry)?;
        let listener = listeners
            .iter_mut()
            .find(|l| l.name == name)
            .ok_or_else(|| invalid(key, format!("{entry:?} names no listener in listeners")))?;
        if endpoint.host == "0.0.0.0" {
            return Err(invalid(
                key,
                format!("{entry:?}: 0.0.0.0 cannot be advertised"),
            ));
        }
        listener.advertised = Some(endpoint);
    }
    Ok(())
}

fn tls_settings(
    lookup: &mut Lookup,
    listener: &str,
    protocol: SecurityProtocol,
) -> Result<Option<TlsSettings>, ConfigError> {
    if !protocol.uses_tls() {
        return Ok(None);
    }
    let keystore = keystore(lookup, listener)?;
    let truststore = truststore(lookup, listener)?;
    // Kafka applies ssl.client.auth to SASL_SSL only when the key is listener-prefixed.
    let client_auth = match protocol {
        SecurityProtocol::SaslSsl => lookup.prefixed(listener, "ssl.client.auth"),
        _ => lookup.get(listener, "ssl.client.auth"),
    };
    let client_auth = match client_auth {
        None => ClientAuth::None,
        Some((value, key)) => match value.to_ascii_lowercase().as_str() {
            "none" | "" => ClientAuth::None,
            "requested" => ClientAuth::Requested,
            "required" => ClientAuth::Required,
            other => {
                return Err(invalid(
                    &key,
                    format!("{other:?}: expected none, requested or required"),
                ))
            }
        },
    };
    if client_auth != ClientAuth::None && truststore.is_none() {
        return Err(invalid(
            "ssl.truststore.location",
            format!(
                "listener {listener} asks for client certificates (ssl.client.auth) but has \
                 no truststore to check them against"
            ),
        ));
    }
    let protocols = match lookup.get(listener, "ssl.enabled.protocols") {
        None => vec!["TLSv1.2".to_string(), "TLSv1.3".to_string()],
        Some((value, key)) => {
            let list: Vec<String> = split_list(value).map(str::to_string).collect();
            for p in &list {
                if p != "TLSv1.2" && p != "TLSv1.3" {
                    return Err(invalid(
                        &key,
                        format!("{p}: Ferry serves TLSv1.2 and TLSv1.3 only"),
                    ));
                }
            }
            if list.is_empty() {
                return Err(invalid(&key, "no protocol is enabled"));
            }
            list
        }
    };
    let cipher_suites = lookup
        .get(listener, "ssl.cipher.suites")
        .map(|(v, _)| split_list(v).map(str::to_string).collect())
        .unwrap_or_default();
    let principal_mapping_rules = lookup
        .get(listener, "ssl.principal.mapping.rules")
        .map_or("DEFAULT".to_string(), |(v, _)| v.to_string());
    Ok(Some(TlsSettings {
        keystore,
        truststore,
        client_auth,
        protocols,
        cipher_suites,
        principal_mapping_rules,
    }))
}

/// Refuses a store type other than PEM, and a password Kafka refuses for PEM stores.
fn require_pem(lookup: &mut Lookup, listener: &str, store: &str) -> Result<(), ConfigError> {
    if let Some((value, key)) = lookup.get(listener, &format!("ssl.{store}.type")) {
        if !value.eq_ignore_ascii_case("PEM") {
            return Err(invalid(
                &key,
                format!("{value}: Ferry reads PEM stores only (ssl.{store}.type=PEM)"),
            ));
        }
    }
    if let Some((_, key)) = lookup.get(listener, &format!("ssl.{store}.password")) {
        return Err(invalid(&key, "a PEM store takes no password"));
    }
    Ok(())
}

fn keystore(lookup: &mut Lookup, listener: &str) -> Result<Vec<PemSource>, ConfigError> {
    require_pem(lookup, listener, "keystore")?;
    if let Some((_, key)) = lookup.get(listener, "ssl.key.password") {
        return Err(invalid(
            &key,
            "encrypted private keys are not supported; give an unencrypted PKCS#8 key in a \
             file only the broker can read",
        ));
    }
    let location = lookup.get(listener, "ssl.keystore.location");
    let chain = lookup.get(listener, "ssl.keystore.certificate.chain");
    let key = lookup.get(listener, "ssl.keystore.key");
    match (location, chain, key) {
        (Some((path, _)), None, None) if !path.is_empty() => {
            Ok(vec![PemSource::File(PathBuf::from(path))])
        }
        (None, Some((chain, _)), Some((key, _))) => Ok(vec![
            PemSource::Inline(chain.to_string()),
            PemSource::Inline(key.to_string()),
        ]),
        (Some(_), Some((_, k)), _) | (Some(_), _, Some((_, k))) => Err(invalid(
            &k,
            "give either ssl.keystore.location or ssl.keystore.certificate.chain with \
             ssl.keystore.key, not both",
        )),
        (None, Some((_, k)), None) | (None, None, Some((_, k))) => Err(invalid(
            &k,
            "ssl.keystore.certificate.chain and ssl.keystore.key go together",
        )),
        _ => Err(invalid(
            "ssl.keystore.location",
            format!("listener {listener} uses TLS and needs a certificate and key"),
        )),
    }
}

fn truststore(lookup: &mut Lookup, listener: &str) -> Result<Option<PemSource>, ConfigError> {
    require_pem(lookup, listener, "truststore")?;
    let location = lookup.get(listener, "ssl.truststore.location");
    let inline = lookup.get(listener, "ssl.truststore.certificates");
    match (location, inline) {
        (Some((path, _)), None) if !path.is_empty() => {
            Ok(Some(PemSource::File(PathBuf::from(path))))
        }
        (None, Some((pem, _))) if !pem.is_empty() => Ok(Some(PemSource::Inline(pem.to_string()))),
        (Some(_), Some((_, key))) => Err(invalid(
            &key,
            "give either ssl.truststore.location or ssl.truststore.certificates",
        )),
        _ => Ok(None),
    }
}

fn sasl_settings(
    lookup: &mut Lookup,
    listener: &str,
    protocol: SecurityProtocol,
) -> Result<Option<SaslSettings>, ConfigError> {
    if !protocol.uses_sasl() {
        return Ok(None);
    }
    let Some((value, key)) = lookup.get(listener, "sasl.enabled.mechanisms") else {
        return Err(invalid(
            "sasl.enabled.mechanisms",
            format!(
                "listener {listener} uses SASL; list its mechanisms (Kafka's default, GSSAPI, \
                 is not served by Ferry: use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)"
            ),
        ));
    };
    let mut mechanisms = Vec::new();
    for name in split_list(value) {
        let mechanism = SaslMechanism::parse(name).ok_or_else(|| {
            invalid(
                &key,
                format!(
                    "{name}: Ferry serves PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER \
                     (no GSSAPI)"
                ),
            )
        })?;
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    if mechanisms.is_empty() {
        return Err(invalid(&key, "no mechanism is enabled"));
    }
    let mut max_reauth_ms = match lookup.get(listener, "connections.max.reauth.ms") {
        Some((value, key)) => parse_num::<i64>(&key, value)?.max(0) as u64,
        None => 0,
    };
    for mechanism in &mechanisms {
        let per_mechanism = format!(
            "{}.connections.max.reauth.ms",
            mechanism.name().to_ascii_lowercase()
        );
        if let Some((value, key)) = lookup.prefixed(listener, &per_mechanism) {
            max_reauth_ms = parse_num::<i64>(&key, value)?.max(0) as u64;
        }
    }
    let max_receive_bytes = match lookup.get(listener, "sasl.server.max.receive.size") {
        Some((value, key)) => parse_num(&key, value)?,
        None => DEFAULT_SASL_MAX_RECEIVE_BYTES,
    };
    let oauthbearer = if mechanisms.contains(&SaslMechanism::OAuthBearer) {
        Some(oauth_settings(lookup, listener)?)
    } else {
        None
    };
    Ok(Some(SaslSettings {
        mechanisms,
        max_reauth_ms,
        max_receive_bytes,
        oauthbearer,
    }))
}

/// OAUTHBEARER: Kafka's `sasl.oauthbearer.*` validation keys (also per listener, and per
/// listener and mechanism: `listener.name.<l>.oauthbearer.<key>`). The JWKS comes from a
/// file; without one, unsigned tokens need Ferry's explicit development switch.
fn oauth_settings(lookup: &mut Lookup, listener: &str) -> Result<OAuthSettings, ConfigError> {
    let mut get = |key: &str| {
        lookup
            .prefixed(listener, &format!("oauthbearer.{key}"))
            .or_else(|| lookup.get(listener, key))
    };
    let jwks = get("sasl.oauthbearer.jwks.endpoint.url");
    let audience = get("sasl.oauthbearer.expected.audience");
    let issuer = get("sasl.oauthbearer.expected.issuer");
    let sub = get("sasl.oauthbearer.sub.claim.name");
    let skew = get("sasl.oauthbearer.clock.skew.seconds");
    let unsecured = lookup.raw(UNSECURED_OAUTH_KEY);
    let validation = match (jwks, unsecured) {
        (Some((url, key)), _) => {
            let path = url.strip_prefix("file://").ok_or_else(|| {
                invalid(
                    &key,
                    format!(
                        "{url}: Ferry reads the JWKS from a file (file:///path/jwks.json); fetch \
                         the provider's keys into that file, it is re-read when it changes"
                    ),
                )
            })?;
            OAuthValidation::Jwks(PathBuf::from(path))
        }
        (None, Some((value, key))) if parse_bool(&key, value)? => OAuthValidation::Unsecured,
        _ => {
            return Err(invalid(
                "sasl.oauthbearer.jwks.endpoint.url",
                format!(
                    "listener {listener} enables OAUTHBEARER: give the identity provider's keys \
                     (file:///path/jwks.json), or {UNSECURED_OAUTH_KEY}=true to accept unsigned \
                     tokens during development"
                ),
            ))
        }
    };
    Ok(OAuthSettings {
        validation,
        sub_claim: sub.map_or("sub".to_string(), |(v, _)| v.to_string()),
        expected_audience: audience
            .map(|(v, _)| split_list(v).map(str::to_string).collect())
            .unwrap_or_default(),
        expected_issuer: issuer.map(|(v, _)| v.to_string()),
        clock_skew_s: match skew {
            Some((value, key)) => parse_num(&key, value)?,
            None => 30,
        },
    })
}

/// Every key of this module's families must have been used (or be inert): an `ssl.*` key
/// with no TLS listener, a JAAS config, a Kerberos setting or a misspelt key stops startup.
/// Returns the inert keys that were set, for the startup warning.
fn check_all_used(lookup: &Lookup) -> Result<Vec<String>, ConfigError> {
    let mut inert = Vec::new();
    for (key, value) in lookup.props {
        if INERT_KEYS.contains(&key.as_str()) {
            inert.push(key.clone());
            continue;
        }
        if !owns_key(key) || lookup.used.contains(key) {
            continue;
        }
        if value.trim().is_empty() {
            inert.push(key.clone());
            continue;
        }
        let why = if key.contains("jaas.config") {
            "Ferry takes users from its SCRAM credential store (ferry users, \
             AlterUserScramCredentials), not from JAAS; remove the key"
        } else if key.contains("kerberos") {
            "Ferry serves no GSSAPI (Kerberos); remove the key"
        } else {
            "no listener uses this key (check the listener name and its security protocol), \
             or Ferry does not support it"
        };
        return Err(invalid(key, why));
    }
    Ok(inert)
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
    fn several_listeners_with_a_map_and_advertised_addresses() {
        let (listeners, inert) = from_properties(&props(&[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:0,CLIENT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CLIENT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            ("controller.listener.names", "CONTROLLER"),
            ("advertised.listeners", "CLIENT://broker.example:9094"),
            ("sasl.enabled.mechanisms", "SCRAM-SHA-512,PLAIN"),
            ("listener.name.client.connections.max.reauth.ms", "60000"),
        ]))
        .unwrap();
        assert_eq!(listeners.len(), 2, "the controller listener is not bound");
        assert_eq!(listeners[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(listeners[0].advertised, None);
        let client = &listeners[1];
        assert_eq!(client.protocol, SecurityProtocol::SaslPlaintext);
        assert_eq!(
            client.advertised,
            Some(Endpoint {
                host: "broker.example".into(),
                port: 9094
            })
        );
        let sasl = client.sasl.as_ref().unwrap();
        assert_eq!(
            sasl.mechanisms,
            vec![SaslMechanism::ScramSha512, SaslMechanism::Plain]
        );
        assert_eq!(sasl.max_reauth_ms, 60_000);
        assert!(inert.is_empty(), "{inert:?}");
    }

    #[test]
    fn tls_listener_needs_a_pem_keystore() {
        let base = [("listeners", "SSL://127.0.0.1:0")];
        let err = from_properties(&props(&base)).unwrap_err();
        assert_eq!(err.key, "ssl.keystore.location");
        let mut p = props(&base);
        p.insert("ssl.keystore.type".into(), "JKS".into());
        p.insert("ssl.keystore.location".into(), "/k.jks".into());
        assert_eq!(from_properties(&p).unwrap_err().key, "ssl.keystore.type");
        p.insert("ssl.keystore.type".into(), "PEM".into());
        let (listeners, _) = from_properties(&p).unwrap();
        let tls = listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.keystore, vec![PemSource::File("/k.jks".into())]);
        assert_eq!(tls.client_auth, ClientAuth::None);
        p.insert("ssl.client.auth".into(), "required".into());
        assert_eq!(
            from_properties(&p).unwrap_err().key,
            "ssl.truststore.location"
        );
    }

    #[test]
    fn security_keys_nothing_uses_stop_startup_naming_the_key() {
        for (key, value) in [
            ("ssl.keystore.location", "/k.pem"),
            ("sasl.enabled.mechanisms", "PLAIN"),
            (
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required;",
            ),
            ("sasl.kerberos.service.name", "kafka"),
            ("ssl.keystore.passwrd", "x"),
        ] {
            let err = from_properties(&props(&[
                ("listeners", "PLAINTEXT://127.0.0.1:0"),
                (key, value),
            ]))
            .unwrap_err();
            assert_eq!(err.key, key);
        }
        let err = from_properties(&props(&[
            ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
            ("sasl.enabled.mechanisms", "GSSAPI"),
        ]))
        .unwrap_err();
        assert_eq!(err.key, "sasl.enabled.mechanisms");
        let err =
            from_properties(&props(&[("listeners", "SASL_PLAINTEXT://127.0.0.1:0")])).unwrap_err();
        assert_eq!(err.key, "sasl.enabled.mechanisms");
    }

    #[test]
    fn oauthbearer_needs_keys_or_the_explicit_development_switch() {
        let base = [
            ("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
            ("sasl.enabled.mechanisms", "OAUTHBEARER"),
        ];
        let err = from_properties(&props(&base)).unwrap_err();
        assert_eq!(err.key, "sasl.oauthbearer.jwks.endpoint.url");
        let mut p = props(&base);
        p.insert(
            "sasl.oauthbearer.jwks.endpoint.url".into(),
            "https://idp.example/jwks".into(),
        );
        assert_eq!(
            from_properties(&p).unwrap_err().key,
            "sasl.oauthbearer.jwks.endpoint.url"
        );
        p.insert(
            "sasl.oauthbearer.jwks.endpoint.url".into(),
            "file:///etc/ferry/jwks.json".into(),
        );
        p.insert(
            "sasl.oauthbearer.expected.audience".into(),
            "ferry,kafka".into(),
        );
        let oauth_of = |p: &BTreeMap<String, String>| {
            let (listeners, _) = from_properties(p).unwrap();
            listeners[0].sasl.clone().unwrap().oauthbearer.unwrap()
        };
        let oauth = oauth_of(&p);
        assert_eq!(
            oauth.validation,
            OAuthValidation::Jwks("/etc/ferry/jwks.json".into())
        );
        assert_eq!(oauth.expected_audience, vec!["ferry", "kafka"]);
        let mut dev = props(&base);
        dev.insert(UNSECURED_OAUTH_KEY.into(), "true".into());
        assert_eq!(oauth_of(&dev).validation, OAuthValidation::Unsecured);
    }

    #[test]
    fn names_and_ports_are_unique_and_mapped() {
        for value in [
            "PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9093",
            "PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9092",
            "CLIENT://127.0.0.1:9092",
            "TLS://127.0.0.1:9092",
        ] {
            let mut p = props(&[("listeners", value)]);
            p.insert("sasl.enabled.mechanisms".into(), "PLAIN".into());
            let err = from_properties(&p).unwrap_err();
            assert!(
                err.key == "listeners" || err.key == "listener.security.protocol.map",
                "{value}: {err}"
            );
        }
    }
}
