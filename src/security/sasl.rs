//! One SASL exchange on the server, for the mechanisms Ferry serves: PLAIN (RFC 4616, as
//! Kafka's `PlainSaslServer`: `[authzid] NUL user NUL password`, checked against the SCRAM
//! credentials), SCRAM-SHA-256/512 (`scram`) and OAUTHBEARER (`oauth`). The connection
//! (`network::authenticate`) owns the framing (SaslHandshake, SaslAuthenticate or raw v0
//! tokens).

use super::credentials::CredentialStore;
use super::oauth::{bearer_token, JwksCache, OAuthSettings};
use super::scram::{ScramMechanism, ScramServer};
use super::Principal;
use crate::config::listeners::{SaslMechanism, SaslSettings};

/// What exchanges check credentials against.
pub struct Verifiers<'a> {
    pub store: &'a CredentialStore,
    pub jwks: &'a JwksCache,
}

/// The next step of an exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this challenge and wait for the client's next token.
    Challenge(Vec<u8>),
    /// Authenticated as `principal`; send `reply` (may be empty) as the last token.
    /// `expires_at_ms` is when the credential expires (an OAuth token's `exp`), if it does.
    Done {
        reply: Vec<u8>,
        principal: Principal,
        expires_at_ms: Option<u64>,
    },
}

/// Authentication failed; `message` is what the client is told (Kafka's wording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailed {
    pub message: String,
}

/// The exchange for one mechanism.
#[derive(Debug)]
pub enum Exchange {
    Plain {
        done: bool,
    },
    Scram(ScramServer),
    /// `rejected` holds why the token failed once the error challenge went out: the
    /// client's `\x01` acknowledgement then ends the exchange with that reason.
    OAuthBearer {
        settings: Option<OAuthSettings>,
        rejected: Option<String>,
    },
}

impl Exchange {
    pub fn start(mechanism: SaslMechanism, settings: &SaslSettings) -> Exchange {
        match mechanism {
            SaslMechanism::Plain => Exchange::Plain { done: false },
            SaslMechanism::ScramSha256 => Exchange::Scram(ScramServer::new(ScramMechanism::Sha256)),
            SaslMechanism::ScramSha512 => Exchange::Scram(ScramServer::new(ScramMechanism::Sha512)),
            SaslMechanism::OAuthBearer => Exchange::OAuthBearer {
                settings: settings.oauthbearer.clone(),
                rejected: None,
            },
        }
    }

    /// Handles the client's next token. PLAIN derives a key from the password (PBKDF2):
    /// callers run this off the async workers.
    pub fn step(&mut self, token: &[u8], verifiers: &Verifiers<'_>) -> Result<Step, AuthFailed> {
        match self {
            Exchange::Plain { done } => {
                if std::mem::replace(done, true) {
                    return Err(failed("SASL/PLAIN exchange already complete"));
                }
                plain(token, verifiers.store)
            }
            Exchange::OAuthBearer { settings, rejected } => {
                if let Some(reason) = rejected.take() {
                    return Err(failed(format!("Authentication failed: {reason}")));
                }
                let Some(settings) = settings.as_ref() else {
                    return Err(failed("OAUTHBEARER is not configured on this listener"));
                };
                let valid = bearer_token(token).and_then(|t| settings.validate(t, verifiers.jwks));
                match valid {
                    Ok(token) => Ok(Step::Done {
                        reply: Vec::new(),
                        principal: Principal::user(token.principal_name),
                        expires_at_ms: Some(token.expires_at_ms),
                    }),
                    Err(reason) => {
                        // RFC 7628: an error challenge, which the client acknowledges.
                        *rejected = Some(reason);
                        Ok(Step::Challenge(br#"{"status":"invalid_token"}"#.to_vec()))
                    }
                }
            }
            Exchange::Scram(server) => {
                let mechanism = server.mechanism();
                let (reply, user) = server
                    .step(token, |user| verifiers.store.get(user, mechanism))
                    .map_err(|e| failed(e.message))?;
                Ok(match user {
                    None => Step::Challenge(reply),
                    Some(user) => Step::Done {
                        reply,
                        principal: Principal::user(user),
                        expires_at_ms: None,
                    },
                })
            }
        }
    }
}

fn failed(message: impl Into<String>) -> AuthFailed {
    AuthFailed {
        message: message.into(),
    }
}

fn plain(token: &[u8], store: &CredentialStore) -> Result<Step, AuthFailed> {
    let text =
        std::str::from_utf8(token).map_err(|_| failed("Invalid SASL/PLAIN response: not UTF-8"))?;
    let parts: Vec<&str> = text.split('\u{0}').collect();
    let [authzid, user, password] = parts[..] else {
        return Err(failed(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            parts.len()
        )));
    };
    if user.is_empty() {
        return Err(failed("Authentication failed: username not specified"));
    }
    if password.is_empty() {
        return Err(failed("Authentication failed: password not specified"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(failed(
            "Authentication failed: Client requested an authorization id that is different from \
             username",
        ));
    }
    let credentials = store.all_of(user);
    if credentials.is_empty() {
        // The same key derivation as for a real user, so that the time taken does not
        // tell whether the user exists.
        let _ = ScramMechanism::Sha512.salted_password(
            password.as_bytes(),
            b"ferry: no such user",
            crate::security::scram::DEFAULT_ITERATIONS,
        );
    }
    let matches = credentials
        .iter()
        .any(|(mechanism, credential)| credential.matches_password(*mechanism, password));
    if !matches {
        return Err(failed(
            "Authentication failed: Invalid username or password",
        ));
    }
    Ok(Step::Done {
        reply: Vec::new(),
        principal: Principal::user(user),
        expires_at_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::credentials::CredentialChange;
    use crate::security::scram::{ScramCredential, MIN_ITERATIONS};

    fn store_with(user: &str, password: &str) -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::open(dir.path()).unwrap();
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha512, password, MIN_ITERATIONS)
                .unwrap();
        store
            .apply(&[CredentialChange::Upsert {
                user: user.into(),
                mechanism: Some(ScramMechanism::Sha512),
                iterations: MIN_ITERATIONS as i32,
                credential,
            }])
            .unwrap();
        (dir, store)
    }

    #[test]
    fn plain_checks_the_scram_store() {
        let (_dir, store) = store_with("alice", "wonderland");
        let jwks = JwksCache::default();
        let verifiers = Verifiers {
            store: &store,
            jwks: &jwks,
        };
        let settings = SaslSettings {
            mechanisms: vec![SaslMechanism::Plain],
            max_reauth_ms: 0,
            max_receive_bytes: 1 << 20,
            oauthbearer: None,
        };
        let mut ok = Exchange::start(SaslMechanism::Plain, &settings);
        assert_eq!(
            ok.step(b"\0alice\0wonderland", &verifiers),
            Ok(Step::Done {
                reply: vec![],
                principal: Principal::user("alice"),
                expires_at_ms: None,
            })
        );
        assert!(
            ok.step(b"\0alice\0wonderland", &verifiers).is_err(),
            "one exchange, one token"
        );
        for token in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0wonderland",
            b"alice\0wonderland",
            b"bob\0alice\0wonderland",
            b"\0\0x",
            b"\0alice\0",
        ] {
            let mut exchange = Exchange::start(SaslMechanism::Plain, &settings);
            assert!(exchange.step(token, &verifiers).is_err(), "{token:?}");
        }
    }
}
