//! SCRAM (RFC 5802, RFC 7677) as Kafka implements it: credentials derived from a password
//! (salt, iterations, StoredKey, ServerKey; the password is never kept), and the server
//! side of one exchange. The HMAC, hashes and PBKDF2 are RustCrypto's.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Kafka's bounds on SCRAM iterations (`ScramMechanism`).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16_384;
/// Iterations of credentials Ferry derives itself (bootstrap users, `ferry users`).
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Salt bytes of credentials Ferry derives itself.
const SALT_BYTES: usize = 24;

/// A SCRAM hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The mechanism's SASL name.
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's type id (DescribeUserScramCredentials, AlterUserScramCredentials).
    pub fn type_id(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_type_id(id: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.type_id() == id)
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    fn hmac(self, key: &[u8], data: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[&[u8]]) -> Vec<u8> {
            // HMAC takes keys of any length, so this cannot fail.
            let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
            for part in data {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramMechanism::Sha256 => run::<Hmac<Sha256>>(key, data),
            ScramMechanism::Sha512 => run::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
            ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, iterations): PBKDF2 with the mechanism's HMAC.
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

/// What the server keeps for one user and mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// The credential for a salted password (what AlterUserScramCredentials carries).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> ScramCredential {
        let client_key = mechanism.hmac(salted_password, &[b"Client Key"]);
        ScramCredential {
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, &[b"Server Key"]),
            salt,
            iterations,
        }
    }

    /// A new credential for `password` with a random salt.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &str,
        iterations: u32,
    ) -> Result<ScramCredential, getrandom::Error> {
        let mut salt = vec![0u8; SALT_BYTES];
        getrandom::fill(&mut salt)?;
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Ok(ScramCredential::from_salted_password(
            mechanism, &salted, salt, iterations,
        ))
    }

    /// Whether `password` is this credential's password (PLAIN checks SCRAM credentials),
    /// compared in constant time.
    pub fn matches_password(&self, mechanism: ScramMechanism, password: &str) -> bool {
        let salted = mechanism.salted_password(password.as_bytes(), &self.salt, self.iterations);
        let derived = ScramCredential::from_salted_password(
            mechanism,
            &salted,
            self.salt.clone(),
            self.iterations,
        );
        bool::from(derived.stored_key.ct_eq(&self.stored_key))
    }
}

/// Why an exchange failed. `message` is what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramError {
    pub message: String,
}

fn fail(message: impl Into<String>) -> ScramError {
    ScramError {
        message: message.into(),
    }
}

/// Kafka's message for a wrong proof (and every malformed message): it does not say
/// whether the user exists.
fn invalid_credentials(mechanism: ScramMechanism) -> ScramError {
    fail(format!(
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism {}",
        mechanism.name()
    ))
}

/// The server's side of one SCRAM exchange: client-first in, server-first out;
/// client-final in, server-final out.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: ScramMechanism,
    state: State,
}

#[derive(Debug)]
enum State {
    AwaitingClientFirst,
    AwaitingClientFinal {
        user: String,
        credential: ScramCredential,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Done,
}

/// A parsed client-first message.
struct ClientFirst<'a> {
    authzid: Option<&'a str>,
    user: String,
    bare: &'a str,
    nonce: &'a str,
}

/// `=2C` is `,` and `=3D` is `=` in a SCRAM user name (RFC 5802 saslname).
fn unescape_name(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(fail("Invalid SCRAM user name: bad escape")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn parse_client_first(text: &str) -> Result<ClientFirst<'_>, ScramError> {
    let malformed = || fail(format!("Invalid SCRAM client first message {text:?}"));
    // GS2 header: only "n" (no channel binding) is supported, as in Kafka.
    let rest = text.strip_prefix("n,").ok_or_else(malformed)?;
    let (authzid, bare) = rest.split_once(',').ok_or_else(malformed)?;
    let authzid = match authzid {
        "" => None,
        a => Some(a.strip_prefix("a=").ok_or_else(malformed)?),
    };
    let mut user = None;
    let mut nonce = None;
    for (i, attribute) in bare.split(',').enumerate() {
        match (i, attribute.split_once('=')) {
            (0, Some(("m", _))) => return Err(malformed()),
            (0, Some(("n", name))) => user = Some(unescape_name(name)?),
            (1, Some(("r", r))) if !r.is_empty() => nonce = Some(r),
            (i, Some(_)) if i >= 2 => {} // extensions: unknown ones are ignored
            _ => return Err(malformed()),
        }
    }
    match (user, nonce) {
        (Some(user), Some(nonce)) => Ok(ClientFirst {
            authzid,
            user,
            bare,
            nonce,
        }),
        _ => Err(malformed()),
    }
}

/// A fresh server nonce: 18 random bytes, base64 without '+', '/', '=' (printable, no ',').
fn server_nonce() -> Result<String, ScramError> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|e| fail(format!("no randomness: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer {
            mechanism,
            state: State::AwaitingClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// Handles the next client message. `credential_of` looks a user's credential up.
    /// Returns the server's message and, once the exchange is complete, the user name.
    pub fn step(
        &mut self,
        message: &[u8],
        credential_of: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Result<(Vec<u8>, Option<String>), ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| invalid_credentials(self.mechanism))?;
        match std::mem::replace(&mut self.state, State::Done) {
            State::AwaitingClientFirst => self.client_first(text, credential_of),
            State::AwaitingClientFinal {
                user,
                credential,
                client_first_bare,
                server_first,
                nonce,
            } => {
                let auth = Exchange {
                    credential: &credential,
                    client_first_bare: &client_first_bare,
                    server_first: &server_first,
                    nonce: &nonce,
                };
                let reply = auth.client_final(self.mechanism, text)?;
                Ok((reply, Some(user)))
            }
            State::Done => Err(fail("SCRAM exchange already complete")),
        }
    }

    fn client_first(
        &mut self,
        text: &str,
        credential_of: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Result<(Vec<u8>, Option<String>), ScramError> {
        let first = parse_client_first(text)?;
        if first.authzid.is_some_and(|a| a != first.user) {
            return Err(fail(
                "Authentication failed: Client requested an authorization id that is different \
                 from username",
            ));
        }
        let credential = credential_of(&first.user)
            .filter(|c| c.iterations >= MIN_ITERATIONS)
            .ok_or_else(|| fail("Authentication failed: Invalid user credentials"))?;
        let nonce = format!("{}{}", first.nonce, server_nonce()?);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = State::AwaitingClientFinal {
            user: first.user,
            credential,
            client_first_bare: first.bare.to_string(),
            server_first,
            nonce,
        };
        Ok((reply, None))
    }
}

/// The state the client-final message is checked against.
struct Exchange<'a> {
    credential: &'a ScramCredential,
    client_first_bare: &'a str,
    server_first: &'a str,
    nonce: &'a str,
}

impl Exchange<'_> {
    fn client_final(&self, mechanism: ScramMechanism, text: &str) -> Result<Vec<u8>, ScramError> {
        let bad = || invalid_credentials(mechanism);
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(bad)?;
        let mut attributes = without_proof.split(',');
        let channel = attributes.next().and_then(|a| a.strip_prefix("c="));
        let nonce = attributes.next().and_then(|a| a.strip_prefix("r="));
        // Kafka accepts a final nonce that ends with the server-first one (librdkafka before
        // 2.x prefixes its own nonce again; `ScramSaslServer` checks `endsWith`).
        if channel.is_none() || !nonce.is_some_and(|n| n.ends_with(self.nonce)) {
            return Err(bad());
        }
        let proof = BASE64.decode(proof).map_err(|_| bad())?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = mechanism.hmac(&self.credential.stored_key, &[auth_message.as_bytes()]);
        if proof.len() != signature.len() {
            return Err(bad());
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored = mechanism.hash(&client_key);
        if !bool::from(stored.ct_eq(&self.credential.stored_key)) {
            return Err(bad());
        }
        let server_signature =
            mechanism.hmac(&self.credential.server_key, &[auth_message.as_bytes()]);
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

/// The client's side of one SCRAM exchange (Ferry's own tools and mirror links).
#[derive(Debug)]
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    client_first_bare: String,
    server_signature: Option<Vec<u8>>,
}

/// `,` is `=2C` and `=` is `=3D` in a SCRAM user name.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

impl ScramClient {
    pub fn new(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<ScramClient, ScramError> {
        let client_first_bare = format!("n={},r={}", escape_name(user), server_nonce()?);
        Ok(ScramClient {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            client_first_bare,
            server_signature: None,
        })
    }

    /// The client-first message.
    pub fn first_message(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// The client-final message for the server-first message.
    pub fn final_message(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let bad = || fail(format!("unexpected SCRAM server message for {}", self.user));
        let server_first = std::str::from_utf8(server_first).map_err(|_| bad())?;
        let mut fields = server_first.split(',');
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or_else(bad)?;
        let salt = fields
            .next()
            .and_then(|f| f.strip_prefix("s="))
            .ok_or_else(bad)?;
        let iterations: u32 = fields
            .next()
            .and_then(|f| f.strip_prefix("i="))
            .and_then(|i| i.parse().ok())
            .ok_or_else(bad)?;
        let own_nonce = self
            .client_first_bare
            .rsplit_once("r=")
            .map(|(_, n)| n)
            .unwrap_or_default();
        if !nonce.starts_with(own_nonce)
            || !(MIN_ITERATIONS..=MAX_ITERATIONS * 64).contains(&iterations)
        {
            return Err(bad());
        }
        let salt = BASE64.decode(salt).map_err(|_| bad())?;
        let salted = self
            .mechanism
            .salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = self.mechanism.hmac(&salted, &[b"Client Key"]);
        let stored_key = self.mechanism.hash(&client_key);
        let server_key = self.mechanism.hmac(&salted, &[b"Server Key"]);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.mechanism.hmac(&stored_key, &[auth.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        self.server_signature = Some(self.mechanism.hmac(&server_key, &[auth.as_bytes()]));
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server knew the credential too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).unwrap_or_default();
        let expected = self.server_signature.as_ref();
        let given = text.strip_prefix("v=").and_then(|v| BASE64.decode(v).ok());
        match (expected, given) {
            (Some(e), Some(g)) if bool::from(e.ct_eq(&g)) => Ok(()),
            _ => Err(fail(format!(
                "the broker's SCRAM signature is wrong ({text:?}): it does not hold {}'s credential",
                self.user
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(
        mechanism: ScramMechanism,
        stored: &str,
        tried: &str,
    ) -> Result<String, ScramError> {
        let credential = ScramCredential::from_password(mechanism, stored, MIN_ITERATIONS).unwrap();
        let lookup = |user: &str| (user == "al,ice").then(|| credential.clone());
        let mut server = ScramServer::new(mechanism);
        let mut client = ScramClient::new(mechanism, "al,ice", tried).unwrap();
        let (server_first, done) = server.step(&client.first_message(), lookup)?;
        assert_eq!(done, None);
        let final_message = client.final_message(&server_first)?;
        let (reply, user) = server.step(&final_message, lookup)?;
        assert_eq!(user.as_deref(), Some("al,ice"));
        client.verify_server_final(&reply)?;
        Ok(String::from_utf8(reply).unwrap())
    }

    #[test]
    fn the_right_password_completes_and_a_wrong_one_fails() {
        for mechanism in ScramMechanism::ALL {
            let reply = exchange(mechanism, "pencil", "pencil").unwrap();
            assert!(reply.starts_with("v="), "{reply}");
            let err = exchange(mechanism, "pencil", "pen").unwrap_err();
            assert!(err.message.contains("invalid credentials"), "{err:?}");
        }
    }

    /// RFC 7677's test vector for SCRAM-SHA-256 (user "user", password "pencil").
    #[test]
    fn rfc_7677_test_vector() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let mechanism = ScramMechanism::Sha256;
        let salted = mechanism.salted_password(b"pencil", &salt, 4096);
        let credential = ScramCredential::from_salted_password(mechanism, &salted, salt, 4096);
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let exchange = Exchange {
            credential: &credential,
            client_first_bare: bare,
            server_first,
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        };
        let reply = exchange
            .client_final(
                mechanism,
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(reply).unwrap(),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn unknown_users_and_malformed_messages_fail_cleanly() {
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        let err = server.step(b"n,,n=bob,r=abc", |_| None).unwrap_err();
        assert_eq!(
            err.message,
            "Authentication failed: Invalid user credentials"
        );
        for message in [
            &b"y,,n=bob,r=abc"[..],
            b"n,,r=abc",
            b"\xff\xfe",
            b"n,,n=b=4Fob,r=x",
            b"",
        ] {
            let mut server = ScramServer::new(ScramMechanism::Sha512);
            assert!(server.step(message, |_| None).is_err());
        }
    }

    #[test]
    fn plain_passwords_are_checked_against_the_credential() {
        let credential =
            ScramCredential::from_password(ScramMechanism::Sha512, "s3cret", MIN_ITERATIONS)
                .unwrap();
        assert!(credential.matches_password(ScramMechanism::Sha512, "s3cret"));
        assert!(!credential.matches_password(ScramMechanism::Sha512, "s3cret!"));
    }
}
