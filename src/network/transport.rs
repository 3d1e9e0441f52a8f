//! The byte streams a connection runs over: plain TCP, or TLS on TCP (rustls). A plain
//! socket sends large file regions (Fetch records) with `sendfile`; over TLS the bytes
//! must be encrypted, so regions are read in bounded chunks and written through the TLS
//! stream.

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::protocol::frame::FileRegion;

/// Bytes of a file region read and encrypted at a time on a TLS connection.
const TLS_REGION_CHUNK_BYTES: usize = 64 * 1024;

fn stalled() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "client read no response for longer than connections.max.idle.ms",
    )
}

/// Writes all of `bytes`, failing if the client accepts nothing for `idle`.
pub async fn write_within<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    mut bytes: &[u8],
    idle: Duration,
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match tokio::time::timeout(idle, writer.write(bytes)).await {
            Err(_) => return Err(stalled()),
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(err)) => return Err(err),
        }
    }
    Ok(())
}

pub async fn flush_within<W: AsyncWrite + Unpin>(
    writer: &mut BufWriter<W>,
    idle: Duration,
) -> std::io::Result<()> {
    match tokio::time::timeout(idle, writer.flush()).await {
        Err(_) => Err(stalled()),
        Ok(result) => result,
    }
}

/// The writing half of a connection.
pub trait ResponseWrite: AsyncWrite + Unpin + Send + Sized + 'static {
    /// Sends a file region after what is buffered, each wait bounded by `idle`.
    fn send_region<'a>(
        writer: &'a mut BufWriter<Self>,
        region: &'a FileRegion,
        scratch: &'a mut Vec<u8>,
        idle: Duration,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'a;
}

impl ResponseWrite for OwnedWriteHalf {
    async fn send_region(
        writer: &mut BufWriter<Self>,
        region: &FileRegion,
        _scratch: &mut Vec<u8>,
        idle: Duration,
    ) -> std::io::Result<()> {
        flush_within(writer, idle).await?;
        send_file_within(writer.get_ref(), region, idle).await
    }
}

type TlsWriteHalf = tokio::io::WriteHalf<tokio_rustls::server::TlsStream<TcpStream>>;

impl ResponseWrite for TlsWriteHalf {
    async fn send_region(
        writer: &mut BufWriter<Self>,
        region: &FileRegion,
        scratch: &mut Vec<u8>,
        idle: Duration,
    ) -> std::io::Result<()> {
        let mut done = 0usize;
        while done < region.len {
            let n = (region.len - done).min(TLS_REGION_CHUNK_BYTES);
            scratch.clear();
            scratch.resize(n, 0);
            region
                .file
                .read_exact_at(scratch, region.position + done as u64)?;
            write_within(writer, scratch, idle).await?;
            done += n;
        }
        Ok(())
    }
}

/// A connection's stream, split into its reading and writing halves.
pub trait Transport: Send + 'static {
    type Read: AsyncRead + Unpin + Send + 'static;
    type Write: ResponseWrite;
    fn split(self) -> (Self::Read, Self::Write);
}

impl Transport for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = OwnedWriteHalf;
    fn split(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Transport for tokio_rustls::server::TlsStream<TcpStream> {
    type Read = tokio::io::ReadHalf<tokio_rustls::server::TlsStream<TcpStream>>;
    type Write = TlsWriteHalf;
    fn split(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// Sends a file region straight from the page cache to the socket. Each wait for the
/// socket to accept more is bounded by `idle`.
async fn send_file_within(
    socket: &OwnedWriteHalf,
    region: &FileRegion,
    idle: Duration,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let stream: &TcpStream = socket.as_ref();
    let (socket_fd, file_fd) = (stream.as_raw_fd(), region.file.as_raw_fd());
    let mut offset = libc::off_t::try_from(region.position)
        .map_err(|_| std::io::Error::other("file offset out of range"))?;
    let mut left = region.len;
    while left > 0 {
        tokio::time::timeout(idle, stream.writable())
            .await
            .map_err(|_| stalled())??;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the call (the socket is
            // borrowed, the file held by `region`), and `offset` is a valid off_t that
            // sendfile advances.
            let n = unsafe { libc::sendfile(socket_fd, file_fd, &mut offset, left) };
            if n < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => left -= n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}
