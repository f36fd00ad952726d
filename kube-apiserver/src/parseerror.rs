//! hyper's own answers to HTTP/1.1 requests it cannot parse, given a `Status` body as every other error of the API.
//!
//! hyper refuses a request line longer than the `http` crate's URI limit (64 KiB) with `414 URI Too Long` and headers
//! beyond its read buffer with `431 Request Header Fields Too Large`, before any handler runs, and writes those
//! answers with an empty body. The connection's writer ([`StatusOnParseError`]) recognises such a bodiless answer
//! (hyper closes the connection after it) and writes the same status with a JSON `Status` instead, so clients read
//! the error as they read any other.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use api_types::status::ApiError;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose bodiless 414 and 431 answers from hyper are rewritten with a `Status` body.
pub struct StatusOnParseError<T> {
    inner: T,
    /// A rewritten answer and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> StatusOnParseError<T> {
    pub fn new(inner: T) -> Self {
        StatusOnParseError { inner, pending: None }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// The answer to write in place of `head`, when `head` is one of hyper's bodiless parse-error answers.
pub fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let (code, reason, message) = if head.starts_with(b"HTTP/1.1 414 ") {
        (414, "RequestURITooLong", "the request URI is too long")
    } else if head.starts_with(b"HTTP/1.1 431 ") {
        (431, "RequestHeaderFieldsTooLarge", "the request header fields are too large")
    } else {
        return None;
    };
    // Only a complete head announcing an empty body: a handler's 414 or 431 carries its own Status.
    let text = std::str::from_utf8(head).ok()?;
    let lines = text.strip_suffix("\r\n\r\n")?;
    if !lines.split("\r\n").any(|l| l.eq_ignore_ascii_case("content-length: 0")) {
        return None;
    }
    let status_line = lines.split("\r\n").next()?;
    let mut body = serde_json::to_vec(&ApiError::new(code, reason, message).to_status()).ok()?;
    body.push(b'\n');
    let mut out = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncache-control: no-cache, private\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncWrite + Unpin> StatusOnParseError<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((buf, done)) = &mut self.pending {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
            if *done == buf.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StatusOnParseError<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StatusOnParseError<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = rewrite(buf) {
            self.pending = Some((answer, 0));
            // Written from hyper's point of view; flush and shutdown finish the rewritten answer.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if bufs.first().is_some_and(|b| b.starts_with(b"HTTP/1.1 414 ") || b.starts_with(b"HTTP/1.1 431 ")) {
            let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(answer) = rewrite(&all) {
                self.pending = Some((answer, 0));
                let _ = self.poll_pending(cx)?;
                return Poll::Ready(Ok(all.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodiless_parse_errors_get_a_status() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Sat, 05 Dec 2026 00:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite(head).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let status: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(status["code"], 414);
        assert_eq!(status["kind"], "Status");
        let h431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(rewrite(h431).unwrap()).unwrap().contains("\"code\":431"));
        // A handler's own answer (with a body), and other statuses, pass through.
        assert!(rewrite(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 120\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
