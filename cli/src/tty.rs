//! The local terminal: raw mode for interactive sessions (restored when the
//! guard drops, which also happens while a panic unwinds) and its size.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::termios::{self, SetArg, Termios};

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// A terminal in raw mode; dropping it puts the saved settings back.
pub struct RawMode {
    fd: std::os::fd::RawFd,
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on stdin into raw mode (no echo, no line editing,
    /// no signals from Ctrl-C: those keys belong to the remote terminal).
    pub fn enter_stdin() -> nix::Result<RawMode> {
        let stdin = std::io::stdin();
        let fd = stdin.as_fd();
        let saved = termios::tcgetattr(fd)?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw)?;
        Ok(RawMode {
            fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: stdin stays open for the life of the process; the fd was valid when the guard was made.
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let _ = termios::tcsetattr(fd, SetArg::TCSANOW, &self.saved);
    }
}

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);

/// The size (columns, rows) of the terminal on `fd`, if it is one with a size.
pub fn size(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let res = unsafe { tiocgwinsz(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut ws) };
    match res {
        Ok(_) if ws.ws_col > 0 && ws.ws_row > 0 => Some((ws.ws_col, ws.ws_row)),
        _ => None,
    }
}

/// The size of the local terminal: stdout's, else stdin's.
pub fn local_size() -> Option<(u16, u16)> {
    size(std::io::stdout().as_fd()).or_else(|| size(std::io::stdin().as_fd()))
}
