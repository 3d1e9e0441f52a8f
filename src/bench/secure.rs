//! W9's secured endpoint: the harness's own Ferry gets a second listener, SASL_SSL with
//! SCRAM-SHA-512, next to its PLAINTEXT one. A certificate authority and the broker's
//! certificate are generated into the run's scratch directory (rcgen) and a bootstrap
//! user is created from a file there; clients of a SASL_SSL phase get the matching
//! librdkafka settings.

use std::path::Path;

/// The user W9's clients log in as.
const USER: &str = "bench";
const PASSWORD: &str = "bench-secret";

/// The broker's side (`--override` pairs) and, once it runs, the clients' side.
pub struct SecureSetup {
    pub broker_overrides: Vec<String>,
    client_props: Vec<(String, String)>,
}

/// Where SASL_SSL clients connect and what they set.
#[derive(Debug, Clone)]
pub struct SecureEndpoint {
    pub bootstrap: String,
    pub client_props: Vec<(String, String)>,
}

impl SecureSetup {
    /// Writes the certificates and the user file into `dir`.
    pub fn prepare(dir: &Path) -> Result<SecureSetup, String> {
        let failed = |e: rcgen::Error| format!("generating W9's certificates: {e}");
        let io = |e: std::io::Error| format!("writing W9's certificates in {}: {e}", dir.display());
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        // Distinct names: a certificate whose issuer equals its subject looks self-signed.
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ferry bench CA");
        let ca_key = rcgen::KeyPair::generate().map_err(failed)?;
        let ca = ca_params.self_signed(&ca_key).map_err(failed)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .map_err(failed)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ferry bench broker");
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(failed)?;
        let (ca_path, keystore, users) = (
            dir.join("bench-ca.pem"),
            dir.join("bench-broker.pem"),
            dir.join("bench-users"),
        );
        std::fs::write(&ca_path, ca.pem()).map_err(io)?;
        std::fs::write(&keystore, format!("{}{}", cert.pem(), key.serialize_pem())).map_err(io)?;
        std::fs::write(&users, format!("{USER}:{PASSWORD}\n")).map_err(io)?;
        let overrides = [
            "listeners=PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0".to_string(),
            format!("ssl.keystore.location={}", keystore.display()),
            "sasl.enabled.mechanisms=SCRAM-SHA-512".to_string(),
            format!("ferry.sasl.bootstrap.users.file={}", users.display()),
        ];
        let client_props = [
            ("security.protocol", "SASL_SSL".to_string()),
            ("ssl.ca.location", ca_path.display().to_string()),
            ("sasl.mechanism", "SCRAM-SHA-512".to_string()),
            ("sasl.username", USER.to_string()),
            ("sasl.password", PASSWORD.to_string()),
        ];
        Ok(SecureSetup {
            broker_overrides: overrides
                .into_iter()
                .flat_map(|o| ["--override".to_string(), o])
                .collect(),
            client_props: client_props
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })
    }

    /// The endpoint at the broker's SASL_SSL address.
    pub fn endpoint(&self, bootstrap: String) -> SecureEndpoint {
        SecureEndpoint {
            bootstrap,
            client_props: self.client_props.clone(),
        }
    }
}
