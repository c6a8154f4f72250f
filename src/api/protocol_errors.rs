//! Requests the HTTP parser itself refuses (a raw byte outside ASCII in the request line, a URI
//! or headers over hyper's limits) never reach the router: hyper answers them with an empty body
//! and closes the connection. The contract wants the envelope on every 4xx (§0.3), so each
//! connection's output passes through [`EnvelopedIo`], which swaps exactly those automatic
//! answers (a 400, 414 or 431 with `content-length: 0`: the router never sends one) for the
//! same status with the envelope. Everything else is passed through untouched.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::error::ApiError;

/// A TCP listener whose connections answer parse errors with the envelope.
pub struct EnvelopingListener(pub TcpListener);

impl Listener for EnvelopingListener {
    type Io = EnvelopedIo<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = Listener::accept(&mut self.0).await;
        (EnvelopedIo { inner: io, replacing: None }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose automatic parse-error answers are replaced (see the module).
pub struct EnvelopedIo<T> {
    inner: T,
    /// An answer being written instead of the one hyper gave: its bytes, how many are written,
    /// and the length of hyper's, reported as written once ours is.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

/// The answers hyper writes on its own, by status line, with the envelope's key and message.
const AUTOMATIC: [(&[u8], &str, &str); 3] = [
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "INVALID_REQUEST",
        "the request is not valid HTTP: bytes outside ASCII in the path or query must be percent-encoded",
    ),
    (b"HTTP/1.1 414 URI Too Long\r\n", "URI_TOO_LONG", "the request's URI is longer than the server takes"),
    (b"HTTP/1.1 431 Request Header Fields Too Large\r\n", "HEADERS_TOO_LARGE", "the request's headers are larger than the server takes"),
];

/// The enveloped answer for `written`, when it is one of hyper's automatic ones.
fn replacement(written: &[u8]) -> Option<Vec<u8>> {
    let (status_line, key, message) = AUTOMATIC.iter().find(|(line, _, _)| written.starts_with(line))?;
    let head = std::str::from_utf8(written).ok()?;
    let empty = head.ends_with("\r\n\r\n") && head.to_ascii_lowercase().contains("\r\ncontent-length: 0\r\n");
    if !empty {
        return None;
    }
    let code = std::str::from_utf8(&status_line[9..12]).ok()?.parse().ok()?;
    let status = axum::http::StatusCode::from_u16(code).ok()?;
    let body = serde_json::to_vec(&ApiError::new(status, key, *message).body).ok()?;
    let date =
        head.lines().find(|line| line.to_ascii_lowercase().starts_with("date:")).map(|line| format!("{line}\r\n")).unwrap_or_default();
    let mut answer = Vec::with_capacity(status_line.len() + 128 + body.len());
    answer.extend_from_slice(status_line);
    answer.extend_from_slice(
        format!("content-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n{date}\r\n", body.len()).as_bytes(),
    );
    answer.extend_from_slice(&body);
    Some(answer)
}

impl<T: AsyncWrite + Unpin> EnvelopedIo<T> {
    /// Writes the rest of a replacing answer; `Ready(n)` with the length of the one it replaced.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, replaced)) = &mut self.replacing {
            if *written == bytes.len() {
                let replaced = *replaced;
                self.replacing = None;
                return Poll::Ready(Ok(replaced));
            }
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(err) => return Poll::Ready(Err(err)),
            }
        }
        Poll::Ready(Ok(0))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EnvelopedIo<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EnvelopedIo<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            // A cheap look first: answers start with the status line, most are 2xx.
            let automatic = buf.starts_with(b"HTTP/1.1 4").then(|| replacement(buf)).flatten();
            match automatic {
                Some(answer) => self.replacing = Some((answer, 0, buf.len())),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        self.drive(cx)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drive(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drive(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each answer's head as one buffer, which is what is matched.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_parsers_empty_answers_are_replaced() {
        let automatic =
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 00:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(replacement(automatic).expect("replaced")).expect("text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n") && head.contains("content-type: application/json"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())) && head.contains("date: Sun, 06 Dec 2026"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!((&body["success"], &body["error"]), (&serde_json::json!(false), &serde_json::json!("INVALID_REQUEST")));
        // The router's own answers carry a body: left alone.
        let routed = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n";
        assert!(replacement(routed).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n").is_some());
    }
}
