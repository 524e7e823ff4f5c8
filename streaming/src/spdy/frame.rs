//! SPDY/3.1 framing: frame encoding and decoding, and the zlib-compressed
//! header blocks (one compression context per direction for the whole
//! connection, seeded with the SPDY/3 dictionary).

use crate::StreamingError;
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The dictionary of SPDY/3 header compression (section 2.6.10.1 of the
/// draft): protocol data, byte for byte.
pub(crate) const DICTIONARY: &[u8] = include_bytes!("../spdy3_dictionary.bin");

/// SPDY version carried in every control frame.
const VERSION: u16 = 3;
/// The largest frame we accept (24-bit length, but nobody needs more).
const MAX_FRAME: usize = 1 << 20;
/// The largest decompressed header block we accept.
const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Control frame types.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// The FIN flag (on DATA, SYN_STREAM, SYN_REPLY, HEADERS).
pub(crate) const FLAG_FIN: u8 = 0x01;
/// SETTINGS id of the initial per-stream window.
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;
/// RST_STREAM status: the stream was refused.
pub(crate) const RST_REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: the stream was cancelled.
pub(crate) const RST_CANCEL: u32 = 5;

/// Header name/value pairs, names lower case as SPDY/3 requires.
pub(crate) type Headers = Vec<(String, String)>;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The peer opens a stream.
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// The peer accepts a stream we opened (we never do).
    SynReply { stream_id: u32, fin: bool },
    /// The peer aborts a stream.
    RstStream { stream_id: u32, status: u32 },
    /// Settings; only the initial window size matters to us.
    Settings { entries: Vec<(u32, u32)> },
    /// A ping to echo.
    Ping(u32),
    /// The peer is leaving.
    GoAway { last_stream_id: u32 },
    /// More headers (ignored but for FIN).
    Headers { stream_id: u32, fin: bool },
    /// The peer may send `delta` more bytes (stream 0: the session).
    WindowUpdate { stream_id: u32, delta: u32 },
    /// Payload on a stream.
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame type this server ignores.
    Unknown,
}

/// The two zlib contexts of a connection.
pub(crate) struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
}

impl HeaderCodec {
    /// Fresh contexts; the compressor is primed with the dictionary.
    pub(crate) fn new() -> Result<Self, StreamingError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .map_err(|e| StreamingError::Protocol(format!("spdy header dictionary: {e}")))?;
        Ok(HeaderCodec {
            inflate: Decompress::new(true),
            deflate,
        })
    }

    /// Inflates one header block (the stream is sync-flushed per block).
    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, StreamingError> {
        let bad = |m: String| StreamingError::Protocol(format!("spdy header block: {m}"));
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        // Each round consumes input or grows the output: bounded by sizes.
        for _ in 0..4096 {
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(bad("too large".into()));
                }
                out.reserve(out.capacity().max(1024));
            }
            let before = self.inflate.total_in();
            let r = self
                .inflate
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - before) as usize;
            match r {
                Ok(Status::StreamEnd) => return Ok(out),
                Ok(_) => {
                    if pos >= input.len() && out.capacity() - out.len() >= 256 {
                        return Ok(out);
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| bad(e.to_string()))?;
                }
                Err(e) => return Err(bad(e.to_string())),
            }
        }
        Err(bad("does not end".into()))
    }

    /// Deflates one header block with a sync flush.
    fn deflate(&mut self, input: &[u8]) -> Result<Vec<u8>, StreamingError> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut pos = 0;
        for _ in 0..4096 {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| StreamingError::Protocol(format!("spdy header deflate: {e}")))?;
            pos += (self.deflate.total_in() - before) as usize;
            if pos >= input.len() && out.capacity() - out.len() >= 64 {
                return Ok(out);
            }
        }
        Err(StreamingError::Protocol(
            "spdy header deflate does not end".into(),
        ))
    }

    /// Encodes and compresses a header block.
    pub(crate) fn encode_headers(&mut self, headers: &Headers) -> Result<Vec<u8>, StreamingError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        self.deflate(&raw)
    }

    /// Decompresses and parses a header block.
    pub(crate) fn decode_headers(&mut self, block: &[u8]) -> Result<Headers, StreamingError> {
        let raw = self.inflate(block)?;
        parse_header_block(&raw)
    }
}

/// Parses an uncompressed header block; names are lower-cased.
fn parse_header_block(raw: &[u8]) -> Result<Headers, StreamingError> {
    let bad = || StreamingError::Protocol("spdy header block: truncated".into());
    let mut pos: usize = 0;
    let mut take = |n: usize| -> Result<&[u8], StreamingError> {
        let s = raw
            .get(pos..pos.checked_add(n).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        pos += n;
        Ok(s)
    };
    let count = be32(take(4)?);
    let mut headers = Vec::new();
    for _ in 0..count {
        let n = be32(take(4)?) as usize;
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = be32(take(4)?) as usize;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        // Several values of one name are NUL-separated.
        for v in value.split('\0') {
            headers.push((name.clone(), v.to_string()));
        }
    }
    Ok(headers)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The first value of header `name` (lower case).
pub(crate) fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Reads one frame; `Ok(None)` at a clean end of the connection.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    codec: &mut HeaderCodec,
) -> Result<Option<Frame>, StreamingError> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let flags = head[4];
    let len = ((head[5] as usize) << 16) | ((head[6] as usize) << 8) | head[7] as usize;
    if len > MAX_FRAME {
        return Err(StreamingError::Protocol(format!(
            "spdy frame of {len} bytes is too large"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let fin = flags & FLAG_FIN != 0;
    if head[0] & 0x80 == 0 {
        return Ok(Some(Frame::Data {
            stream_id: be32(&head[0..4]) & 0x7fff_ffff,
            fin,
            data: Bytes::from(body),
        }));
    }
    let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
    if version != VERSION {
        return Err(StreamingError::Protocol(format!(
            "spdy version {version} is not 3"
        )));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    let need = |n: usize| {
        if body.len() < n {
            Err(StreamingError::Protocol(format!(
                "spdy control frame {kind} is too short"
            )))
        } else {
            Ok(())
        }
    };
    let id = |b: &[u8]| be32(b) & 0x7fff_ffff;
    let frame = match kind {
        SYN_STREAM => {
            need(10)?;
            Frame::SynStream {
                stream_id: id(&body[0..4]),
                fin,
                headers: codec.decode_headers(&body[10..])?,
            }
        }
        SYN_REPLY => {
            need(4)?;
            // Keeps the inflater in step even though we need nothing here.
            codec.decode_headers(&body[4..])?;
            Frame::SynReply {
                stream_id: id(&body[0..4]),
                fin,
            }
        }
        HEADERS => {
            need(4)?;
            codec.decode_headers(&body[4..])?;
            Frame::Headers {
                stream_id: id(&body[0..4]),
                fin,
            }
        }
        RST_STREAM => {
            need(8)?;
            Frame::RstStream {
                stream_id: id(&body[0..4]),
                status: be32(&body[4..8]),
            }
        }
        SETTINGS => {
            need(4)?;
            let n = be32(&body[0..4]) as usize;
            need(n.saturating_mul(8).saturating_add(4))?;
            let entries = (0..n)
                .map(|i| {
                    let e = &body[4 + i * 8..12 + i * 8];
                    (be32(&e[0..4]) & 0x00ff_ffff, be32(&e[4..8]))
                })
                .collect();
            Frame::Settings { entries }
        }
        PING => {
            need(4)?;
            Frame::Ping(be32(&body[0..4]))
        }
        GOAWAY => {
            need(4)?;
            Frame::GoAway {
                last_stream_id: id(&body[0..4]),
            }
        }
        WINDOW_UPDATE => {
            need(8)?;
            Frame::WindowUpdate {
                stream_id: id(&body[0..4]),
                delta: be32(&body[4..8]) & 0x7fff_ffff,
            }
        }
        _ => Frame::Unknown,
    };
    Ok(Some(frame))
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(body);
    f
}

/// A SYN_REPLY accepting `stream_id`.
pub(crate) fn syn_reply(
    codec: &mut HeaderCodec,
    stream_id: u32,
    headers: &Headers,
) -> Result<Vec<u8>, StreamingError> {
    let mut body = stream_id.to_be_bytes().to_vec();
    body.extend(codec.encode_headers(headers)?);
    Ok(control(SYN_REPLY, 0, &body))
}

/// A SYN_STREAM opening `stream_id` (what a client sends; for tests).
#[cfg(test)]
pub(crate) fn syn_stream(
    codec: &mut HeaderCodec,
    stream_id: u32,
    headers: &Headers,
) -> Result<Vec<u8>, StreamingError> {
    let mut body = stream_id.to_be_bytes().to_vec();
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // associated stream, priority, slot
    body.extend(codec.encode_headers(headers)?);
    Ok(control(SYN_STREAM, 0, &body))
}

/// A RST_STREAM.
pub(crate) fn rst_stream(stream_id: u32, status: u32) -> Vec<u8> {
    let mut body = stream_id.to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(RST_STREAM, 0, &body)
}

/// A PING (echo of the peer's).
pub(crate) fn ping(id: u32) -> Vec<u8> {
    control(PING, 0, &id.to_be_bytes())
}

/// A GOAWAY with status OK.
pub(crate) fn goaway(last_stream_id: u32) -> Vec<u8> {
    let mut body = last_stream_id.to_be_bytes().to_vec();
    body.extend_from_slice(&0u32.to_be_bytes());
    control(GOAWAY, 0, &body)
}

/// A WINDOW_UPDATE (stream 0: the session window).
pub(crate) fn window_update(stream_id: u32, delta: u32) -> Vec<u8> {
    let mut body = stream_id.to_be_bytes().to_vec();
    body.extend_from_slice(&delta.to_be_bytes());
    control(WINDOW_UPDATE, 0, &body)
}

/// A DATA frame.
pub(crate) fn data(stream_id: u32, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + payload.len());
    f.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    f.push(if fin { FLAG_FIN } else { 0 });
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
        assert!(DICTIONARY.ends_with(b",enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_two_contexts() {
        // Our deflater feeds a second codec's inflater, as on the wire; the
        // contexts persist across blocks.
        let mut a = HeaderCodec::new().unwrap();
        let mut b = HeaderCodec::new().unwrap();
        for i in 0..3 {
            let h: Headers = vec![
                ("streamtype".into(), "stdout".into()),
                ("port".into(), format!("{}", 8000 + i)),
            ];
            let block = a.encode_headers(&h).unwrap();
            assert_eq!(b.decode_headers(&block).unwrap(), h);
        }
    }

    #[test]
    fn multi_values_split_and_names_lowercase() {
        let mut raw = 1u32.to_be_bytes().to_vec();
        raw.extend(4u32.to_be_bytes());
        raw.extend(b"X-Ab");
        raw.extend(3u32.to_be_bytes());
        raw.extend(b"a\0b");
        let h = parse_header_block(&raw).unwrap();
        assert_eq!(
            h,
            vec![("x-ab".into(), "a".into()), ("x-ab".into(), "b".into())]
        );
        assert!(parse_header_block(&raw[..raw.len() - 1]).is_err());
    }

    #[tokio::test]
    async fn frames_decode_from_their_encodings() {
        let mut enc = HeaderCodec::new().unwrap();
        let mut dec = HeaderCodec::new().unwrap();
        let mut wire = Vec::new();
        wire.extend(data(5, true, b"hello"));
        wire.extend(window_update(0, 1000));
        wire.extend(ping(7));
        wire.extend(rst_stream(9, RST_CANCEL));
        wire.extend(syn_reply(&mut enc, 3, &vec![("a".into(), "b".into())]).unwrap());
        let mut r = &wire[..];
        assert_eq!(
            read_frame(&mut r, &mut dec).await.unwrap(),
            Some(Frame::Data {
                stream_id: 5,
                fin: true,
                data: Bytes::from_static(b"hello")
            })
        );
        assert_eq!(
            read_frame(&mut r, &mut dec).await.unwrap(),
            Some(Frame::WindowUpdate {
                stream_id: 0,
                delta: 1000
            })
        );
        assert_eq!(
            read_frame(&mut r, &mut dec).await.unwrap(),
            Some(Frame::Ping(7))
        );
        assert_eq!(
            read_frame(&mut r, &mut dec).await.unwrap(),
            Some(Frame::RstStream {
                stream_id: 9,
                status: RST_CANCEL
            })
        );
        assert_eq!(
            read_frame(&mut r, &mut dec).await.unwrap(),
            Some(Frame::SynReply {
                stream_id: 3,
                fin: false
            })
        );
        assert_eq!(read_frame(&mut r, &mut dec).await.unwrap(), None);
    }
}
