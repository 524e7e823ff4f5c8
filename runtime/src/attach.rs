//! Attach: the monitor shares the container's output with any number of
//! clients on `attach.sock` in the container's state dir, and feeds their
//! input to the container's stdin (or pty) and resizes to the pty. The log
//! keeps being written independently.
//!
//! Wire format, both directions: frames of `[kind u8][len u32 BE][payload]`.
//! Monitor → client: [`FRAME_STDOUT`], [`FRAME_STDERR`] (with a tty all
//! output is stdout). Client → monitor: [`FRAME_STDIN`], [`FRAME_RESIZE`]
//! (payload width u16 BE, height u16 BE), [`FRAME_STDIN_CLOSE`] (empty: the
//! client's stdin ended). The monitor closes every client when the container
//! exits.
//!
//! `stdin_once` (CRI): the container's stdin is closed, so it reads EOF, when
//! the first client that used stdin closes it or detaches. The hub holds the
//! only write end of the stdin pipe, so dropping it is the close. With a tty
//! the pty stays open; the hub types the terminal's VEOF character (^D)
//! instead, which a reader in canonical mode sees as end of file, as a user
//! pressing ^D would.
//!
//! The monitor stays single-threaded: all sockets are non-blocking and
//! polled by its loop. A client that cannot keep up (its socket buffer is
//! full) is disconnected rather than allowed to stall the container. Input
//! the container does not read at once is queued (up to
//! [`MAX_PENDING_INPUT`]) and written as the stdin pipe or pty takes it;
//! while the queue is full the hub stops reading clients, so their writes
//! block instead of input being lost.

use nix::poll::{PollFd, PollFlags};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

/// Name of the attach socket in the container's state dir.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// Frame kind: container stdout (or pty output).
pub const FRAME_STDOUT: u8 = 1;
/// Frame kind: container stderr.
pub const FRAME_STDERR: u8 = 2;
/// Frame kind: input for the container's stdin.
pub const FRAME_STDIN: u8 = 0;
/// Frame kind: terminal size.
pub const FRAME_RESIZE: u8 = 3;
/// Frame kind: the client's stdin ended (empty payload).
pub const FRAME_STDIN_CLOSE: u8 = 4;
/// Largest frame a client may send.
const MAX_FRAME: usize = 1 << 20;

/// Encodes one frame.
pub fn encode_frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Splits complete frames off the front of `buf`.
pub fn take_frames(buf: &mut Vec<u8>) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while buf.len() - pos >= 5 {
        let len =
            u32::from_be_bytes([buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4]]) as usize;
        if len > MAX_FRAME {
            return Err(format!("attach frame of {len} bytes is too large"));
        }
        if buf.len() - pos - 5 < len {
            break;
        }
        out.push((buf[pos], buf[pos + 5..pos + 5 + len].to_vec()));
        pos += 5 + len;
    }
    buf.drain(..pos);
    Ok(out)
}

/// Client input queued for a container that is not reading; past this
/// the hub stops reading its clients (backpressure).
pub(crate) const MAX_PENDING_INPUT: usize = 256 * 1024;

struct Client {
    sock: UnixStream,
    inbuf: Vec<u8>,
    /// The client sent stdin (data or its close): its detaching ends a
    /// `stdin_once` container's stdin.
    used_stdin: bool,
}

/// The monitor's attach endpoint.
pub(crate) struct AttachHub {
    listener: UnixListener,
    clients: Vec<Client>,
    /// Where client input goes: the stdin pipe's write end or the pty master.
    stdin: Option<OwnedFd>,
    /// The pty master, for resizes.
    pty: Option<OwnedFd>,
    /// Close `stdin` after the first stdin-using client is done with it.
    stdin_once: bool,
    /// Input the container has not taken yet, oldest first.
    pending: Vec<u8>,
    /// `stdin_once` fired: close the pipe once `pending` is written.
    close_after_pending: bool,
    /// `stdin_once` already ended the input (VEOF typed or pipe closed).
    stdin_ended: bool,
    /// The last byte of input queued, to know whether a line is open.
    last_input: Option<u8>,
}

impl AttachHub {
    /// Binds `attach.sock` in `dir`. `stdin` must be the only write end of
    /// the container's stdin pipe for `stdin_once` to reach the container.
    pub(crate) fn bind(
        dir: &Path,
        stdin: Option<OwnedFd>,
        pty: Option<OwnedFd>,
        stdin_once: bool,
    ) -> Result<Self, String> {
        let listener = crate::state::bind_socket(dir, ATTACH_SOCKET)
            .map_err(|e| format!("bind attach socket: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("attach socket: {e}"))?;
        if let Some(fd) = &stdin {
            set_nonblocking(fd.as_fd());
        }
        Ok(AttachHub {
            listener,
            clients: Vec::new(),
            stdin,
            pty,
            stdin_once,
            pending: Vec::new(),
            close_after_pending: false,
            stdin_ended: false,
            last_input: None,
        })
    }

    /// Queues input for the container and writes what it takes now.
    fn queue_input(&mut self, data: &[u8]) {
        if self.stdin.is_some() && !self.close_after_pending {
            self.pending.extend_from_slice(data);
            self.last_input = data.last().copied().or(self.last_input);
        }
        self.flush_input();
    }

    /// Writes queued input until the pipe or pty would block; closes the
    /// pipe when `stdin_once` asked for it and everything is written.
    fn flush_input(&mut self) {
        while !self.pending.is_empty() {
            let Some(fd) = &self.stdin else {
                self.pending.clear();
                break;
            };
            match nix::unistd::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                // The container closed its stdin: nobody will read it.
                Err(_) => self.pending.clear(),
            }
        }
        if self.close_after_pending {
            // Dropping the last write end: the container reads EOF.
            self.stdin = None;
            self.close_after_pending = false;
        }
    }

    /// `stdin_once`: the first stdin-using client is done; end the
    /// container's input after what is queued.
    fn end_input(&mut self) {
        if !self.stdin_once || self.stdin_ended {
            return;
        }
        self.stdin_ended = true;
        let Some(pty) = &self.pty else {
            self.close_after_pending = true;
            self.flush_input();
            return;
        };
        let eof = crate::exec_stream::terminal_eof(pty.as_fd(), self.last_input);
        self.queue_input(&eof);
    }

    /// The fds to poll: the listener, then each client (for input, unless
    /// the input queue is full), then the container's stdin while input
    /// is queued for it.
    pub(crate) fn poll_fds(&self) -> Vec<PollFd<'_>> {
        let client_events = if self.pending.len() >= MAX_PENDING_INPUT {
            PollFlags::empty()
        } else {
            PollFlags::POLLIN
        };
        let stdin = self
            .stdin
            .as_ref()
            .filter(|_| !self.pending.is_empty())
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLOUT));
        std::iter::once(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN))
            .chain(
                self.clients
                    .iter()
                    .map(|c| PollFd::new(c.sock.as_fd(), client_events)),
            )
            .chain(stdin)
            .collect()
    }

    /// Handles readiness as reported for [`Self::poll_fds`] (same order).
    pub(crate) fn handle(&mut self, ready: &[bool]) {
        // Clients first: accepting shifts nothing before them.
        self.flush_input();
        let mut gone = Vec::new();
        let mut close_stdin = false;
        let mut input = Vec::new();
        let full = self.pending.len() >= MAX_PENDING_INPUT;
        for (k, c) in self.clients.iter_mut().enumerate() {
            if !ready.get(k + 1).copied().unwrap_or(false) {
                continue;
            }
            // A full queue reads a client only for its hang-up.
            let mut buf = vec![0u8; if full { 1 } else { 16 * 1024 }];
            let frames = match c.sock.read(&mut buf) {
                Ok(0) => Err(()),
                Ok(n) => {
                    c.inbuf.extend_from_slice(&buf[..n]);
                    take_frames(&mut c.inbuf).map_err(|_| ())
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Vec::new()),
                Err(_) => Err(()),
            };
            let Ok(frames) = frames else {
                close_stdin |= c.used_stdin;
                gone.push(k);
                continue;
            };
            for (kind, payload) in frames {
                match kind {
                    FRAME_STDIN => {
                        c.used_stdin = true;
                        input.push(payload);
                    }
                    FRAME_STDIN_CLOSE => {
                        c.used_stdin = true;
                        close_stdin = true;
                    }
                    FRAME_RESIZE => apply_resize(self.pty.as_ref(), &payload),
                    _ => {}
                }
            }
        }
        for data in input {
            self.queue_input(&data);
        }
        for k in gone.into_iter().rev() {
            self.clients.remove(k);
        }
        if close_stdin {
            self.end_input();
        }
        if ready.first().copied().unwrap_or(false) {
            while let Ok((sock, _)) = self.listener.accept() {
                if sock.set_nonblocking(true).is_ok() {
                    self.clients.push(Client {
                        sock,
                        inbuf: Vec::new(),
                        used_stdin: false,
                    });
                }
            }
        }
    }

    /// Sends output to every client; drops those that cannot take it now.
    pub(crate) fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if self.clients.is_empty() || data.is_empty() {
            return;
        }
        let frame = encode_frame(kind, data);
        self.clients
            .retain_mut(|c| matches!(c.sock.write(&frame), Ok(n) if n == frame.len()));
    }

    /// Disconnects every client (the container exited).
    pub(crate) fn close(&mut self) {
        self.clients.clear();
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    if let Ok(fl) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) {
        let fl = nix::fcntl::OFlag::from_bits_retain(fl) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(fl));
    }
}

fn apply_resize(pty: Option<&OwnedFd>, payload: &[u8]) {
    if let (Some(fd), [w0, w1, h0, h1]) = (pty, payload) {
        let w = u16::from_be_bytes([*w0, *w1]);
        let h = u16::from_be_bytes([*h0, *h1]);
        let _ = crate::exec_stream::resize_pty(fd.as_fd(), w, h);
    }
}

impl crate::Runtime {
    /// The attach socket of container `id` (present while it runs).
    pub fn attach_socket(&self, id: &str) -> std::path::PathBuf {
        self.container_dir(id).join(ATTACH_SOCKET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_at_their_boundaries() {
        let mut buf = encode_frame(FRAME_STDIN, b"abc");
        buf.extend(encode_frame(FRAME_RESIZE, &[0, 80, 0, 24]));
        let partial = encode_frame(FRAME_STDIN, b"rest");
        buf.extend(&partial[..3]);
        let got = take_frames(&mut buf).unwrap();
        assert_eq!(
            got,
            vec![
                (FRAME_STDIN, b"abc".to_vec()),
                (FRAME_RESIZE, vec![0, 80, 0, 24])
            ]
        );
        buf.extend(&partial[3..]);
        assert_eq!(
            take_frames(&mut buf).unwrap(),
            vec![(FRAME_STDIN, b"rest".to_vec())]
        );
        assert!(buf.is_empty());
        let mut huge = vec![0u8, 0xff, 0xff, 0xff, 0xff];
        assert!(take_frames(&mut huge).is_err());
    }

    #[test]
    fn two_clients_get_the_output_and_input_reaches_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        set_nonblocking(r.as_fd());
        let mut hub = AttachHub::bind(dir.path(), Some(w), None, false).unwrap();
        let mut a = UnixStream::connect(dir.path().join(ATTACH_SOCKET)).unwrap();
        let mut b = UnixStream::connect(dir.path().join(ATTACH_SOCKET)).unwrap();
        hub.handle(&[true]);
        assert_eq!(hub.clients.len(), 2);
        hub.broadcast(FRAME_STDOUT, b"hello");
        for c in [&mut a, &mut b] {
            let mut got = [0u8; 10];
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got[..], &encode_frame(FRAME_STDOUT, b"hello")[..]);
        }
        a.write_all(&encode_frame(FRAME_STDIN, b"typed")).unwrap();
        // Bounded wait for the bytes to be readable by the hub.
        for _ in 0..100 {
            let ready = vec![false, true, false];
            hub.handle(&ready);
            let mut out = [0u8; 5];
            let n = nix::unistd::read(&r, &mut out).unwrap_or(0);
            if n > 0 {
                assert_eq!(&out[..n], b"typed");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("input never reached stdin");
    }

    /// Reads `r` (non-blocking) until EOF or data, for at most a second.
    fn read_pipe(r: &OwnedFd) -> Option<Vec<u8>> {
        for _ in 0..100 {
            let mut out = [0u8; 64];
            match nix::unistd::read(r, &mut out) {
                Ok(n) => return Some(out[..n].to_vec()),
                Err(nix::errno::Errno::EAGAIN) => {}
                Err(_) => return None,
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        None
    }

    /// A stdin_once hub whose container stdin is a pipe (its read end
    /// returned, non-blocking) and one client connected to it.
    fn stdin_once_hub() -> (tempfile::TempDir, OwnedFd, AttachHub, UnixStream) {
        let dir = tempfile::tempdir().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        set_nonblocking(r.as_fd());
        let hub = AttachHub::bind(dir.path(), Some(w), None, true).unwrap();
        let a = UnixStream::connect(dir.path().join(ATTACH_SOCKET)).unwrap();
        (dir, r, hub, a)
    }

    /// Runs the hub until the pipe yields something (data or EOF).
    fn pump(hub: &mut AttachHub, r: &OwnedFd, clients: usize) -> Vec<u8> {
        for _ in 0..100 {
            hub.handle(&vec![true; clients + 1]);
            let mut out = [0u8; 64];
            match nix::unistd::read(r, &mut out) {
                Ok(n) => return out[..n].to_vec(),
                Err(nix::errno::Errno::EAGAIN) => {}
                Err(e) => panic!("read stdin pipe: {e}"),
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("nothing reached the stdin pipe");
    }

    #[test]
    fn stdin_once_closes_the_container_stdin_when_the_client_closes_its_stdin() {
        let (_dir, r, mut hub, mut a) = stdin_once_hub();
        hub.handle(&[true]);
        a.write_all(&encode_frame(FRAME_STDIN, b"echo hello\n"))
            .unwrap();
        assert_eq!(pump(&mut hub, &r, 1), b"echo hello\n");
        a.write_all(&encode_frame(FRAME_STDIN_CLOSE, &[])).unwrap();
        // EOF: the hub held the only write end and dropped it.
        assert_eq!(pump(&mut hub, &r, 1), b"");
    }

    #[test]
    fn stdin_once_closes_the_container_stdin_when_a_stdin_client_detaches() {
        let (dir, r, mut hub, mut a) = stdin_once_hub();
        let b = UnixStream::connect(dir.path().join(ATTACH_SOCKET)).unwrap();
        hub.handle(&[true]);
        // A client that never used stdin leaves: stdin stays open.
        drop(b);
        a.write_all(&encode_frame(FRAME_STDIN, b"x")).unwrap();
        assert_eq!(pump(&mut hub, &r, 2), b"x");
        drop(a);
        assert_eq!(pump(&mut hub, &r, 1), b"");
    }

    #[test]
    fn input_the_container_does_not_read_at_once_is_queued_not_lost() {
        let (_dir, r, mut hub, mut a) = stdin_once_hub();
        hub.handle(&[true]);
        // Four times a pipe's 64 KiB, written while nobody reads the pipe;
        // then the client's stdin ends.
        let sent: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        let writer = std::thread::spawn(move || {
            for chunk in sent.chunks(8 * 1024) {
                a.write_all(&encode_frame(FRAME_STDIN, chunk)).unwrap();
            }
            a.write_all(&encode_frame(FRAME_STDIN_CLOSE, &[])).unwrap();
            a
        });
        for _ in 0..50 {
            hub.handle(&[true, true]);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // Now the container reads: everything arrives, in order, then EOF.
        let mut got = Vec::new();
        for _ in 0..5000 {
            hub.handle(&[true, true]);
            let mut out = [0u8; 64 * 1024];
            match nix::unistd::read(&r, &mut out) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&out[..n]),
                Err(nix::errno::Errno::EAGAIN) => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("read stdin pipe: {e}"),
            }
        }
        let _client = writer.join().unwrap();
        let want: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "input reordered or corrupted");
    }

    #[test]
    fn stdin_once_with_a_tty_types_veof_so_the_reader_sees_eof() {
        let dir = tempfile::tempdir().unwrap();
        let (master, slave) = crate::exec_stream::open_pty_for_tests().unwrap();
        set_nonblocking(slave.as_fd());
        let stdin = master.try_clone().unwrap();
        let mut hub = AttachHub::bind(dir.path(), Some(stdin), Some(master), true).unwrap();
        let mut a = UnixStream::connect(dir.path().join(ATTACH_SOCKET)).unwrap();
        hub.handle(&[true]);
        // A partial line, then the client's stdin ends.
        a.write_all(&encode_frame(FRAME_STDIN, b"partial")).unwrap();
        a.write_all(&encode_frame(FRAME_STDIN_CLOSE, &[])).unwrap();
        // Canonical mode: the partial line is handed over, then a read of
        // 0 bytes (what `cat` takes for end of file).
        let mut reads = Vec::new();
        for _ in 0..200 {
            hub.handle(&[true, true]);
            let mut out = [0u8; 64];
            match nix::unistd::read(&slave, &mut out) {
                Ok(n) => {
                    reads.push(out[..n].to_vec());
                    if n == 0 {
                        break;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("read pty: {e}"),
            }
        }
        assert_eq!(reads, vec![b"partial".to_vec(), Vec::new()]);
    }

    #[test]
    fn without_stdin_once_the_container_stdin_outlives_its_clients() {
        let dir = tempfile::tempdir().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        set_nonblocking(r.as_fd());
        let mut hub = AttachHub::bind(dir.path(), Some(w), None, false).unwrap();
        let mut a = UnixStream::connect(dir.path().join(ATTACH_SOCKET)).unwrap();
        hub.handle(&[true]);
        a.write_all(&encode_frame(FRAME_STDIN_CLOSE, &[])).unwrap();
        drop(a);
        for _ in 0..5 {
            hub.handle(&[true, true]);
        }
        assert_eq!(read_pipe(&r), None, "stdin must stay open");
        assert!(hub.stdin.is_some());
    }
}
