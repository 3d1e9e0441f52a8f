//! Issue 17: listeners with TLS and SASL, with real clients. librdkafka (the rdkafka crate,
//! built with OpenSSL) produces and consumes over SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256
//! and SCRAM-SHA-512, over SSL with a client certificate (mTLS) and over SASL_SSL;
//! kafka-python over SASL_SSL with SCRAM; Ferry's own tools with `--command-config`.
//! Authentication failures get Kafka's errors and nothing is served; hostile bytes on the
//! secured listeners leave the broker serving others. Certificates are generated here
//! (rcgen), never committed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto_kafka::messages::*;
use proto_kafka::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::support::Broker;

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";

fn ferry(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ferry");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn sasl_client(
    address: &str,
    protocol: &str,
    mechanism: &str,
    user: &str,
    password: &str,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", address)
        .set("security.protocol", protocol)
        .set("sasl.mechanism", mechanism)
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("message.timeout.ms", "20000")
        .set("socket.timeout.ms", "10000");
    config
}

/// Produces `count` records to partition 0 of `topic` and reads them back from the start
/// of what was produced, with clients built from `config`.
async fn round_trip(config: &ClientConfig, topic: &str, count: usize) {
    let producer: FutureProducer = config.create().expect("producer");
    let mut first = None;
    for i in 0..count {
        let value = format!("{topic}-{i}");
        let delivered = producer
            .send(
                FutureRecord::to(topic)
                    .partition(0)
                    .key("k")
                    .payload(&value),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
        first.get_or_insert(delivered.offset);
    }
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(first.unwrap_or(0)))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut read = Vec::new();
    while read.len() < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap_or_else(|e| panic!("consume {topic}: {e}"));
            read.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    let expected: Vec<String> = (0..count).map(|i| format!("{topic}-{i}")).collect();
    assert_eq!(read, expected, "records read back over {topic}");
}

/// The port the broker advertises to a client built from `config` (Metadata).
fn advertised_port(config: &ClientConfig) -> Result<u16, String> {
    let consumer: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    Ok(metadata.brokers()[0].port() as u16)
}

fn port_of(address: &str) -> u16 {
    address.rsplit(':').next().unwrap().parse().unwrap()
}

fn write_properties(dir: &Path, name: &str, lines: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_plaintext_with_librdkafka_and_ferry_users() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("bootstrap-users");
    std::fs::write(&users, format!("{ADMIN}:{ADMIN_PASSWORD}\n")).unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[
            "--override",
            "listeners=PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "--override",
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "--override",
            &format!("ferry.sasl.bootstrap.users.file={}", users.display()),
        ],
    );
    let plain_address = broker.listeners["PLAINTEXT"].clone();
    let sasl_address = broker.listeners["SASL_PLAINTEXT"].clone();
    broker.create_topic("sasl", 1, &[]).await;

    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let config = sasl_client(
            &sasl_address,
            "SASL_PLAINTEXT",
            mechanism,
            ADMIN,
            ADMIN_PASSWORD,
        );
        round_trip(&config, "sasl", 5).await;
    }

    // Each listener advertises its own address.
    let admin = sasl_client(
        &sasl_address,
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        ADMIN,
        ADMIN_PASSWORD,
    );
    assert_eq!(advertised_port(&admin), Ok(port_of(&sasl_address)));
    let mut plain = ClientConfig::new();
    plain.set("bootstrap.servers", &plain_address);
    assert_eq!(advertised_port(&plain), Ok(port_of(&plain_address)));

    // A wrong password and an unknown user are refused with Kafka's message.
    for (user, password) in [(ADMIN, "wrong"), ("nobody", "x")] {
        let config = sasl_client(
            &sasl_address,
            "SASL_PLAINTEXT",
            "SCRAM-SHA-256",
            user,
            password,
        )
        .set("socket.timeout.ms", "3000")
        .clone();
        let err = advertised_port(&config).unwrap_err();
        assert!(!err.is_empty(), "{user} must not get metadata");
    }

    // ferry users: create bob over SASL with the admin's login, log in as bob, delete him.
    let admin_props = write_properties(
        dir.path(),
        "admin.properties",
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            (
                "sasl.jaas.config",
                &format!(
                    "org.apache.kafka.common.security.scram.ScramLoginModule required \
                     username=\"{ADMIN}\" password=\"{ADMIN_PASSWORD}\";"
                ),
            ),
        ],
    );
    let admin_props = admin_props.to_str().unwrap();
    let (ok, stdout, stderr) = ferry(
        &[
            "users",
            "set-password",
            "bob",
            "--bootstrap",
            &sasl_address,
            "--command-config",
            admin_props,
        ],
        Some("bob-password\n"),
    );
    assert!(ok, "set-password: {stdout}{stderr}");
    let (ok, stdout, stderr) = ferry(
        &[
            "users",
            "list",
            "--output",
            "json",
            "--bootstrap",
            &sasl_address,
            "--command-config",
            admin_props,
        ],
        None,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("\"bob\"")
            && stdout.contains("SCRAM-SHA-256")
            && stdout.contains("SCRAM-SHA-512"),
        "{stdout}"
    );
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let bob = sasl_client(
            &sasl_address,
            "SASL_PLAINTEXT",
            mechanism,
            "bob",
            "bob-password",
        );
        round_trip(&bob, "sasl", 2).await;
    }
    let (ok, stdout, stderr) = ferry(
        &[
            "users",
            "delete",
            "bob",
            "--bootstrap",
            &sasl_address,
            "--command-config",
            admin_props,
        ],
        None,
    );
    assert!(ok, "delete: {stdout}{stderr}");
    let bob = sasl_client(
        &sasl_address,
        "SASL_PLAINTEXT",
        "SCRAM-SHA-256",
        "bob",
        "bob-password",
    )
    .set("socket.timeout.ms", "3000")
    .clone();
    assert!(
        advertised_port(&bob).is_err(),
        "a deleted user cannot log in"
    );
    // Deleting again reports Kafka's RESOURCE_NOT_FOUND and exits non-zero.
    let (ok, stdout, _) = ferry(
        &[
            "users",
            "delete",
            "bob",
            "--bootstrap",
            &sasl_address,
            "--command-config",
            admin_props,
        ],
        None,
    );
    assert!(!ok && stdout.contains("ResourceNotFound"), "{stdout}");
    // Without a login the SASL listener serves nothing to Ferry's tools either.
    let (ok, _, stderr) = ferry(&["users", "list", "--bootstrap", &sasl_address], None);
    assert!(!ok, "{stderr}");
    assert!(
        !broker
            .drain_log()
            .iter()
            .any(|l| l.contains("no users yet")),
        "no warning when users exist"
    );

    // A new broker with a password listener and no users says so at startup.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = Broker::start(
        empty_dir.path(),
        &[
            "--override",
            "listeners=SASL_PLAINTEXT://127.0.0.1:0",
            "--override",
            "sasl.enabled.mechanisms=SCRAM-SHA-256",
        ],
    );
    assert!(
        empty.drain_log().iter().any(|l| l.contains("no users yet")),
        "a SASL listener without users is pointed out"
    );
}

// ---- The wire, byte by byte ----

fn encode<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &T) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")));
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, api.request_header_version(version))
        .unwrap();
    body.encode(&mut frame, version).unwrap();
    let mut out = (frame.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    out
}

/// Reads one response frame; `None` when the broker closed the connection.
fn read_response(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).ok()?;
    Some(Bytes::from(body))
}

fn decode<T: Decodable>(api: ApiKey, version: i16, mut frame: Bytes) -> T {
    ResponseHeader::decode(&mut frame, api.response_header_version(version)).unwrap();
    T::decode(&mut frame, version).unwrap()
}

/// Whether the broker closed the connection (end of stream) within a few seconds, after
/// at most a few bytes (a TLS alert).
fn closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let mut buffer = [0u8; 64];
    let mut received = 0;
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(n) if received + n <= 64 => received += n,
            Ok(_) => return false,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

fn connect(address: &str) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

fn handshake(stream: &mut TcpStream, mechanism: &str) -> SaslHandshakeResponse {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()));
    stream
        .write_all(&encode(ApiKey::SaslHandshake, 1, 1, &request))
        .unwrap();
    decode(
        ApiKey::SaslHandshake,
        1,
        read_response(stream).expect("handshake answer"),
    )
}

fn authenticate(stream: &mut TcpStream, token: &[u8]) -> Option<SaslAuthenticateResponse> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
    stream
        .write_all(&encode(ApiKey::SaslAuthenticate, 2, 2, &request))
        .unwrap();
    read_response(stream).map(|frame| decode(ApiKey::SaslAuthenticate, 2, frame))
}

fn metadata_request() -> Vec<u8> {
    encode(
        ApiKey::Metadata,
        9,
        3,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
}

#[test]
fn authentication_failures_get_kafkas_errors_and_nothing_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("bootstrap-users");
    std::fs::write(&users, format!("{ADMIN}:{ADMIN_PASSWORD}\n")).unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[
            "--override",
            "listeners=SASL_PLAINTEXT://127.0.0.1:0",
            "--override",
            "sasl.enabled.mechanisms=PLAIN",
            "--override",
            "connections.max.reauth.ms=1500",
            "--override",
            &format!("ferry.sasl.bootstrap.users.file={}", users.display()),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let address = broker.listeners["SASL_PLAINTEXT"].clone();
    let metrics = crate::metrics::metrics_address(&broker);

    // A request before the handshake: the connection closes without an answer.
    let mut stream = connect(&address);
    stream.write_all(&metadata_request()).unwrap();
    assert!(
        read_response(&mut stream).is_none(),
        "nothing is served before authentication"
    );

    // A mechanism the listener does not enable: UNSUPPORTED_SASL_MECHANISM with the list.
    let mut stream = connect(&address);
    let answer = handshake(&mut stream, "SCRAM-SHA-512");
    assert_eq!(answer.error_code, 33);
    assert_eq!(answer.mechanisms, vec![StrBytes::from_static_str("PLAIN")]);
    assert!(closed(&mut stream));

    // A wrong password: SASL_AUTHENTICATION_FAILED with Kafka's message, then closed.
    let mut stream = connect(&address);
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let answer = authenticate(&mut stream, format!("\0{ADMIN}\0wrong").as_bytes()).unwrap();
    assert_eq!(answer.error_code, 58);
    assert_eq!(
        answer.error_message.as_deref(),
        Some("Authentication failed: Invalid username or password")
    );
    assert!(closed(&mut stream));

    // A token larger than sasl.server.max.receive.size closes the connection unread.
    let mut stream = connect(&address);
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let huge = vec![b'x'; 600 * 1024];
    let _ = stream.write_all(&encode(
        ApiKey::SaslAuthenticate,
        2,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(huge)),
    ));
    assert!(read_response(&mut stream).is_none());

    // The right password: the session lasts connections.max.reauth.ms; once it expired,
    // a request without re-authentication closes the connection.
    let mut stream = connect(&address);
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let answer = authenticate(
        &mut stream,
        format!("\0{ADMIN}\0{ADMIN_PASSWORD}").as_bytes(),
    )
    .unwrap();
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.session_lifetime_ms, 1500);
    stream.write_all(&metadata_request()).unwrap();
    let metadata: MetadataResponse =
        decode(ApiKey::Metadata, 9, read_response(&mut stream).unwrap());
    assert_eq!(metadata.brokers.len(), 1);
    // Re-authentication within the session keeps the connection serving.
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let again = authenticate(
        &mut stream,
        format!("\0{ADMIN}\0{ADMIN_PASSWORD}").as_bytes(),
    )
    .unwrap();
    assert_eq!(again.error_code, 0);
    std::thread::sleep(Duration::from_millis(1_800));
    stream.write_all(&metadata_request()).unwrap();
    assert!(
        read_response(&mut stream).is_none(),
        "an expired session is closed"
    );

    // Operators see the logins: two good ones (the second a re-authentication), one
    // wrong password.
    let scrape = crate::metrics::exchange(&metrics, b"GET /metrics HTTP/1.1\r\nHost: f\r\n\r\n");
    for line in [
        "ferry_successful_authentications_total 2",
        "ferry_failed_authentications_total 1",
    ] {
        assert!(scrape.lines().any(|l| l == line), "{line} in\n{scrape}");
    }

    // SaslAuthenticate after a completed login is ILLEGAL_SASL_STATE on a listener
    // without re-authentication: a PLAINTEXT broker answers it so.
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = Broker::start(plain_dir.path(), &[]);
    let mut stream = connect(&plain.bootstrap);
    let answer = authenticate(&mut stream, b"\0a\0b").unwrap();
    assert_eq!(answer.error_code, 34);

    // librdkafka re-authenticates by itself and keeps producing past the session length.
    let config = sasl_client(&address, "SASL_PLAINTEXT", "PLAIN", ADMIN, ADMIN_PASSWORD);
    let producer: FutureProducer = config.create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for i in 0..8 {
            producer
                .send(
                    FutureRecord::to("reauth").key("k").payload(&format!("{i}")),
                    Duration::from_secs(20),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("produce {i}: {e}"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

// ---- TLS ----

struct Certificates {
    ca: String,
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
}

impl Certificates {
    fn new() -> Certificates {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Ferry test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca_cert = params.self_signed(&ca_key).unwrap();
        Certificates {
            ca: ca_cert.pem(),
            ca_cert,
            ca_key,
        }
    }

    /// A certificate signed by the CA: (certificate PEM, key PEM).
    fn issue(&self, names: &[&str], common_name: &str) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The certificate a TLS client is shown at `address` (DER), trusting `ca_pem`.
fn served_certificate(address: &str, ca_pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let mut socket = connect(address);
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).unwrap();
    }
    connection.peer_certificates().unwrap()[0].to_vec()
}

fn tls_client(address: &str, protocol: &str, files: &Path) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", address)
        .set("security.protocol", protocol)
        .set("ssl.ca.location", files.join("ca.pem").to_str().unwrap())
        .set("message.timeout.ms", "20000")
        .set("socket.timeout.ms", "10000");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_with_mtls_sasl_ssl_kafka_python_and_certificate_reload() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path();
    let certificates = Certificates::new();
    let (server_cert, server_key) = certificates.issue(&["127.0.0.1", "localhost"], "broker");
    let (client_cert, client_key) = certificates.issue(&["client"], "alice");
    std::fs::write(files.join("ca.pem"), &certificates.ca).unwrap();
    std::fs::write(
        files.join("broker.pem"),
        format!("{server_cert}{server_key}"),
    )
    .unwrap();
    std::fs::write(files.join("client.crt"), &client_cert).unwrap();
    std::fs::write(files.join("client.key"), &client_key).unwrap();
    let users = files.join("bootstrap-users");
    std::fs::write(&users, format!("{ADMIN}:{ADMIN_PASSWORD}\n")).unwrap();
    let keystore = files.join("broker.pem");
    let broker = Broker::start(
        &files.join("data"),
        &[
            "--override",
            "listeners=SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
            "--override",
            "ssl.keystore.type=PEM",
            "--override",
            &format!("ssl.keystore.location={}", keystore.display()),
            "--override",
            &format!("ssl.truststore.location={}", files.join("ca.pem").display()),
            "--override",
            "ssl.client.auth=required",
            "--override",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "--override",
            &format!("ferry.sasl.bootstrap.users.file={}", users.display()),
        ],
    );
    let ssl = broker.listeners["SSL"].clone();
    let sasl_ssl = broker.listeners["SASL_SSL"].clone();

    // mTLS: with the client certificate librdkafka produces and consumes...
    let mut mtls = tls_client(&ssl, "SSL", files);
    mtls.set(
        "ssl.certificate.location",
        files.join("client.crt").to_str().unwrap(),
    )
    .set(
        "ssl.key.location",
        files.join("client.key").to_str().unwrap(),
    );
    let admin_client: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        mtls.create().unwrap();
    admin_client
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "tls",
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    round_trip(&mtls, "tls", 5).await;
    // ...and without one it gets nothing.
    let anonymous = tls_client(&ssl, "SSL", files)
        .set("socket.timeout.ms", "3000")
        .clone();
    assert!(
        advertised_port(&anonymous).is_err(),
        "mTLS requires a client certificate"
    );

    // SASL_SSL with SCRAM-SHA-512 (ssl.client.auth does not apply: it is not listener-prefixed).
    let mut scram = tls_client(&sasl_ssl, "SASL_SSL", files);
    scram
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", ADMIN)
        .set("sasl.password", ADMIN_PASSWORD);
    round_trip(&scram, "tls", 5).await;
    assert_eq!(advertised_port(&scram), Ok(port_of(&sasl_ssl)));

    // kafka-python over SASL_SSL with SCRAM.
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/kafka_python_sasl_ssl.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg(&sasl_ssl)
        .arg(files.join("ca.pem"))
        .arg(ADMIN)
        .arg(ADMIN_PASSWORD)
        .output()
        .expect("run python3 (pip install -r tests/requirements.txt)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("OK"),
        "kafka-python over SASL_SSL failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // Ferry's own tools over SASL_SSL with --command-config.
    let props = write_properties(
        files,
        "client.properties",
        &[
            ("security.protocol", "SASL_SSL"),
            (
                "ssl.truststore.location",
                files.join("ca.pem").to_str().unwrap(),
            ),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", ADMIN),
            ("sasl.password", ADMIN_PASSWORD),
        ],
    );
    let (ok, stdout, stderr) = ferry(
        &[
            "topics",
            "list",
            "--bootstrap",
            &sasl_ssl,
            "--command-config",
            props.to_str().unwrap(),
        ],
        None,
    );
    assert!(ok && stdout.contains("tls"), "{stdout}{stderr}");

    // Hostile bytes: garbage instead of a ClientHello, and handshakes left half done, while
    // a real client keeps being served.
    let mut garbage = connect(&ssl);
    garbage.write_all(&[0x42; 4096]).unwrap();
    assert!(
        closed(&mut garbage),
        "garbage instead of TLS closes the connection"
    );
    let stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = connect(&sasl_ssl);
            // The first bytes of a TLS record header, then nothing.
            s.write_all(&[0x16, 0x03, 0x01]).unwrap();
            s
        })
        .collect();
    round_trip(&scram, "tls", 2).await;
    let waited = Instant::now();
    for mut stream in stalled {
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(
            !matches!(stream.read(&mut byte), Ok(n) if n > 0),
            "a stalled handshake gets no data"
        );
    }
    assert!(
        waited.elapsed() < Duration::from_secs(15),
        "stalled handshakes are dropped"
    );

    // Certificate rotation: a new certificate in the keystore file is served to new
    // connections without a restart.
    let before = served_certificate(&ssl, &certificates.ca);
    let (new_cert, new_key) = certificates.issue(&["127.0.0.1", "localhost"], "broker-rotated");
    let staged = files.join("broker.pem.new");
    std::fs::write(&staged, format!("{new_cert}{new_key}")).unwrap();
    std::fs::rename(&staged, &keystore).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut now_served = before.clone();
    while now_served == before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        now_served = served_certificate(&ssl, &certificates.ca);
    }
    use rustls_pki_types::pem::PemObject;
    let expected = rustls_pki_types::CertificateDer::from_pem_slice(new_cert.as_bytes()).unwrap();
    assert_eq!(
        now_served,
        expected.to_vec(),
        "the rotated certificate is served"
    );
    round_trip(&mtls, "tls", 2).await;
}

// ---- OAUTHBEARER ----

/// An ES256 key: its JWKS entry and the key that signs tokens.
fn es256_key(kid: &str) -> (serde_json::Value, jsonwebtoken::EncodingKey) {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = rcgen::KeyPair::generate().unwrap();
    let point = key.public_key_raw();
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
        "x": b64.encode(&point[1..33]), "y": b64.encode(&point[33..65]),
    });
    let signing = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap();
    (jwk, signing)
}

fn signed_token(key: &jsonwebtoken::EncodingKey, subject: &str, lifetime_s: u64) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + lifetime_s;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("k1".into());
    let claims = serde_json::json!({ "sub": subject, "exp": exp, "aud": "ferry" });
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn bearer(token: &str) -> Vec<u8> {
    format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauthbearer_unsigned_for_development_and_signed_against_a_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let (jwk, key) = es256_key("k1");
    let (_, stranger) = es256_key("k1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [jwk] }).to_string()).unwrap();
    let broker = Broker::start(
        &dir.path().join("data"),
        &[
            "--override",
            "listeners=DEV://127.0.0.1:0,SIGNED://127.0.0.1:0",
            "--override",
            "listener.security.protocol.map=DEV:SASL_PLAINTEXT,SIGNED:SASL_PLAINTEXT",
            "--override",
            "sasl.enabled.mechanisms=OAUTHBEARER",
            "--override",
            "ferry.sasl.oauthbearer.unsecured.enable=true",
            "--override",
            &format!(
                "listener.name.signed.oauthbearer.sasl.oauthbearer.jwks.endpoint.url=file://{}",
                jwks.display()
            ),
            "--override",
            "listener.name.signed.oauthbearer.sasl.oauthbearer.expected.audience=ferry",
        ],
    );
    let dev = broker.listeners["DEV"].clone();
    let signed = broker.listeners["SIGNED"].clone();

    // librdkafka's built-in unsecured tokens, on the listener that allows them.
    let mut unsecured = ClientConfig::new();
    unsecured
        .set("bootstrap.servers", &dev)
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "OAUTHBEARER")
        .set("enable.sasl.oauthbearer.unsecure.jwt", "true")
        .set("sasl.oauthbearer.config", "principal=alice")
        .set("message.timeout.ms", "20000");
    round_trip(&unsecured, "oauth", 3).await;
    // The same unsigned tokens on the listener that checks signatures get nothing.
    let refused = unsecured
        .clone()
        .set("bootstrap.servers", &signed)
        .set("socket.timeout.ms", "3000")
        .clone();
    assert!(advertised_port(&refused).is_err());

    // A token signed with the JWKS's key: the session lasts until the token expires.
    let mut stream = connect(&signed);
    assert_eq!(handshake(&mut stream, "OAUTHBEARER").error_code, 0);
    let answer =
        authenticate(&mut stream, &bearer(&signed_token(&key, "svc-orders", 600))).unwrap();
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    assert!(
        (590_000..=600_000).contains(&answer.session_lifetime_ms),
        "{}",
        answer.session_lifetime_ms
    );
    stream.write_all(&metadata_request()).unwrap();
    assert!(read_response(&mut stream).is_some());

    // Another key's token: the JSON error challenge, the client's \x01, then
    // SASL_AUTHENTICATION_FAILED and the connection closes.
    let mut stream = connect(&signed);
    assert_eq!(handshake(&mut stream, "OAUTHBEARER").error_code, 0);
    let challenge = authenticate(
        &mut stream,
        &bearer(&signed_token(&stranger, "mallory", 600)),
    )
    .unwrap();
    assert_eq!(challenge.error_code, 0);
    assert_eq!(&challenge.auth_bytes[..], br#"{"status":"invalid_token"}"#);
    let answer = authenticate(&mut stream, b"\x01").unwrap();
    assert_eq!(answer.error_code, 58);
    assert!(closed(&mut stream));
}

// ---- Migration from a secured source ----

/// A mirror link logs in to its source with the same client properties Ferry's tools
/// take: SCRAM over SASL_PLAINTEXT here. The mirror copies the records at their offsets
/// and `ferry mirror verify` reads the source with `--source-command-config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_link_logs_in_to_a_secured_source() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("bootstrap-users");
    std::fs::write(&users, "mirror:mirror-secret\n").unwrap();
    let source = Broker::start(
        &dir.path().join("source"),
        &[
            "--override",
            "listeners=SASL_PLAINTEXT://127.0.0.1:0",
            "--override",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "--override",
            &format!("ferry.sasl.bootstrap.users.file={}", users.display()),
        ],
    );
    let source_address = source.listeners["SASL_PLAINTEXT"].clone();
    let login = sasl_client(
        &source_address,
        "SASL_PLAINTEXT",
        "SCRAM-SHA-512",
        "mirror",
        "mirror-secret",
    );
    round_trip(&login, "secured", 5).await;

    let props = write_properties(
        dir.path(),
        "source.properties",
        &[
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "mirror"),
            ("sasl.password", "mirror-secret"),
        ],
    );
    let props = props.to_str().unwrap();
    let mirror = Broker::start(&dir.path().join("mirror"), &[]);
    let on_mirror = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--bootstrap", mirror.bootstrap.as_str()]);
        ferry(&all, None)
    };
    let (ok, _, err) = on_mirror(&[
        "mirror",
        "create",
        "east",
        "--source",
        &source_address,
        "--source-config",
        props,
    ]);
    assert!(ok, "create: {err}");
    let (ok, _, err) = on_mirror(&["mirror", "add", "east", "--topics", "secured"]);
    assert!(ok, "add: {err}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = on_mirror(&["mirror", "status", "east", "--output", "json"]);
        let status: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let end =
            status["links"][0]["topics"][0]["partitions"][0]["mirrored_log_end_offset"].as_i64();
        if end == Some(5) {
            break;
        }
        assert!(Instant::now() < deadline, "not mirrored: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, out, err) = on_mirror(&[
        "mirror",
        "verify",
        "east",
        "--topic",
        "secured",
        "--source-command-config",
        props,
    ]);
    assert!(ok, "verify: {out}{err}");
    // Without the login the source serves nothing to verify.
    let (ok, _, _) = on_mirror(&["mirror", "verify", "east", "--topic", "secured"]);
    assert!(!ok, "verify without the source's login must fail");
}
