//! SPDY/3.1 sessions, as Kubernetes streaming speaks them (moby/spdystream on the Go side): the transport of
//! `kubectl port-forward`, of the exec/attach fallback, and of the CRI streaming server in containerd.
//!
//! A session multiplexes streams over one connection. Each stream is opened with a header block (zlib-compressed
//! with the SPDY/3 dictionary, one compression context per direction for the whole session), carries data frames
//! both ways, and is half-closed by a frame with the FIN flag. Streams opened by the peer are answered with a
//! SYN_REPLY at once (spdystream drops data on a stream that was never replied to). Flow control is not enforced,
//! as spdystream does not enforce it either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The SPDY/3 header compression dictionary (1423 bytes; its Adler-32 is 0xe3c6a7c2).
const DICTIONARY: &[u8] = include_bytes!("spdy_dictionary.bin");
const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status CANCEL.
const CANCEL: u32 = 5;
/// The largest frame accepted; SPDY allows 16 MiB, Kubernetes never sends more than 32 KiB.
const MAX_FRAME: usize = 1 << 24;
/// Data is sent in frames of at most this size.
const CHUNK: usize = 32 * 1024;

/// Header names and values of a stream, names in lower case as SPDY requires.
pub type Headers = Vec<(String, String)>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spdy: the session is closed")]
    Closed,
    #[error("spdy: the peer reset stream {0}")]
    Reset(u32),
    #[error("spdy: no reply to stream {0} in time")]
    Timeout(u32),
    #[error("spdy: {0}")]
    Protocol(String),
    #[error("spdy: {0}")]
    Io(#[from] std::io::Error),
}

enum Out {
    Syn { id: u32, headers: Headers, fin: bool },
    Reply { id: u32 },
    Data { id: u32, data: Bytes, fin: bool },
    Rst { id: u32, status: u32 },
    Ping(u32),
    GoAway,
}

#[derive(Default)]
struct State {
    /// Where data received on each open stream goes; dropping the sender ends the stream's reads.
    streams: HashMap<u32, mpsc::Sender<Bytes>>,
    /// Streams we opened, waiting for the peer's SYN_REPLY.
    pending: HashMap<u32, oneshot::Sender<Result<(), Error>>>,
    next_id: u32,
    closed: bool,
}

/// One side of a SPDY session. Cheap to clone; the connection ends when the peer closes it or after [`Session::close`].
#[derive(Clone)]
pub struct Session {
    out: mpsc::Sender<Out>,
    state: Arc<Mutex<State>>,
}

/// The sending half of a stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Out>,
}

/// A stream: its id and headers, what the peer sends on it, and the sending half.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    rx: mpsc::Receiver<Bytes>,
    writer: StreamWriter,
}

impl Stream {
    /// A header's value (names are compared without regard to case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The next piece of data, or `None` once the peer half-closed (or reset) the stream.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    /// Data already received, without waiting (`None` when nothing is queued).
    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }

    pub fn writer(&self) -> StreamWriter {
        self.writer.clone()
    }

    /// The receiving and the sending half, to be driven by different tasks.
    pub fn split(self) -> (mpsc::Receiver<Bytes>, StreamWriter) {
        (self.rx, self.writer)
    }
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub async fn send(&self, data: &[u8]) -> Result<(), Error> {
        for chunk in data.chunks(CHUNK) {
            let out = Out::Data { id: self.id, data: Bytes::copy_from_slice(chunk), fin: false };
            self.out.send(out).await.map_err(|_| Error::Closed)?;
        }
        Ok(())
    }

    /// Half-closes the stream: the peer reads end of file.
    pub async fn close(&self) -> Result<(), Error> {
        self.out.send(Out::Data { id: self.id, data: Bytes::new(), fin: true }).await.map_err(|_| Error::Closed)
    }

    /// Aborts the stream both ways.
    pub async fn reset(&self) {
        let _ = self.out.send(Out::Rst { id: self.id, status: CANCEL }).await;
    }
}

pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

impl Session {
    /// Starts a session over `io`. A client opens odd-numbered streams, a server even-numbered ones. Streams the
    /// peer opens arrive on the returned receiver (already replied to); it ends when the connection does.
    pub fn new<T>(io: T, client: bool) -> (Session, mpsc::Receiver<Stream>)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(256);
        let state = Arc::new(Mutex::new(State { next_id: if client { 1 } else { 2 }, ..Default::default() }));
        let (incoming_tx, incoming_rx) = mpsc::channel(64);
        tokio::spawn(write_loop(write, out_rx));
        let session = Session { out: out_tx, state };
        let reader = Reader { session: session.clone(), incoming: incoming_tx, client, inflate: Inflater::new() };
        tokio::spawn(reader.run(read));
        (session, incoming_rx)
    }

    /// Opens a stream and waits (up to 30 s, as Kubernetes does) for the peer's reply.
    pub async fn open(&self, headers: Headers) -> Result<Stream, Error> {
        let (data_tx, data_rx) = mpsc::channel(64);
        let (reply_tx, reply_rx) = oneshot::channel();
        let id = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.closed {
                return Err(Error::Closed);
            }
            let id = st.next_id;
            st.next_id += 2;
            st.streams.insert(id, data_tx);
            st.pending.insert(id, reply_tx);
            id
        };
        self.out.send(Out::Syn { id, headers: headers.clone(), fin: false }).await.map_err(|_| Error::Closed)?;
        match tokio::time::timeout(Duration::from_secs(30), reply_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => return Err(Error::Timeout(id)),
        }
        Ok(Stream { id, headers, rx: data_rx, writer: StreamWriter { id, out: self.out.clone() } })
    }

    /// Sends GOAWAY (after what is queued) and closes the sending side of the connection.
    pub async fn close(&self) {
        let _ = self.out.send(Out::GoAway).await;
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed
    }
}

struct Reader {
    session: Session,
    incoming: mpsc::Sender<Stream>,
    client: bool,
    inflate: Inflater,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(mut self, mut read: R) {
        if let Err(e) = self.frames(&mut read).await {
            tracing::debug!(error = %e, "spdy session ended");
        }
        let mut st = self.session.state.lock().unwrap_or_else(|e| e.into_inner());
        st.closed = true;
        st.streams.clear();
        for (_, p) in st.pending.drain() {
            let _ = p.send(Err(Error::Closed));
        }
    }

    async fn frames<R: AsyncRead + Unpin>(&mut self, read: &mut R) -> Result<(), Error> {
        let mut head = [0u8; 8];
        loop {
            match read.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let flags = head[4];
            let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
            if len > MAX_FRAME {
                return Err(Error::Protocol(format!("frame of {len} bytes")));
            }
            let mut payload = vec![0u8; len];
            read.read_exact(&mut payload).await?;
            if head[0] & 0x80 == 0 {
                let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                self.data(id, payload, flags & FLAG_FIN != 0).await;
                continue;
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            let id = payload.get(..4).map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]])).unwrap_or(0);
            match kind {
                SYN_STREAM if payload.len() >= 10 => {
                    let headers = decode_headers(&self.inflate.inflate(&payload[10..])?)?;
                    self.syn_stream(id, headers, flags & FLAG_FIN != 0).await?;
                }
                SYN_REPLY if payload.len() >= 4 => {
                    decode_headers(&self.inflate.inflate(&payload[4..])?)?;
                    let mut st = self.session.state.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(p) = st.pending.remove(&id) {
                        let _ = p.send(Ok(()));
                    }
                    if flags & FLAG_FIN != 0 {
                        st.streams.remove(&id);
                    }
                }
                HEADERS if payload.len() >= 4 => {
                    // Kept only to stay in step with the peer's compression context.
                    decode_headers(&self.inflate.inflate(&payload[4..])?)?;
                }
                RST_STREAM => {
                    let mut st = self.session.state.lock().unwrap_or_else(|e| e.into_inner());
                    st.streams.remove(&id);
                    if let Some(p) = st.pending.remove(&id) {
                        let _ = p.send(Err(Error::Reset(id)));
                    }
                }
                PING if payload.len() >= 4 => {
                    let ping = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    // Echo the peer's pings (client pings are odd); ours coming back need nothing.
                    if (ping % 2 == 1) != self.client {
                        let _ = self.session.out.send(Out::Ping(ping)).await;
                    }
                }
                GOAWAY => tracing::debug!("spdy peer sent GOAWAY"),
                // SETTINGS, WINDOW_UPDATE and unknown frames need nothing here.
                _ => {}
            }
        }
    }

    async fn data(&mut self, id: u32, payload: Vec<u8>, fin: bool) {
        let tx = self.session.state.lock().unwrap_or_else(|e| e.into_inner()).streams.get(&id).cloned();
        let Some(tx) = tx else { return };
        if !payload.is_empty() {
            let _ = tx.send(Bytes::from(payload)).await;
        }
        if fin {
            self.session.state.lock().unwrap_or_else(|e| e.into_inner()).streams.remove(&id);
        }
    }

    async fn syn_stream(&mut self, id: u32, headers: Headers, fin: bool) -> Result<(), Error> {
        let Ok(permit) = self.incoming.reserve().await else {
            // Nobody takes new streams any more.
            let _ = self.session.out.send(Out::Rst { id, status: CANCEL }).await;
            return Ok(());
        };
        let (tx, rx) = mpsc::channel(64);
        if !fin {
            self.session.state.lock().unwrap_or_else(|e| e.into_inner()).streams.insert(id, tx);
        }
        self.session.out.send(Out::Reply { id }).await.map_err(|_| Error::Closed)?;
        permit.send(Stream { id, headers, rx, writer: StreamWriter { id, out: self.session.out.clone() } });
        Ok(())
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(write: W, mut rx: mpsc::Receiver<Out>) {
    let mut write = tokio::io::BufWriter::new(write);
    let mut deflate = Deflater::new();
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        // Batch what is queued into one flush.
        while let Some(frame) = next {
            let last = matches!(frame, Out::GoAway);
            let bytes = encode(frame, &mut deflate);
            if write.write_all(&bytes).await.is_err() {
                return;
            }
            if last {
                let _ = write.flush().await;
                let _ = write.shutdown().await;
                return;
            }
            next = rx.try_recv().ok();
        }
        if write.flush().await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u16(0x8000 | VERSION);
    b.put_u16(kind);
    b.put_u8(flags);
    b.put_uint(payload.len() as u64, 3);
    b.put_slice(payload);
    b
}

fn encode(frame: Out, deflate: &mut Deflater) -> BytesMut {
    match frame {
        Out::Syn { id, headers, fin } => {
            let mut p = BytesMut::new();
            p.put_u32(id);
            p.put_u32(0); // associated stream
            p.put_u8(0); // priority
            p.put_u8(0); // slot
            p.put_slice(&deflate.deflate(&encode_headers(&headers)));
            control(SYN_STREAM, if fin { FLAG_FIN } else { 0 }, &p)
        }
        Out::Reply { id } => {
            let mut p = BytesMut::new();
            p.put_u32(id);
            p.put_slice(&deflate.deflate(&encode_headers(&Vec::new())));
            control(SYN_REPLY, 0, &p)
        }
        Out::Data { id, data, fin } => {
            let mut b = BytesMut::with_capacity(8 + data.len());
            b.put_u32(id & 0x7fff_ffff);
            b.put_u8(if fin { FLAG_FIN } else { 0 });
            b.put_uint(data.len() as u64, 3);
            b.put_slice(&data);
            b
        }
        Out::Rst { id, status } => {
            let mut p = BytesMut::new();
            p.put_u32(id);
            p.put_u32(status);
            control(RST_STREAM, 0, &p)
        }
        Out::Ping(id) => control(PING, 0, &id.to_be_bytes()),
        Out::GoAway => control(GOAWAY, 0, &[0; 8]),
    }
}

fn encode_headers(headers: &Headers) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_u32(headers.len() as u32);
    for (k, v) in headers {
        let k = k.to_ascii_lowercase();
        b.put_u32(k.len() as u32);
        b.put_slice(k.as_bytes());
        b.put_u32(v.len() as u32);
        b.put_slice(v.as_bytes());
    }
    b
}

fn decode_headers(block: &[u8]) -> Result<Headers, Error> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
        if b.len() < n {
            return Err(Error::Protocol("truncated header block".into()));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn int(b: &mut &[u8]) -> Result<usize, Error> {
        let x = take(b, 4)?;
        Ok(u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize)
    }
    let mut b = block;
    let n = int(&mut b)?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let kl = int(&mut b)?;
        let k = String::from_utf8_lossy(take(&mut b, kl)?).into_owned();
        let vl = int(&mut b)?;
        let v = String::from_utf8_lossy(take(&mut b, vl)?).into_owned();
        out.push((k, v));
    }
    Ok(out)
}

/// The sending direction's compression context: zlib with the SPDY dictionary, a sync flush after each block.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Self {
        let mut c = Compress::new(Compression::best(), true);
        c.set_dictionary(DICTIONARY).expect("a fresh zlib stream takes a dictionary");
        Deflater(c)
    }

    fn deflate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + input.len() / 2 + 64);
        let mut pos = 0;
        loop {
            let before = self.0.total_in();
            let _ = self.0.compress_vec(&input[pos..], &mut out, FlushCompress::Sync);
            pos += (self.0.total_in() - before) as usize;
            if pos >= input.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity().max(256));
        }
    }
}

/// The receiving direction's decompression context.
struct Inflater(Decompress);

impl Inflater {
    fn new() -> Self {
        Inflater(Decompress::new(true))
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            let (in_before, out_before) = (self.0.total_in(), out.len());
            match self.0.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync) {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    pos += (self.0.total_in() - in_before) as usize;
                    self.0.set_dictionary(DICTIONARY).map_err(|e| Error::Protocol(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(Error::Protocol(format!("header block: {e}"))),
            }
            pos += (self.0.total_in() - in_before) as usize;
            let full = out.len() == out.capacity();
            if pos >= input.len() && !full {
                return Ok(out);
            }
            if !full && self.0.total_in() == in_before && out.len() == out_before {
                return Err(Error::Protocol("header block does not decompress".into()));
            }
            out.reserve(out.capacity().max(256));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_round_trip_through_one_context_per_direction() {
        let (mut d, mut i) = (Deflater::new(), Inflater::new());
        // The zlib stream names the SPDY dictionary (FDICT with its Adler-32).
        let first = d.deflate(&encode_headers(&vec![("streamType".into(), "error".into())]));
        assert_eq!(first[1] & 0x20, 0x20);
        assert_eq!(&first[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        assert_eq!(decode_headers(&i.inflate(&first).unwrap()).unwrap(), vec![("streamtype".into(), "error".into())]);
        for n in 0..50 {
            let h: Headers = vec![("port".into(), n.to_string()), ("requestid".into(), "x".repeat(n * 40))];
            assert_eq!(decode_headers(&i.inflate(&d.deflate(&encode_headers(&h))).unwrap()).unwrap(), h);
        }
    }

    #[tokio::test]
    async fn streams_carry_data_both_ways_and_half_close() {
        let (a, b) = tokio::io::duplex(1024);
        let (client, _none) = Session::new(a, true);
        let (_server, mut incoming) = Session::new(b, false);
        let opened = tokio::spawn(async move {
            let mut s = client.open(vec![("streamtype".into(), "data".into()), ("port".into(), "80".into())]).await?;
            s.writer().send(&vec![7u8; 100_000]).await?;
            s.writer().close().await?;
            let mut back = Vec::new();
            while let Some(b) = s.recv().await {
                back.extend_from_slice(&b);
            }
            Ok::<_, Error>((s.id, back))
        });
        let mut s = incoming.recv().await.unwrap();
        assert_eq!(s.header("streamType"), Some("data"));
        assert_eq!(s.header("port"), Some("80"));
        let mut got = 0;
        while let Some(b) = s.recv().await {
            assert!(b.iter().all(|x| *x == 7));
            got += b.len();
        }
        assert_eq!(got, 100_000);
        s.writer().send(b"pong").await.unwrap();
        s.writer().close().await.unwrap();
        let (id, back) = opened.await.unwrap().unwrap();
        assert_eq!(id, 1);
        assert_eq!(back, b"pong");
    }

    #[tokio::test]
    async fn a_reset_fails_the_open_and_a_closed_connection_ends_everything() {
        let (a, b) = tokio::io::duplex(1024);
        let (client, _) = Session::new(a, true);
        let (_server, incoming) = Session::new(b, false);
        drop(incoming); // the server refuses new streams with a reset
        assert!(matches!(client.open(vec![]).await, Err(Error::Reset(1))));
        drop(_server);
        let (a, b) = tokio::io::duplex(1024);
        let (client, _) = Session::new(a, true);
        drop(b);
        assert!(client.open(vec![]).await.is_err());
        assert!(client.is_closed());
    }
}
