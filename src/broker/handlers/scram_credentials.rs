//! DescribeUserScramCredentials (key 50) and AlterUserScramCredentials (key 51), v0, as
//! Kafka's `ScramControlManager` and `ScramImage` answer them: mechanisms and iterations
//! only (never salts or keys), per-user errors, and every accepted change written to the
//! credential store (`security::credentials`) in one atomic step, applied to new
//! authentications at once.

use std::collections::HashMap;
use std::sync::Arc;

use proto_kafka::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use proto_kafka::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use proto_kafka::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use tracing::error;

use super::str_bytes;
use crate::broker::dispatch::{Handled, RequestContext};
use crate::broker::error_code::{code, KafkaError};
use crate::broker::Broker;
use crate::security::credentials::{ChangeError, CredentialChange};
use crate::security::scram::{ScramCredential, ScramMechanism};

pub mod describe {
    use super::*;

    pub fn handle(
        broker: &Arc<Broker>,
        _ctx: &RequestContext,
        request: DescribeUserScramCredentialsRequest,
    ) -> Handled<DescribeUserScramCredentialsResponse> {
        let all = broker.credentials.describe();
        let info = |mechanisms: &[(ScramMechanism, u32)]| -> Vec<CredentialInfo> {
            mechanisms
                .iter()
                .map(|(m, iterations)| {
                    CredentialInfo::default()
                        .with_mechanism(m.type_id())
                        .with_iterations(i32::try_from(*iterations).unwrap_or(i32::MAX))
                })
                .collect()
        };
        let requested: Vec<String> = request
            .users
            .unwrap_or_default()
            .iter()
            .map(|u| u.name.to_string())
            .collect();
        let results = if requested.is_empty() {
            all.iter()
                .map(|(user, mechanisms)| {
                    DescribeUserScramCredentialsResult::default()
                        .with_user(str_bytes(user))
                        .with_credential_infos(info(mechanisms))
                })
                .collect()
        } else {
            let mut count: HashMap<&str, usize> = HashMap::new();
            for user in &requested {
                *count.entry(user).or_default() += 1;
            }
            let mut reported = std::collections::HashSet::new();
            requested
            .iter()
            .filter(|user| reported.insert(user.as_str()))
            .map(|user| {
                let result = DescribeUserScramCredentialsResult::default().with_user(str_bytes(user));
                if count.get(user.as_str()).copied().unwrap_or(0) > 1 {
                    return result
                        .with_error_code(code(KafkaError::DuplicateResource))
                        .with_error_message(Some(str_bytes(&format!(
                            "Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
                        ))));
                }
                match all.iter().find(|(name, _)| name == user) {
                    Some((_, mechanisms)) => result.with_credential_infos(info(mechanisms)),
                    None => result
                        .with_error_code(code(KafkaError::ResourceNotFound))
                        .with_error_message(Some(str_bytes(&format!(
                            "Attempt to describe a user credential that does not exist: {user}"
                        )))),
                }
            })
            .collect()
        };
        Handled::Now(DescribeUserScramCredentialsResponse::default().with_results(results))
    }
}

pub mod alter {
    use super::*;

    pub fn handle(
        broker: &Arc<Broker>,
        _ctx: &RequestContext,
        request: AlterUserScramCredentialsRequest,
    ) -> Handled<AlterUserScramCredentialsResponse> {
        let mut count: HashMap<String, usize> = HashMap::new();
        for name in request
            .deletions
            .iter()
            .map(|d| &d.name)
            .chain(request.upsertions.iter().map(|u| &u.name))
        {
            *count.entry(name.to_string()).or_default() += 1;
        }
        let mut users = Vec::new();
        let mut changes = Vec::new();
        for deletion in &request.deletions {
            users.push(deletion.name.to_string());
            changes.push(CredentialChange::Delete {
                user: deletion.name.to_string(),
                mechanism: ScramMechanism::from_type_id(deletion.mechanism),
            });
        }
        for upsertion in &request.upsertions {
            let mechanism = ScramMechanism::from_type_id(upsertion.mechanism);
            let iterations = u32::try_from(upsertion.iterations).unwrap_or(0);
            let credential = match mechanism {
                Some(m) => ScramCredential::from_salted_password(
                    m,
                    &upsertion.salted_password,
                    upsertion.salt.to_vec(),
                    iterations,
                ),
                None => ScramCredential {
                    salt: Vec::new(),
                    stored_key: Vec::new(),
                    server_key: Vec::new(),
                    iterations,
                },
            };
            users.push(upsertion.name.to_string());
            changes.push(CredentialChange::Upsert {
                user: upsertion.name.to_string(),
                mechanism,
                iterations: upsertion.iterations,
                credential,
            });
        }
        // A user named twice is refused entirely (each mention answered once).
        let (mut kept_users, mut kept_changes) = (Vec::new(), Vec::new());
        let mut results = Vec::new();
        let mut reported = std::collections::HashSet::new();
        for (user, change) in users.into_iter().zip(changes) {
            if count.get(&user).copied().unwrap_or(0) > 1 {
                if reported.insert(user.clone()) {
                    results.push(
                        AlterUserScramCredentialsResult::default()
                            .with_user(str_bytes(&user))
                            .with_error_code(code(KafkaError::DuplicateResource))
                            .with_error_message(Some(str_bytes(
                                "A user credential cannot be altered twice in the same request",
                            ))),
                    );
                }
                continue;
            }
            kept_users.push(user);
            kept_changes.push(change);
        }
        let outcomes = match broker.credentials.apply(&kept_changes) {
            Ok(outcomes) => outcomes,
            Err(err) => {
                error!("{err}");
                vec![Err(ChangeError::Unacceptable(err.to_string())); kept_changes.len()]
            }
        };
        for (user, outcome) in kept_users.iter().zip(outcomes) {
            let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(user));
            let (error, message) = match outcome {
                Ok(()) => {
                    results.push(result);
                    continue;
                }
                Err(ChangeError::UnknownMechanism) => (
                    KafkaError::UnsupportedSaslMechanism,
                    "Unknown SCRAM mechanism".to_string(),
                ),
                Err(ChangeError::Unacceptable(message)) => {
                    (KafkaError::UnacceptableCredential, message)
                }
                Err(ChangeError::NotFound(message)) => (KafkaError::ResourceNotFound, message),
                Err(ChangeError::TooMany) => (
                    KafkaError::UnacceptableCredential,
                    "Too many users: the credential store is full".to_string(),
                ),
            };
            results.push(
                result
                    .with_error_code(code(error))
                    .with_error_message(Some(str_bytes(&message))),
            );
        }
        Handled::Now(AlterUserScramCredentialsResponse::default().with_results(results))
    }
}
