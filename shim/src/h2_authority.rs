//! Lets criad talk to gRPC clients that send the socket path as HTTP/2's
//! `:authority`.
//!
//! grpc-go before Kubernetes 1.26's client change (and so the crictl and
//! critest releases built on it), grpc-java and some others put the unix
//! socket path, e.g. `/run/cria/cria.sock`, in `:authority`. That is not a
//! valid authority, and the h2 server under tonic resets every such stream
//! with PROTOCOL_ERROR (a deliberate choice upstream). containerd's Go server
//! accepts it, so clients expect it to work.
//!
//! [`AuthorityFix`] wraps each accepted connection and rewrites the
//! client-to-server byte stream at the HTTP/2 frame level: every header
//! block is HPACK-decoded (keeping the client's dynamic table in step), an
//! unparseable `:authority` becomes `localhost`, and the block is encoded
//! again without indexing, so the server's decoder never depends on the
//! client's table. All other frames, and everything criad writes, pass
//! through untouched.
//!
//! A client sends the same `:authority` on every request of a connection, so
//! the first header block decides: when it needs no repair it goes on
//! unchanged (the server's decoder then follows the client's own table) and
//! the rest of the connection passes through without being parsed, costing
//! nothing per call. Only connections from clients that need the repair pay
//! for decoding and re-encoding every block.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface, passed through as is.
const PREFACE_LEN: usize = 24;
/// Size of a frame header.
const FRAME_HEADER_LEN: usize = 9;
/// Frame types and flags used here (RFC 9113 §6).
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Length of the priority fields of a HEADERS frame with FLAG_PRIORITY.
const PRIORITY_LEN: usize = 5;
/// Largest frame payload we send on: the HTTP/2 default SETTINGS_MAX_FRAME_SIZE,
/// which the server keeps.
const MAX_FRAME: usize = 16_384;
/// Largest header block we accept; the server's own header-list limit is far lower.
const MAX_BLOCK: usize = 1 << 20;
/// What an unusable authority is replaced with (what newer gRPC clients send).
const LOCALHOST: &[u8] = b"localhost";

/// A header block whose HEADERS frame came without END_HEADERS.
struct PendingBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    block: Vec<u8>,
}

/// What the filter does with header blocks, decided by the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No complete header block seen yet.
    Undecided,
    /// The first block needed a repair: every block is decoded and re-encoded.
    Rewrite,
    /// The first block was fine and went on as sent: everything passes.
    Transparent,
}

/// The frame-level rewriter of the client-to-server direction.
struct Filter {
    mode: Mode,
    preface_left: usize,
    /// Bytes of the current non-header frame's payload still to pass through.
    passthrough: usize,
    input: Vec<u8>,
    output: Vec<u8>,
    pending: Option<PendingBlock>,
    decoder: loona_hpack::Decoder<'static>,
}

impl Filter {
    fn new() -> Filter {
        Filter {
            mode: Mode::Undecided,
            preface_left: PREFACE_LEN,
            passthrough: 0,
            input: Vec::new(),
            output: Vec::new(),
            pending: None,
            decoder: loona_hpack::Decoder::new(),
        }
    }

    /// Moves `n` input bytes to the output unchanged.
    fn pass(&mut self, n: usize) {
        self.output.extend(self.input.drain(..n));
    }

    /// Takes in bytes read from the client and rewrites what is complete.
    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        self.input.extend_from_slice(data);
        loop {
            if self.preface_left > 0 {
                let n = self.preface_left.min(self.input.len());
                if n == 0 {
                    return Ok(());
                }
                self.pass(n);
                self.preface_left -= n;
                continue;
            }
            if self.mode == Mode::Transparent {
                let n = self.input.len();
                self.pass(n);
                return Ok(());
            }
            if self.passthrough > 0 {
                let n = self.passthrough.min(self.input.len());
                if n == 0 {
                    return Ok(());
                }
                self.pass(n);
                self.passthrough -= n;
                continue;
            }
            if self.input.len() < FRAME_HEADER_LEN {
                return Ok(());
            }
            let h = &self.input[..FRAME_HEADER_LEN];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            if kind != TYPE_HEADERS && kind != TYPE_CONTINUATION {
                if self.pending.is_some() {
                    return Err("frame interleaved in a header block".to_string());
                }
                self.pass(FRAME_HEADER_LEN);
                self.passthrough = len;
                continue;
            }
            if len > MAX_BLOCK {
                return Err(format!("header frame of {len} bytes is too large"));
            }
            if self.input.len() < FRAME_HEADER_LEN + len {
                return Ok(());
            }
            let payload: Vec<u8> = self
                .input
                .drain(..FRAME_HEADER_LEN + len)
                .skip(FRAME_HEADER_LEN)
                .collect();
            self.header_frame(kind, flags, stream, &payload)?;
        }
    }

    fn header_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> Result<(), String> {
        let mut block = match (kind, self.pending.take()) {
            (TYPE_HEADERS, None) => {
                let mut body = payload;
                if flags & FLAG_PADDED != 0 {
                    let (&pad, rest) = body.split_first().ok_or("empty padded HEADERS frame")?;
                    let pad = usize::from(pad);
                    if pad > rest.len() {
                        return Err("HEADERS padding longer than the frame".to_string());
                    }
                    body = &rest[..rest.len() - pad];
                }
                let priority = if flags & FLAG_PRIORITY != 0 {
                    let (p, rest) = body
                        .split_at_checked(PRIORITY_LEN)
                        .ok_or("HEADERS frame too short for its priority")?;
                    body = rest;
                    let mut fields = [0u8; PRIORITY_LEN];
                    fields.copy_from_slice(p);
                    Some(fields)
                } else {
                    None
                };
                PendingBlock {
                    stream,
                    end_stream: flags & FLAG_END_STREAM != 0,
                    priority,
                    block: body.to_vec(),
                }
            }
            (TYPE_CONTINUATION, Some(mut pending)) if pending.stream == stream => {
                if pending.block.len() + payload.len() > MAX_BLOCK {
                    return Err("header block too large".to_string());
                }
                pending.block.extend_from_slice(payload);
                pending
            }
            _ => return Err("header frame out of sequence".to_string()),
        };
        if flags & FLAG_END_HEADERS == 0 {
            self.pending = Some(block);
            return Ok(());
        }
        let mut headers = self
            .decoder
            .decode(&block.block)
            .map_err(|e| format!("decoding a header block: {e}"))?;
        let fixed = fix_authority(&mut headers);
        if self.mode == Mode::Undecided {
            self.mode = if fixed {
                Mode::Rewrite
            } else {
                Mode::Transparent
            };
        }
        // In Transparent mode this is the first block, sent on as the client
        // encoded it, so the server's HPACK state matches the client's.
        if self.mode == Mode::Rewrite {
            block.block = encode_literal(&headers);
        }
        self.emit(&block);
        Ok(())
    }

    /// Writes the block as a HEADERS frame and as many CONTINUATION frames
    /// as it needs.
    fn emit(&mut self, b: &PendingBlock) {
        let prio_len = if b.priority.is_some() {
            PRIORITY_LEN
        } else {
            0
        };
        let first = b.block.len().min(MAX_FRAME - prio_len);
        let mut chunks = vec![&b.block[..first]];
        chunks.extend(b.block[first..].chunks(MAX_FRAME));
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut flags = if i == last { FLAG_END_HEADERS } else { 0 };
            let kind = if i == 0 {
                if b.end_stream {
                    flags |= FLAG_END_STREAM;
                }
                if b.priority.is_some() {
                    flags |= FLAG_PRIORITY;
                }
                TYPE_HEADERS
            } else {
                TYPE_CONTINUATION
            };
            let priority: &[u8] = match (&b.priority, i) {
                (Some(p), 0) => p,
                _ => &[],
            };
            let len = priority.len() + chunk.len();
            // len <= MAX_FRAME, so it fits the 24-bit length field.
            self.output.extend_from_slice(&[
                (len >> 16) as u8,
                (len >> 8) as u8,
                len as u8,
                kind,
                flags,
            ]);
            self.output.extend_from_slice(&b.stream.to_be_bytes());
            self.output.extend_from_slice(priority);
            self.output.extend_from_slice(chunk);
        }
    }
}

/// Replaces an `:authority` the server would refuse with `localhost`;
/// true if it did.
fn fix_authority(headers: &mut [(Vec<u8>, Vec<u8>)]) -> bool {
    let mut fixed = false;
    for (name, value) in headers.iter_mut() {
        if name.as_slice() == b":authority"
            && http::uri::Authority::try_from(value.as_slice()).is_err()
        {
            tracing::trace!(authority = %String::from_utf8_lossy(value), "replacing invalid :authority");
            *value = LOCALHOST.to_vec();
            fixed = true;
        }
    }
    fixed
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `first` holds the
/// bits above the prefix.
fn encode_int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Every header as a "literal without indexing, new name" with plain
/// (non-Huffman) strings: the receiver's dynamic table is never touched.
fn encode_literal(headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len() + 6).sum());
    for (name, value) in headers {
        out.push(0x00);
        for s in [name, value] {
            encode_int(&mut out, 0x00, 7, s.len());
            out.extend_from_slice(s);
        }
    }
    out
}

/// A connection whose client-to-server HTTP/2 stream gets its `:authority`
/// repaired; see the module docs.
pub struct AuthorityFix<S> {
    inner: S,
    filter: Filter,
    /// How much of `filter.output` the reader has taken.
    taken: usize,
    failed: Option<String>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> AuthorityFix<S> {
        AuthorityFix {
            inner,
            filter: Filter::new(),
            taken: 0,
            failed: None,
            eof: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let ready = &this.filter.output[this.taken..];
            if !ready.is_empty() {
                let n = ready.len().min(buf.remaining());
                buf.put_slice(&ready[..n]);
                this.taken += n;
                if this.taken == this.filter.output.len() {
                    this.filter.output.clear();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = this.failed.take() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.filter.mode == Mode::Transparent && this.filter.input.is_empty() {
                // Nothing buffered: the client's bytes go straight to the server.
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                // The client closed: hand over any partial frame as is.
                this.eof = true;
                let rest = this.filter.input.len();
                this.filter.pass(rest);
            } else if let Err(e) = this.filter.push(read.filled()) {
                this.failed = Some(format!("http/2 from client: {e}"));
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Splits the filter's output into (type, flags, stream, payload) frames.
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = (usize::from(bytes[0]) << 16)
                | (usize::from(bytes[1]) << 8)
                | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    fn request_headers(authority: &str, path: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    fn encode(enc: &mut loona_hpack::Encoder<'static>, headers: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        enc.encode(headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice())))
    }

    #[test]
    fn a_socket_path_authority_becomes_localhost_across_indexed_blocks() {
        // The client's encoder indexes, so its second block refers to its
        // dynamic table: the filter must follow it.
        let mut client = loona_hpack::Encoder::new();
        let first = request_headers("/run/cria/cria.sock", "/runtime.v1.RuntimeService/Version");
        let second = request_headers("/run/cria/cria.sock", "/runtime.v1.ImageService/ListImages");
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        wire.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            1,
            &encode(&mut client, &first),
        ));
        wire.extend(frame(0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\0")); // DATA
        wire.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            3,
            &encode(&mut client, &second),
        ));

        // Feed it in awkward pieces, as a socket might deliver it.
        let mut filter = Filter::new();
        for piece in wire.chunks(7) {
            filter.push(piece).unwrap();
        }
        assert_eq!(&filter.output[..PREFACE.len()], PREFACE);
        let out = frames(&filter.output[PREFACE.len()..]);
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].0, 0x4);
        assert_eq!(out[2], (0x0, FLAG_END_STREAM, 1, b"\0\0\0\0\0".to_vec()));

        let mut server = loona_hpack::Decoder::new();
        for ((kind, flags, stream, payload), (want_stream, want)) in [&out[1], &out[3]]
            .into_iter()
            .zip([(1, &first), (3, &second)])
        {
            assert_eq!((*kind, *stream), (TYPE_HEADERS, want_stream));
            assert_ne!(flags & FLAG_END_HEADERS, 0);
            let got = server.decode(payload).unwrap();
            let mut expected = want.clone();
            expected[3].1 = b"localhost".to_vec();
            assert_eq!(got, expected);
        }
        assert_ne!(out[3].1 & FLAG_END_STREAM, 0, "END_STREAM is kept");
    }

    #[test]
    fn a_valid_authority_is_kept_and_continuations_are_joined() {
        let mut client = loona_hpack::Encoder::new();
        let mut headers = request_headers("localhost", "/runtime.v1.RuntimeService/Version");
        // A header big enough that the block needs CONTINUATION frames.
        headers.push((b"x-big".to_vec(), vec![b'a'; 40_000]));
        let block = encode(&mut client, &headers);
        let mut wire = PREFACE.to_vec();
        // Padded + priority HEADERS with the first part, then two continuations.
        let mut first = vec![3u8];
        first.extend_from_slice(&[0, 0, 0, 0, 15]);
        first.extend_from_slice(&block[..100]);
        first.extend_from_slice(&[0, 0, 0]);
        wire.extend(frame(TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 5, &first));
        wire.extend(frame(TYPE_CONTINUATION, 0, 5, &block[100..20_000]));
        wire.extend(frame(
            TYPE_CONTINUATION,
            FLAG_END_HEADERS,
            5,
            &block[20_000..],
        ));
        let mut filter = Filter::new();
        filter.push(&wire).unwrap();
        let out = frames(&filter.output[PREFACE.len()..]);
        assert!(out.len() >= 3, "a 40 kB block needs continuations");
        assert_eq!(out[0].0, TYPE_HEADERS);
        assert_ne!(out[0].1 & FLAG_PRIORITY, 0);
        assert_eq!(&out[0].3[..PRIORITY_LEN], &[0, 0, 0, 0, 15]);
        let mut joined = out[0].3[PRIORITY_LEN..].to_vec();
        for f in &out[1..] {
            assert_eq!((f.0, f.2), (TYPE_CONTINUATION, 5));
            assert!(f.3.len() <= MAX_FRAME);
            joined.extend_from_slice(&f.3);
        }
        assert_ne!(out.last().unwrap().1 & FLAG_END_HEADERS, 0);
        let got = loona_hpack::Decoder::new().decode(&joined).unwrap();
        assert_eq!(got, headers);
    }

    #[test]
    fn a_connection_whose_first_authority_is_valid_passes_through_unchanged() {
        let mut client = loona_hpack::Encoder::new();
        let first = request_headers("localhost", "/runtime.v1.RuntimeService/Version");
        let second = request_headers("localhost", "/runtime.v1.RuntimeService/ListContainers");
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        wire.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS | FLAG_END_STREAM,
            1,
            &encode(&mut client, &first),
        ));
        // Indexed against the client's table; passes through as it is.
        wire.extend(frame(
            TYPE_HEADERS,
            FLAG_END_HEADERS,
            3,
            &encode(&mut client, &second),
        ));
        // Not even parsed any more: a frame the rewriter would refuse.
        wire.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 7, b"x"));
        let mut filter = Filter::new();
        for piece in wire.chunks(5) {
            filter.push(piece).unwrap();
        }
        assert_eq!(filter.mode, Mode::Transparent);
        assert_eq!(filter.output, wire);
    }

    #[test]
    fn broken_sequences_are_errors() {
        let mut filter = Filter::new();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, b"x"));
        assert!(filter.push(&wire).is_err());

        let mut filter = Filter::new();
        let mut wire = PREFACE.to_vec();
        wire.extend(frame(TYPE_HEADERS, 0, 1, &[0x82]));
        wire.extend(frame(0x0, 0, 1, b"data"));
        assert!(filter.push(&wire).is_err());
    }

    #[test]
    fn integers_use_continuation_bytes_past_the_prefix() {
        let mut out = Vec::new();
        encode_int(&mut out, 0, 7, 10);
        encode_int(&mut out, 0, 7, 127);
        encode_int(&mut out, 0, 7, 1337);
        assert_eq!(out, vec![10, 127, 0, 127, 0xba, 0x09]);
    }
}
