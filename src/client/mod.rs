//! A small Kafka protocol client for Ferry's own tools (`ferry groups`, and later the
//! mirror): talks to any Kafka-protocol cluster, Ferry or Apache Kafka. It negotiates
//! versions with ApiVersions, learns the brokers from Metadata and routes group requests to
//! the group's coordinator and partition requests to each partition's leader.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use proto_kafka::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use proto_kafka::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

pub mod security;

pub use security::ClientSecurity;

/// A connection's byte stream: plain TCP or TLS.
trait ClientStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> ClientStream for T {}

/// How connections are made: the request timeout and the security settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub request_timeout: Duration,
    pub security: Arc<ClientSecurity>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            request_timeout: REQUEST_TIMEOUT,
            security: Arc::new(ClientSecurity::default()),
        }
    }
}

/// Largest response this client accepts (`max.response.bytes`).
pub const MAX_RESPONSE_BYTES: usize = 100 << 20;
/// How long one request may take before the client gives up, unless told otherwise
/// (`request.timeout.ms` of a mirror link's source properties).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What went wrong talking to the cluster.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    Io {
        address: String,
        source: std::io::Error,
    },
    /// The broker does not support any version of an API this client can speak.
    Unsupported {
        api: ApiKey,
    },
    /// A response could not be decoded or did not match its request.
    Protocol(String),
    /// The broker answered with an error code.
    Kafka {
        context: String,
        code: i16,
    },
    Timeout {
        address: String,
    },
    /// What was asked cannot be done in the cluster's current state (the reason says why
    /// and what to do).
    Refused(String),
    /// What was asked about does not exist.
    NotFound(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io { address, source } => write!(f, "{address}: {source}"),
            ClientError::Unsupported { api } => {
                write!(
                    f,
                    "the broker supports no version of {api:?} that this tool speaks"
                )
            }
            ClientError::Protocol(reason) => write!(f, "protocol error: {reason}"),
            ClientError::Kafka { context, code } => {
                let name = proto_kafka::ResponseError::try_from_code(*code)
                    .map_or_else(|| "NONE".to_string(), |e| e.to_string());
                write!(f, "{context}: error {code} ({name})")
            }
            ClientError::Timeout { address } => write!(f, "{address}: request timed out"),
            ClientError::Refused(reason) | ClientError::NotFound(reason) => write!(f, "{reason}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Returns an error for a non-zero Kafka error code.
pub fn check(code: i16, context: impl FnOnce() -> String) -> Result<(), ClientError> {
    if code == 0 {
        Ok(())
    } else {
        Err(ClientError::Kafka {
            context: context(),
            code,
        })
    }
}

/// One connection to one broker.
pub struct Connection {
    address: String,
    stream: Box<dyn ClientStream>,
    next_correlation_id: i32,
    /// api key -> (min, max) the broker supports.
    versions: HashMap<i16, (i16, i16)>,
    client_id: String,
    request_timeout: Duration,
}

impl Connection {
    /// Connects and negotiates API versions.
    pub async fn connect(address: &str, client_id: &str) -> Result<Connection, ClientError> {
        Connection::connect_with_timeout(address, client_id, REQUEST_TIMEOUT).await
    }

    /// Connects with `request_timeout` for the connection and every request.
    pub async fn connect_with_timeout(
        address: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let options = ClientOptions {
            request_timeout,
            ..ClientOptions::default()
        };
        Connection::connect_with(address, client_id, &options).await
    }

    /// Connects (TLS if configured), negotiates API versions and logs in (SASL if
    /// configured).
    pub async fn connect_with(
        address: &str,
        client_id: &str,
        options: &ClientOptions,
    ) -> Result<Connection, ClientError> {
        let request_timeout = options.request_timeout;
        let io = |source| ClientError::Io {
            address: address.to_string(),
            source,
        };
        let timed_out = || ClientError::Timeout {
            address: address.to_string(),
        };
        let tcp = tokio::time::timeout(request_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| timed_out())?
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let stream: Box<dyn ClientStream> = match &options.security.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = options
                    .security
                    .server_name(address)
                    .map_err(ClientError::Refused)?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
                let stream = tokio::time::timeout(request_timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(|e| {
                        ClientError::Refused(format!("{address}: TLS handshake failed: {e}"))
                    })?;
                Box::new(stream)
            }
        };
        let mut connection = Connection {
            address: address.to_string(),
            stream,
            next_correlation_id: 1,
            versions: HashMap::new(),
            client_id: client_id.to_string(),
            request_timeout,
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("ferry"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response: ApiVersionsResponse = connection
            .call_version(ApiKey::ApiVersions, 3, &request)
            .await?;
        check(response.error_code, || {
            format!("ApiVersions from {address}")
        })?;
        connection.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        if let Some(login) = &options.security.sasl {
            connection.login(login).await?;
        }
        Ok(connection)
    }

    /// Sends one SASL token in a SaslAuthenticate request; returns the broker's token.
    async fn sasl_token(&mut self, version: i16, token: Vec<u8>) -> Result<Bytes, ClientError> {
        use proto_kafka::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let response: SaslAuthenticateResponse = self
            .call_version(ApiKey::SaslAuthenticate, version, &request)
            .await?;
        if response.error_code != 0 {
            let message = response
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            return Err(ClientError::Refused(format!(
                "{}: SASL authentication failed: {message}",
                self.address
            )));
        }
        Ok(response.auth_bytes)
    }

    /// SaslHandshake v1 and SaslAuthenticate exchanges for `login`.
    async fn login(&mut self, login: &security::SaslLogin) -> Result<(), ClientError> {
        use crate::config::listeners::SaslMechanism;
        use crate::security::scram::{ScramClient, ScramMechanism};
        use proto_kafka::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
        let address = self.address.clone();
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(login.mechanism.name()));
        let response: SaslHandshakeResponse = self
            .call_version(ApiKey::SaslHandshake, 1, &handshake)
            .await?;
        check(response.error_code, || {
            format!(
                "SASL mechanism {} at {address} (enabled there: {})",
                login.mechanism.name(),
                response
                    .mechanisms
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        let version = self.version(ApiKey::SaslAuthenticate, 2)?;
        let scram =
            match login.mechanism {
                SaslMechanism::Plain => {
                    let token = format!("\0{}\0{}", login.username, login.password);
                    self.sasl_token(version, token.into_bytes()).await?;
                    return Ok(());
                }
                SaslMechanism::ScramSha256 => ScramMechanism::Sha256,
                SaslMechanism::ScramSha512 => ScramMechanism::Sha512,
                SaslMechanism::OAuthBearer => return Err(ClientError::Refused(
                    "Ferry's tools log in with PLAIN or SCRAM; OAUTHBEARER is served to clients \
                     but not spoken by Ferry's own client"
                        .to_string(),
                )),
            };
        let refused = |what: String| ClientError::Refused(format!("{address}: {what}"));
        let mut client = ScramClient::new(scram, &login.username, &login.password)
            .map_err(|e| refused(e.message))?;
        let server_first = self.sasl_token(version, client.first_message()).await?;
        let last = client
            .final_message(&server_first)
            .map_err(|e| refused(e.message))?;
        let server_final = self.sasl_token(version, last).await?;
        client
            .verify_server_final(&server_final)
            .map_err(|e| refused(e.message))
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The highest version of `api` both sides support, up to `max`.
    pub fn version(&self, api: ApiKey, max: i16) -> Result<i16, ClientError> {
        let (broker_min, broker_max) = self
            .versions
            .get(&(api as i16))
            .copied()
            .ok_or(ClientError::Unsupported { api })?;
        let codec = api.valid_versions();
        let version = broker_max.min(max).min(codec.max);
        if version < broker_min.max(codec.min) {
            return Err(ClientError::Unsupported { api });
        }
        Ok(version)
    }

    /// Sends `request` at the highest version up to `max` and decodes the response.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        max: i16,
        request: &Req,
    ) -> Result<(i16, Resp), ClientError> {
        let version = self.version(api, max)?;
        Ok((version, self.call_version(api, version, request).await?))
    }

    /// Sends `request` without waiting for an answer (Produce with acks=0, which gets none).
    pub async fn send_only<Req: Encodable>(
        &mut self,
        api: ApiKey,
        max: i16,
        request: &Req,
    ) -> Result<(), ClientError> {
        let version = self.version(api, max)?;
        let (frame, _) = self.frame(api, version, request)?;
        let address = self.address.clone();
        tokio::time::timeout(self.request_timeout, self.stream.write_all(&frame))
            .await
            .map_err(|_| ClientError::Timeout {
                address: address.clone(),
            })?
            .map_err(|source| ClientError::Io { address, source })
    }

    /// A request's frame (size prefix, header, body) and its correlation id.
    fn frame<Req: Encodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<(BytesMut, i32), ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let protocol = |e: proto_kafka::ProtoError| ClientError::Protocol(e.to_string());
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api.request_header_version(version))
            .map_err(protocol)?;
        request.encode(&mut body, version).map_err(protocol)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(
            i32::try_from(body.len())
                .map_err(|_| ClientError::Protocol("request too large".into()))?,
        );
        frame.extend_from_slice(&body);
        Ok((frame, correlation_id))
    }

    /// Sends a request of Ferry's own admin API (`protocol::ferry_admin`) and returns its
    /// JSON answer. A Kafka broker closes the connection on it: "not a Ferry broker".
    pub async fn call_ferry_admin(
        &mut self,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let frame =
            crate::protocol::ferry_admin::encode_request(correlation_id, &self.client_id, &json);
        let mut response = self.exchange(&frame).await.map_err(|err| match err {
            ClientError::Io { address, .. } => ClientError::Refused(format!(
                "{address} closed the connection on a Ferry admin request: is it a Ferry broker?"
            )),
            other => other,
        })?;
        if response.remaining() < 4 || response.get_i32() != correlation_id {
            return Err(ClientError::Protocol(
                "the admin answer does not match its request".into(),
            ));
        }
        serde_json::from_slice(&response).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Writes a frame and reads the response frame (without its size prefix).
    async fn exchange(&mut self, frame: &[u8]) -> Result<Bytes, ClientError> {
        let address = self.address.clone();
        let exchange = async {
            self.stream.write_all(frame).await?;
            let size = self.stream.read_i32().await?;
            let size = usize::try_from(size)
                .ok()
                .filter(|s| *s <= MAX_RESPONSE_BYTES)
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("response size {size} out of range"),
                    )
                })?;
            let mut buf = vec![0u8; size];
            self.stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(Bytes::from(buf))
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                address: address.clone(),
            })?
            .map_err(|source| ClientError::Io { address, source })
    }

    async fn call_version<Req: Encodable, Resp: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ClientError> {
        let (frame, correlation_id) = self.frame(api, version, request)?;
        let protocol = |e: proto_kafka::ProtoError| ClientError::Protocol(e.to_string());
        let mut response = self.exchange(&frame).await?;
        let header = ResponseHeader::decode(&mut response, api.response_header_version(version))
            .map_err(protocol)?;
        if header.correlation_id != correlation_id {
            return Err(ClientError::Protocol(format!(
                "response correlation id {} does not match request {correlation_id}",
                header.correlation_id
            )));
        }
        let decoded = Resp::decode(&mut response, version).map_err(protocol)?;
        let _ = response.remaining();
        Ok(decoded)
    }
}

/// A cluster reached through a bootstrap address.
pub struct Cluster {
    client_id: String,
    options: ClientOptions,
    bootstrap: Connection,
    /// node id -> "host:port"
    brokers: HashMap<i32, String>,
    connections: HashMap<i32, Connection>,
}

impl Cluster {
    /// Connects to the bootstrap broker and learns the cluster's brokers.
    pub async fn connect(bootstrap: &str, client_id: &str) -> Result<Cluster, ClientError> {
        Cluster::connect_with_timeout(bootstrap, client_id, REQUEST_TIMEOUT).await
    }

    /// Connects with `request_timeout` for every connection and request.
    pub async fn connect_with_timeout(
        bootstrap: &str,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Cluster, ClientError> {
        let options = ClientOptions {
            request_timeout,
            ..ClientOptions::default()
        };
        Cluster::connect_with(bootstrap, client_id, &options).await
    }

    /// Connects with `options` for every connection (security, request timeout).
    pub async fn connect_with(
        bootstrap: &str,
        client_id: &str,
        options: &ClientOptions,
    ) -> Result<Cluster, ClientError> {
        let connection = Connection::connect_with(bootstrap, client_id, options).await?;
        let mut cluster = Cluster {
            client_id: client_id.to_string(),
            options: options.clone(),
            bootstrap: connection,
            brokers: HashMap::new(),
            connections: HashMap::new(),
        };
        cluster.metadata(Some(Vec::new())).await?;
        Ok(cluster)
    }

    /// Metadata for `topics` (`None` = all); also refreshes the broker list.
    pub async fn metadata(
        &mut self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, ClientError> {
        // Tools look topics up; they never create one (a typo must not become a topic).
        self.metadata_allowing_creation(topics, false).await
    }

    /// Metadata that lets the broker auto-create the topics named, as a producer's does
    /// (`ferry produce`, like Kafka's console producer, works with auto-creation).
    pub async fn metadata_allowing_creation(
        &mut self,
        topics: Option<Vec<String>>,
        allow_auto_topic_creation: bool,
    ) -> Result<MetadataResponse, ClientError> {
        use proto_kafka::messages::metadata_request::MetadataRequestTopic;
        use proto_kafka::messages::TopicName;
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(allow_auto_topic_creation)
            .with_topics(topics.map(|ts| {
                ts.into_iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t))))
                    })
                    .collect()
            }));
        let (_, response): (i16, MetadataResponse) =
            self.bootstrap.call(ApiKey::Metadata, 12, &request).await?;
        self.brokers = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
            .collect();
        Ok(response)
    }

    /// The connection to broker `node_id`.
    pub async fn broker(&mut self, node_id: i32) -> Result<&mut Connection, ClientError> {
        if !self.connections.contains_key(&node_id) {
            let address = self.brokers.get(&node_id).cloned().ok_or_else(|| {
                ClientError::Protocol(format!("broker {node_id} is not in the cluster metadata"))
            })?;
            let connection =
                Connection::connect_with(&address, &self.client_id, &self.options).await?;
            self.connections.insert(node_id, connection);
        }
        Ok(self.connections.get_mut(&node_id).expect("inserted above"))
    }

    /// The connection to the coordinator of `group`.
    pub async fn group_coordinator(&mut self, group: &str) -> Result<&mut Connection, ClientError> {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(group.to_string()))
            .with_coordinator_keys(Vec::new());
        let (_, response): (i16, FindCoordinatorResponse) = self
            .bootstrap
            .call(ApiKey::FindCoordinator, 3, &request)
            .await?;
        check(response.error_code, || {
            format!("FindCoordinator for group {group}")
        })?;
        let node = response.node_id.0;
        self.brokers
            .entry(node)
            .or_insert_with(|| format!("{}:{}", response.host.as_str(), response.port));
        self.broker(node).await
    }
}
