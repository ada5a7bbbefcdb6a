//! The dashboard's listener: TCP connections whose HTTP-level refusals
//! are JSON like every other error.
//!
//! Some requests never reach the router: the HTTP/1 server (hyper)
//! answers them itself, with an empty body, and closes the connection —
//! a request line or header it cannot parse (400), a URI longer than it
//! parses (64 KiB: 414), headers beyond its buffer (431). There is no
//! hook for those answers, so each connection is wrapped: when the
//! server writes one of them, the wrapper writes the same status with a
//! JSON `{"error": ...}` body instead.
//!
//! A connection on which no byte moves either way for the idle timeout
//! (a client that connects and says nothing, a keep-alive connection
//! left open) is closed; a page's event stream is not idle, since the
//! server writes to it every refresh.
//!
//! With TLS configured, each connection first completes a TLS handshake
//! (within [`HANDSHAKE_TIMEOUT`], side by side, so a client that stalls
//! holds up no other); one that fails, plain HTTP included, is closed
//! without an answer.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

/// How long a client has to complete its TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener whose connections are [`JsonRefusals`], over TLS when
/// configured.
pub(crate) struct Listener {
    kind: Kind,
    idle: Duration,
}

enum Kind {
    /// Plain HTTP.
    Plain(TcpListener),
    /// HTTPS: connections whose handshake completed, from the accept task.
    Tls {
        done: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
        local: SocketAddr,
    },
}

impl Listener {
    /// Serves `listener` in plain HTTP, closing connections idle for
    /// `idle`.
    pub(crate) fn plain(listener: TcpListener, idle: Duration) -> Listener {
        Listener {
            kind: Kind::Plain(listener),
            idle,
        }
    }

    /// Serves `listener` over TLS with `tls`: a task accepts connections
    /// and runs their handshakes side by side; it stops when the listener
    /// is dropped.
    pub(crate) fn tls(
        listener: TcpListener,
        tls: &crate::DashboardTls,
        idle: Duration,
    ) -> io::Result<Listener> {
        let local = listener.local_addr()?;
        let acceptor = tls.acceptor();
        let (tx, done) = mpsc::channel(64);
        let mut listener = listener;
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = tokio::select! {
                    () = tx.closed() => return,
                    // axum's own loop: it logs and backs off on accept errors.
                    accepted = axum::serve::Listener::accept(&mut listener) => accepted,
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%addr, error = %e, "a dashboard TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(%addr, "a dashboard TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Listener {
            kind: Kind::Tls { done, local },
            idle,
        })
    }
}

impl axum::serve::Listener for Listener {
    type Io = JsonRefusals<Conn>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = match &mut self.kind {
            Kind::Plain(l) => {
                let (io, addr) = axum::serve::Listener::accept(l).await;
                (Stream::Plain(io), addr)
            }
            Kind::Tls { done, .. } => match done.recv().await {
                Some((io, addr)) => (Stream::Tls(Box::new(io)), addr),
                // The accept task ended (it only does when this listener
                // is dropped): nothing more will come.
                None => std::future::pending().await,
            },
        };
        (JsonRefusals::new(Conn::new(io, self.idle)), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.kind {
            Kind::Plain(l) => l.local_addr(),
            Kind::Tls { local, .. } => Ok(*local),
        }
    }
}

/// Plain TCP or TLS over TCP.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A dashboard connection, which reads end (EOF, so the server closes
/// it) once no byte has moved either way for its idle timeout.
pub(crate) struct Conn {
    io: Stream,
    idle: Duration,
    last: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Conn {
    fn new(io: Stream, idle: Duration) -> Conn {
        let now = tokio::time::Instant::now();
        Conn {
            io,
            idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    fn moved(&mut self, n: usize) {
        if n > 0 {
            self.last = tokio::time::Instant::now();
        }
    }

    /// Whether the connection has been idle for its timeout (and if not,
    /// the timer is set to wake this task when it would be).
    fn idle_out(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let due = self.last + self.idle;
            if self.timer.deadline() != due {
                self.timer.as_mut().reset(due);
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if self.last + self.idle <= tokio::time::Instant::now() {
                return true;
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = match &mut this.io {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match read {
            Poll::Ready(r) => {
                this.moved(buf.filled().len() - before);
                Poll::Ready(r)
            }
            // Nothing to read: an idle connection reads as closed.
            Poll::Pending if this.idle_out(cx) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = match &mut this.io {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = written {
            this.moved(n);
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection on which the HTTP server's own refusals (see the module
/// documentation) are rewritten with a JSON body.
pub(crate) struct JsonRefusals<T> {
    io: T,
    /// A rewritten refusal being written: its bytes, how many are written,
    /// and how many bytes of the server's it stands for.
    rewrite: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonRefusals<T> {
    pub(crate) fn new(io: T) -> Self {
        JsonRefusals { io, rewrite: None }
    }
}

/// The server's refusals, by status, and what to tell the client.
const REFUSALS: &[(&str, &str)] = &[
    (
        "400",
        "the request is not valid HTTP/1.1: its request line or a header could not be parsed",
    ),
    (
        "414",
        "the request's URI is too long: at most 65534 bytes are accepted",
    ),
    (
        "431",
        "the request's headers are too large: at most about 400 KiB are accepted",
    ),
];

/// If `buf` is exactly one of the server's refusals — a response head with
/// one of [`REFUSALS`]' statuses, `content-length: 0`, `connection: close`
/// and no content type (the router's errors always have a JSON body) —
/// the same response with a JSON body.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(buf).ok()?.strip_suffix("\r\n\r\n")?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?;
    let (_, message) = REFUSALS.iter().find(|(s, _)| *s == status)?;
    let headers: Vec<(&str, &str)> = lines
        .map(|l| l.split_once(':').map(|(k, v)| (k.trim(), v.trim())))
        .collect::<Option<_>>()?;
    let has = |name: &str, value: &str| {
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(name) && v.eq_ignore_ascii_case(value))
    };
    let typed = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if typed || !has("content-length", "0") || !has("connection", "close") {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let mut out = format!("{status_line}\r\ncontent-type: application/json\r\n");
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("content-length") {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    Some(out.into_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none() {
            match rewrite(buf) {
                Some(bytes) => this.rewrite = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        // Written whole before the server's bytes count as written: the
        // server retries with the same bytes until then.
        let Some((bytes, written, stands_for)) = this.rewrite.as_mut() else {
            unreachable!("set above")
        };
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let n = (*stands_for).min(buf.len());
        this.rewrite = None;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_servers_empty_refusals_are_rewritten() {
        let refusal = b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(refusal).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains("\r\ncontent-type: application/json\r\n"));
        assert!(head.contains("\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(!head.contains("content-length: 0"));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("too long"));

        // The router's own errors, other statuses, and anything with a body
        // pass as they are.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 x\r\n\r\n",
            b"data: {}\n\n",
        ] {
            assert_eq!(rewrite(other), None, "{}", String::from_utf8_lossy(other));
        }
    }

    #[tokio::test]
    async fn a_refusal_is_written_whole_even_a_byte_at_a_time() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (client, server) = tokio::io::duplex(1);
        let mut conn = JsonRefusals::new(server);
        let refusal =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            let mut client = client;
            client.read_to_end(&mut all).await.unwrap();
            String::from_utf8(all).unwrap()
        });
        conn.write_all(refusal).await.unwrap();
        conn.write_all(b"later bytes pass").await.unwrap();
        conn.shutdown().await.unwrap();
        drop(conn);
        let seen = reader.await.unwrap();
        let (_, rest) = seen.split_once("\r\n\r\n").unwrap();
        assert!(
            rest.starts_with("{\"error\":") && rest.ends_with("}later bytes pass"),
            "{seen}"
        );
    }
}
