//! A minimal HTTP/1.1 server for `GET /metrics`, on tokio, bounded against any client: a
//! request head of at most [`MAX_HEAD_BYTES`] (431 beyond), read within [`READ_TIMEOUT`]
//! (408 after), at most [`MAX_CONNECTIONS`] at once (more get 503 and are closed), one
//! request per connection (`Connection: close`). `GET /metrics` gets 200 with the rendered
//! text, other paths 404, other methods 405, a request line that is not HTTP/1.x 400.
//! Rendering runs on a blocking thread: it takes the broker's locks, briefly, and must not
//! hold up the runtime's workers, which also serve Kafka clients.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, warn};

/// Largest request head (request line and headers) read.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Longest wait for a whole request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the response to be written.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// What is read and dropped after the response, so that closing a connection whose client
/// sent more than was read does not reset it before the client reads the response.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Produces the `/metrics` body (Prometheus text, version 0.0.4).
pub type Render = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Metrics,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    Timeout,
    HeadTooLarge,
}

impl Answer {
    fn status(self) -> &'static str {
        match self {
            Answer::Metrics => "200 OK",
            Answer::BadRequest => "400 Bad Request",
            Answer::NotFound => "404 Not Found",
            Answer::MethodNotAllowed => "405 Method Not Allowed",
            Answer::Timeout => "408 Request Timeout",
            Answer::HeadTooLarge => "431 Request Header Fields Too Large",
        }
    }
}

/// The answer to a complete request head: only its request line matters.
pub fn route(head: &[u8]) -> Answer {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return Answer::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Answer::BadRequest;
    };
    if method.is_empty() || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Answer::BadRequest;
    }
    if method != "GET" {
        return Answer::MethodNotAllowed;
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path == "/metrics" {
        Answer::Metrics
    } else {
        Answer::NotFound
    }
}

/// How reading a request head ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// The bytes up to and including the blank line.
    Complete(Vec<u8>),
    /// `MAX_HEAD_BYTES` read without the blank line.
    TooLarge,
    /// The client closed (or the read failed) before the head was complete.
    Closed,
}

/// Reads until the blank line that ends a request head, at most `MAX_HEAD_BYTES`.
pub async fn read_head<R: AsyncRead + Unpin>(reader: &mut R) -> Head {
    let mut buffer = vec![0u8; MAX_HEAD_BYTES];
    let mut filled = 0;
    while filled < MAX_HEAD_BYTES {
        match reader.read(&mut buffer[filled..]).await {
            Ok(0) | Err(_) => return Head::Closed,
            Ok(n) => {
                // A terminator may straddle two reads: look from up to 3 bytes back.
                let from = filled.saturating_sub(3);
                filled += n;
                if let Some(end) = head_end(&buffer[from..filled]) {
                    buffer.truncate(from + end);
                    return Head::Complete(buffer);
                }
            }
        }
    }
    Head::TooLarge
}

/// The length of `bytes` up to the end of the first blank line (CRLF or bare LF).
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A complete response, always closing the connection.
fn response(status: &str, content_type: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra_headers}\r\n",
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The response to an answer other than `Metrics`, or to a failed render.
fn error_response(status: &str) -> Vec<u8> {
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let body = format!("{status}\n");
    response(status, "text/plain; charset=utf-8", allow, body.as_bytes())
}

/// The metrics, rendered on a blocking thread.
async fn metrics_response(render: Render) -> Vec<u8> {
    match tokio::task::spawn_blocking(move || render()).await {
        Ok(Ok(text)) => response(Answer::Metrics.status(), CONTENT_TYPE, "", text.as_bytes()),
        Ok(Err(err)) => {
            error!("rendering the metrics failed: {err}");
            error_response("500 Internal Server Error")
        }
        Err(err) => {
            error!("rendering the metrics panicked: {err}");
            error_response("500 Internal Server Error")
        }
    }
}

/// Serves one request on `stream` and closes it.
async fn serve_connection(mut stream: TcpStream, render: Render) {
    let answer = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Err(_) => Answer::Timeout,
        Ok(Head::Closed) => return,
        Ok(Head::TooLarge) => Answer::HeadTooLarge,
        Ok(Head::Complete(head)) => route(&head),
    };
    let bytes = match answer {
        Answer::Metrics => metrics_response(render).await,
        other => error_response(other.status()),
    };
    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        linger(&mut stream).await;
    }
}

/// Reads and drops what the client still sends, a bounded amount for a bounded time, so
/// that it gets the response rather than a reset.
async fn linger(stream: &mut TcpStream) {
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Tells a connection over `MAX_CONNECTIONS` to come back later, without waiting for it.
fn refuse(stream: &TcpStream) {
    let _ = stream.try_write(&error_response("503 Service Unavailable"));
}

/// Accepts connections until `stopped` fires; those still being served are dropped then.
pub async fn run(listener: TcpListener, render: Render, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => break,
        };
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _)) if connections.len() < MAX_CONNECTIONS => {
                connections.spawn(serve_connection(stream, Arc::clone(&render)));
            }
            Ok((stream, peer)) => {
                crate::warn_peer!(
                    peer,
                    "refusing a metrics connection: {MAX_CONNECTIONS} are being served"
                );
                refuse(&stream);
            }
            Err(err) => {
                warn!("metrics endpoint: accept failed: {err}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn routes_by_method_and_path() {
        let cases: [(&[u8], Answer); 11] = [
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Answer::Metrics),
            (b"GET /metrics?x=1 HTTP/1.0\n\n", Answer::Metrics),
            (b"GET / HTTP/1.1\r\n\r\n", Answer::NotFound),
            (b"GET /metricsx HTTP/1.1\r\n\r\n", Answer::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Answer::MethodNotAllowed),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", Answer::MethodNotAllowed),
            (b"GET /metrics HTTP/2\r\n\r\n", Answer::BadRequest),
            (b"GET /metrics\r\n\r\n", Answer::BadRequest),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Answer::BadRequest),
            (b"GET metrics HTTP/1.1\r\n\r\n", Answer::BadRequest),
            (b"\xff\xfe /metrics HTTP/1.1\r\n\r\n", Answer::BadRequest),
        ];
        for (head, expected) in cases {
            assert_eq!(route(head), expected, "{}", String::from_utf8_lossy(head));
        }
    }

    #[tokio::test]
    async fn a_head_is_read_up_to_its_blank_line_within_the_limit() {
        let mut split = tokio_test_reader(&[b"GET /metrics HTTP/1.1\r", b"\n\r", b"\nrest"]);
        assert_eq!(
            read_head(&mut split).await,
            Head::Complete(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec())
        );
        let oversized = vec![b'a'; MAX_HEAD_BYTES + 1];
        assert_eq!(read_head(&mut oversized.as_slice()).await, Head::TooLarge);
        let exactly = [vec![b'a'; MAX_HEAD_BYTES - 4], b"\r\n\r\n".to_vec()].concat();
        assert!(matches!(
            read_head(&mut exactly.as_slice()).await,
            Head::Complete(_)
        ));
        assert_eq!(
            read_head(&mut &b"GET / HTTP/1.1\r\n"[..]).await,
            Head::Closed
        );
    }

    /// A reader that returns `chunks` one read at a time.
    fn tokio_test_reader(chunks: &[&[u8]]) -> impl AsyncRead + Unpin {
        let (mut client, server) = tokio::io::duplex(64);
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        tokio::spawn(async move {
            for chunk in chunks {
                client.write_all(&chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        server
    }

    async fn start() -> (std::net::SocketAddr, watch::Sender<bool>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let render: Render = Arc::new(|| Ok("ferry_up 1\n".to_string()));
        tokio::spawn(run(listener, render, stopped));
        (address, stop)
    }

    async fn exchange(address: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8(answer).unwrap()
    }

    #[tokio::test]
    async fn serves_metrics_and_refuses_the_rest_over_tcp() {
        let (address, _stop) = start().await;
        let ok = exchange(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{ok}"
        );
        assert!(ok.contains("Connection: close\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nferry_up 1\n"), "{ok}");
        let missing = exchange(address, b"GET /other HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let post = exchange(address, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            post.starts_with("HTTP/1.1 405 ") && post.contains("Allow: GET\r\n"),
            "{post}"
        );
        let garbage = exchange(address, b"\x00\x01\x02 garbage\n\n").await;
        assert!(garbage.starts_with("HTTP/1.1 400 "), "{garbage}");
        let oversized = [b"GET /metrics HTTP/1.1\r\nX: ".to_vec(), vec![b'a'; 20_000]].concat();
        let too_large = exchange(address, &oversized).await;
        assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");
        let again = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            again.starts_with("HTTP/1.1 200 OK\r\n"),
            "still serving: {again}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_finishes_its_head_is_answered_408() {
        let (address, _stop) = start().await;
        let answer = exchange(address, b"GET /metrics HTTP/1.1\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_get_503() {
        let (address, _stop) = start().await;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(address).await.unwrap());
        }
        // Accepted in order: one more request once the idle ones are being served.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = exchange(address, b"").await;
        assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
        drop(idle);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ok = exchange(address, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert!(
            ok.starts_with("HTTP/1.1 200 OK\r\n"),
            "slots come back: {ok}"
        );
    }
}
