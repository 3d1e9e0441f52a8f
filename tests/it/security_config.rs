//! Issue 17's first promise: a configuration that asks for TLS, SASL or an authorizer stops
//! startup with the key named, instead of an open PLAINTEXT broker that only warns.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `ferry serve` with a server.properties holding `properties`; returns its exit code
/// and stderr, or panics if it is still running (serving) after ten seconds.
fn serve_with(properties: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.properties");
    std::fs::write(&config, properties).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferry serve started with:\n{properties}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code().unwrap_or(-1), stderr)
}

#[test]
fn a_secured_configuration_stops_startup_naming_the_key() {
    // The example: a SASL_SSL listener next to a PLAINTEXT one, with a keystore,
    // mechanisms, an authorizer and super users.
    let secured = "\
listeners=PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0
ssl.keystore.type=PEM
ssl.keystore.location=/etc/kafka/broker.pem
sasl.enabled.mechanisms=SCRAM-SHA-512
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:admin
";
    let (code, stderr) = serve_with(secured);
    assert_eq!(code, 2, "{stderr}");
    // Keys are checked in name order: the first that asks for security is named.
    assert!(stderr.contains("authorizer.class.name"), "{stderr}");
    // A TLS listener without a certificate names the missing key and the listener.
    let (code, stderr) = serve_with("listeners=PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0\n");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("ssl.keystore.location") && stderr.contains("SASL_SSL"),
        "{stderr}"
    );
    for key in [
        "sasl.enabled.mechanisms",
        "ssl.keystore.location",
        "super.users",
    ] {
        let (code, stderr) = serve_with(&format!("listeners=PLAINTEXT://127.0.0.1:0\n{key}=x\n"));
        assert_eq!(code, 2, "{key}: {stderr}");
        assert!(stderr.contains(key), "{key}: {stderr}");
    }
}
