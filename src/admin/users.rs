//! `ferry users`: SCRAM users over the wire with DescribeUserScramCredentials (50) and
//! AlterUserScramCredentials (51), against Ferry or Apache Kafka. The password is salted
//! and hashed here (PBKDF2, as `kafka-configs --alter --add-config SCRAM-SHA-...` does);
//! only the salted password crosses the wire.

use bytes::Bytes;
use proto_kafka::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use proto_kafka::messages::describe_user_scram_credentials_request::UserName;
use proto_kafka::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ApiKey,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use proto_kafka::protocol::StrBytes;

use super::topics::controller;
use crate::client::{check, ClientError, Cluster};
use crate::security::scram::ScramMechanism;

/// One user's credential for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCredential {
    pub user: String,
    pub mechanism: String,
    pub iterations: i32,
}

/// One user's outcome of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeResult {
    pub user: String,
    pub error_code: i16,
    pub message: Option<String>,
}

fn mechanism_name(id: i8) -> String {
    ScramMechanism::from_type_id(id)
        .map_or_else(|| format!("unknown({id})"), |m| m.name().to_string())
}

/// Every user's credentials (or only `users`'), sorted by user and mechanism.
pub async fn list(
    cluster: &mut Cluster,
    users: &[String],
) -> Result<Vec<UserCredential>, ClientError> {
    let names = users
        .iter()
        .map(|u| UserName::default().with_name(StrBytes::from_string(u.clone())))
        .collect();
    let request = DescribeUserScramCredentialsRequest::default().with_users(Some(names));
    let controller = controller(cluster).await?;
    let (_, response): (i16, DescribeUserScramCredentialsResponse) = cluster
        .broker(controller)
        .await?
        .call(ApiKey::DescribeUserScramCredentials, 0, &request)
        .await?;
    check(response.error_code, || "describing SCRAM users".to_string())?;
    let mut out = Vec::new();
    for result in &response.results {
        if result.error_code != 0 {
            let message = result.error_message.as_ref().map(|m| m.to_string());
            return Err(ClientError::NotFound(message.unwrap_or_else(|| {
                format!("user {}: error {}", result.user.as_str(), result.error_code)
            })));
        }
        for info in &result.credential_infos {
            out.push(UserCredential {
                user: result.user.to_string(),
                mechanism: mechanism_name(info.mechanism),
                iterations: info.iterations,
            });
        }
    }
    out.sort_by(|a, b| (&a.user, &a.mechanism).cmp(&(&b.user, &b.mechanism)));
    Ok(out)
}

/// Sets `user`'s password for each mechanism, with a new random salt: one request per
/// mechanism (Kafka refuses a user named twice in one request).
pub async fn set_password(
    cluster: &mut Cluster,
    user: &str,
    password: &str,
    mechanisms: &[ScramMechanism],
    iterations: u32,
) -> Result<Vec<ChangeResult>, ClientError> {
    let mut results = Vec::new();
    for mechanism in mechanisms {
        let mut salt = vec![0u8; 24];
        getrandom::fill(&mut salt)
            .map_err(|e| ClientError::Refused(format!("no randomness for a salt: {e}")))?;
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        let upsertion = ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism.type_id())
            .with_iterations(i32::try_from(iterations).unwrap_or(i32::MAX))
            .with_salt(Bytes::from(salt))
            .with_salted_password(Bytes::from(salted));
        let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsertion]);
        results.extend(alter(cluster, request).await?);
    }
    Ok(results)
}

/// Deletes `user`'s credentials for each mechanism (one request each).
pub async fn delete(
    cluster: &mut Cluster,
    user: &str,
    mechanisms: &[ScramMechanism],
) -> Result<Vec<ChangeResult>, ClientError> {
    let mut results = Vec::new();
    for mechanism in mechanisms {
        let deletion = ScramCredentialDeletion::default()
            .with_name(StrBytes::from_string(user.to_string()))
            .with_mechanism(mechanism.type_id());
        let request = AlterUserScramCredentialsRequest::default().with_deletions(vec![deletion]);
        results.extend(alter(cluster, request).await?);
    }
    Ok(results)
}

async fn alter(
    cluster: &mut Cluster,
    request: AlterUserScramCredentialsRequest,
) -> Result<Vec<ChangeResult>, ClientError> {
    let controller = controller(cluster).await?;
    let (_, response): (i16, AlterUserScramCredentialsResponse) = cluster
        .broker(controller)
        .await?
        .call(ApiKey::AlterUserScramCredentials, 0, &request)
        .await?;
    Ok(response
        .results
        .iter()
        .map(|r| ChangeResult {
            user: r.user.to_string(),
            error_code: r.error_code,
            message: r.error_message.as_ref().map(|m| m.to_string()),
        })
        .collect())
}
