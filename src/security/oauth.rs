//! SASL/OAUTHBEARER (RFC 7628) as Kafka's `OAuthBearerSaslServer` serves it: the client's
//! first message carries `auth=Bearer <JWT>`; a token that does not validate is answered
//! with a JSON error challenge, the client acknowledges it with `\x01`, and the login fails.
//!
//! Tokens are validated against a JWKS file (`sasl.oauthbearer.jwks.endpoint.url` as a
//! `file://` URL, re-read when it changes, so keys can be rotated): signature (RSA or EC,
//! never `none` or a shared secret), `exp` (required), `nbf`, `aud` and `iss` when
//! configured, with `sasl.oauthbearer.clock.skew.seconds` of leeway. The principal is the
//! `sasl.oauthbearer.sub.claim.name` claim. Unsigned tokens (`alg=none`, Kafka's
//! development default) are accepted only with `ferry.sasl.oauthbearer.unsecured.enable`.
//! The signature checks are the `jsonwebtoken` crate's.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Largest JWKS file read.
const MAX_JWKS_BYTES: u64 = 1 << 20;

/// How tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthValidation {
    /// Signed tokens checked against the keys in this JWKS file.
    Jwks(PathBuf),
    /// Unsigned (`alg=none`) tokens, for development only.
    Unsecured,
}

/// A listener's OAUTHBEARER settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    pub validation: OAuthValidation,
    pub sub_claim: String,
    pub expected_audience: Vec<String>,
    pub expected_issuer: Option<String>,
    pub clock_skew_s: u64,
}

/// A validated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    pub principal_name: String,
    /// `exp`, in milliseconds since the epoch.
    pub expires_at_ms: u64,
}

/// The keys of the JWKS file, re-read when its modification time changes.
#[derive(Debug, Default)]
pub struct JwksCache {
    loaded: Mutex<Option<(SystemTime, JwkSet)>>,
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl JwksCache {
    fn keys(&self, path: &PathBuf) -> Result<JwkSet, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
        if meta.len() > MAX_JWKS_BYTES {
            return Err(format!(
                "the JWKS file {} is larger than 1 MiB",
                path.display()
            ));
        }
        let modified = meta.modified().unwrap_or(UNIX_EPOCH);
        let mut loaded = crate::sync::lock(&self.loaded, "JWKS cache");
        if let Some((stamp, keys)) = loaded.as_ref() {
            if *stamp == modified {
                return Ok(keys.clone());
            }
        }
        let text = std::fs::read(path)
            .map_err(|e| format!("cannot read the JWKS file {}: {e}", path.display()))?;
        let keys: JwkSet = serde_json::from_slice(&text)
            .map_err(|e| format!("the JWKS file {} is not a JWK set: {e}", path.display()))?;
        *loaded = Some((modified, keys.clone()));
        Ok(keys)
    }
}

/// The bearer token of a client's first OAUTHBEARER message:
/// `n,[a=authzid],` then `\x01`-separated `key=value` pairs ending in `\x01\x01`.
pub fn bearer_token(message: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(message).map_err(|_| "not UTF-8".to_string())?;
    let rest = text
        .strip_prefix("n,")
        .ok_or("the message does not start with the GS2 header n,")?;
    let (_authzid, pairs) = rest.split_once(',').ok_or("no GS2 header end")?;
    let pairs = pairs
        .strip_prefix('\u{1}')
        .and_then(|p| p.strip_suffix("\u{1}\u{1}"))
        .ok_or("the key-value pairs are not framed by \\x01")?;
    pairs
        .split('\u{1}')
        .find_map(|pair| pair.strip_prefix("auth="))
        .and_then(|auth| auth.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| "no auth=Bearer value".to_string())
}

impl OAuthSettings {
    /// Validates `token`; `Err` says why (logged, and told to the client).
    pub fn validate(&self, token: &str, jwks: &JwksCache) -> Result<ValidToken, String> {
        let claims = match &self.validation {
            OAuthValidation::Unsecured => unsecured_claims(token)?,
            OAuthValidation::Jwks(path) => self.signed_claims(token, &jwks.keys(path)?)?,
        };
        let exp = claims
            .get("exp")
            .and_then(Value::as_f64)
            .ok_or("the token has no exp claim")?;
        let now = now_s() as f64;
        if exp + (self.clock_skew_s as f64) < now {
            return Err("the token has expired".into());
        }
        let principal_name = claims
            .get(&self.sub_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("the token has no {} claim", self.sub_claim))?
            .to_string();
        Ok(ValidToken {
            principal_name,
            expires_at_ms: (exp.max(0.0) * 1000.0) as u64,
        })
    }

    fn signed_claims(
        &self,
        token: &str,
        keys: &JwkSet,
    ) -> Result<serde_json::Map<String, Value>, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("bad token: {e}"))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err("tokens signed with a shared secret are not accepted".into());
        }
        let candidates: Vec<_> = keys
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err("no key in the JWKS matches the token's kid".into());
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.clock_skew_s;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        if self.expected_audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.expected_audience);
        }
        if let Some(issuer) = &self.expected_issuer {
            validation.set_issuer(&[issuer]);
        }
        let mut last = String::new();
        for jwk in candidates {
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(e) => {
                    last = format!("unusable key in the JWKS: {e}");
                    continue;
                }
            };
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = format!("the token does not validate: {e}"),
            }
        }
        Err(last)
    }
}

/// The claims of an unsigned token (`alg=none`, an empty signature).
fn unsecured_claims(token: &str) -> Result<serde_json::Map<String, Value>, String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(""), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("an unsecured token has the form header.payload. (empty signature)".into());
    };
    let decode = |part: &str| -> Result<serde_json::Map<String, Value>, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| "the token is not base64url".to_string())?;
        serde_json::from_slice(&bytes).map_err(|_| "the token is not JSON".to_string())
    };
    let header = decode(header)?;
    if header.get("alg").and_then(Value::as_str) != Some("none") {
        return Err("only alg=none tokens are accepted in unsecured mode".into());
    }
    decode(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unsecured(claims: &str) -> String {
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    #[test]
    fn the_bearer_token_is_found_in_the_client_message() {
        let message = b"n,,\x01host=broker\x01auth=Bearer abc.def.\x01\x01";
        assert_eq!(bearer_token(message), Ok("abc.def."));
        for bad in [
            &b"n,,auth=Bearer x"[..],
            b"y,,\x01auth=Bearer x\x01\x01",
            b"n,,\x01host=x\x01\x01",
        ] {
            assert!(bearer_token(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unsecured_tokens_need_sub_and_a_future_exp() {
        let settings = OAuthSettings {
            validation: OAuthValidation::Unsecured,
            sub_claim: "sub".into(),
            expected_audience: vec![],
            expected_issuer: None,
            clock_skew_s: 30,
        };
        let cache = JwksCache::default();
        let later = now_s() + 600;
        let ok = settings
            .validate(
                &unsecured(&format!(r#"{{"sub":"alice","exp":{later}}}"#)),
                &cache,
            )
            .unwrap();
        assert_eq!(ok.principal_name, "alice");
        assert_eq!(ok.expires_at_ms, later * 1000);
        for claims in [
            format!(r#"{{"sub":"alice","exp":{}}}"#, now_s() - 100),
            format!(r#"{{"exp":{later}}}"#),
            r#"{"sub":"alice"}"#.to_string(),
        ] {
            assert!(
                settings.validate(&unsecured(&claims), &cache).is_err(),
                "{claims}"
            );
        }
        let signed_header = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"a","exp":{later}}}"#))
        );
        assert!(settings.validate(&signed_header, &cache).is_err());
    }

    /// An ES256 key pair: the JWKS entry and the signing key.
    fn es256_key(kid: &str) -> (serde_json::Value, jsonwebtoken::EncodingKey) {
        let key = rcgen::KeyPair::generate().unwrap();
        let point = key.public_key_raw();
        let (x, y) = (&point[1..33], &point[33..65]);
        let jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        let signing =
            jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
        (jwk, signing)
    }

    fn sign(key: &jsonwebtoken::EncodingKey, kid: &str, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_string());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    #[test]
    fn signed_tokens_are_checked_against_the_jwks_file() {
        let dir = tempfile::tempdir().unwrap();
        let (jwk, key) = es256_key("k1");
        let (_, other) = es256_key("k1");
        let path = dir.path().join("jwks.json");
        std::fs::write(&path, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
        let settings = OAuthSettings {
            validation: OAuthValidation::Jwks(path),
            sub_claim: "sub".into(),
            expected_audience: vec!["ferry".into()],
            expected_issuer: Some("https://idp.example".into()),
            clock_skew_s: 30,
        };
        let cache = JwksCache::default();
        let exp = now_s() + 600;
        let good = serde_json::json!({"sub": "svc-orders", "exp": exp, "aud": "ferry", "iss": "https://idp.example"});
        let valid = settings.validate(&sign(&key, "k1", &good), &cache).unwrap();
        assert_eq!(valid.principal_name, "svc-orders");
        assert_eq!(valid.expires_at_ms, exp * 1000);
        // Another key, another audience, an expired token, no kid match: refused.
        assert!(settings
            .validate(&sign(&other, "k1", &good), &cache)
            .is_err());
        let mut wrong_aud = good.clone();
        wrong_aud["aud"] = "someone-else".into();
        assert!(settings
            .validate(&sign(&key, "k1", &wrong_aud), &cache)
            .is_err());
        let mut expired = good.clone();
        expired["exp"] = (now_s() - 600).into();
        assert!(settings
            .validate(&sign(&key, "k1", &expired), &cache)
            .is_err());
        assert!(settings.validate(&sign(&key, "k2", &good), &cache).is_err());
        // alg=none is never accepted against a JWKS.
        assert!(settings
            .validate(&unsecured(&good.to_string()), &cache)
            .is_err());
    }
}
