//! SPDY/3.1 as kubelet's streaming clients speak it: the client opens every
//! stream, the server accepts them and exchanges data.
//!
//! [`session::Session`] turns an upgraded connection into a sequence of
//! accepted [`session::SpdyStream`]s, each an `AsyncRead` of what the peer
//! sends plus a sender for what we send back, with flow control.

pub(crate) mod frame;
pub(crate) mod session;
