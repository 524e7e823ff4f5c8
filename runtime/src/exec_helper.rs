//! How an exec (sync or interactive) is stopped without leaving anything
//! behind in the container.
//!
//! The exec helper (`cria-monitor exec`) stays outside the container's pid
//! namespace and forks the process into it. If the helper died first, the
//! process (killed by its PDEATHSIG) would be an orphan of the helper's own
//! pid namespace, left to whatever reaps there (criad's host init, which
//! need not): its zombie stays in the container's /proc (critest's
//! "execSync with timeout" saw `pgrep sleep` print it). Nobody but its
//! parent can reap it reliably, so the helper must outlive it.
//!
//! So the caller does not SIGKILL the helper: it sends [`STOP_SIGNAL`]
//! ([`request_stop`], [`stop_helper`]). The helper keeps the stop signals
//! blocked from its first instruction ([`block_signals`]), so a request that
//! arrives while it is still joining the container is not lost; once the
//! process runs, [`wait_process`] kills the process's whole process group
//! (it leads its own: [`own_process_group`]) and reaps the process itself.
//! Its descendants that left the group are the container's, as with runc.

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

/// The signal that asks an exec helper to kill and reap its process.
pub const STOP_SIGNAL: Signal = Signal::SIGTERM;

/// Signals the helper takes as a stop request (a terminal's too, for people
/// running it by hand), plus SIGCHLD, all read synchronously.
fn helper_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [STOP_SIGNAL, Signal::SIGINT, Signal::SIGHUP, Signal::SIGCHLD] {
        set.add(s);
    }
    set
}

/// In the helper, first thing: holds stop requests and SIGCHLD pending until
/// [`wait_process`] reads them. The forked child unblocks them before exec
/// (`child_prepare_signals`); pending signals are not inherited by fork.
pub(crate) fn block_signals() -> Result<(), String> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&helper_signals()), None)
        .map_err(|e| format!("block signals: {}", e.desc()))
}

/// In the exec'd child, after any `setsid`: leads its own process group, so
/// the helper can kill what it forks along with it.
pub(crate) fn own_process_group() -> Result<(), String> {
    let me = nix::unistd::getpid();
    if nix::unistd::getpgrp() != me {
        nix::unistd::setpgid(me, me).map_err(|e| format!("setpgid: {}", e.desc()))?;
    }
    Ok(())
}

/// In the helper: waits for `child` and returns its exit code (128+signal
/// when signalled). On a stop request, SIGKILLs the child's process group and
/// the child (in case it has not made its group yet), and still reaps it.
pub(crate) fn wait_process(child: Pid) -> Result<i32, String> {
    let set = helper_signals();
    loop {
        // Checked before every wait: SIGCHLD may have come before we blocked
        // in sigwait, and several exits coalesce into one signal.
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(format!("wait: {}", e.desc())),
        }
        match set.wait() {
            Ok(Signal::SIGCHLD) | Err(Errno::EINTR) => {}
            Ok(_) => {
                let _ = killpg(child, Signal::SIGKILL);
                let _ = kill(child, Signal::SIGKILL);
            }
            Err(e) => return Err(format!("sigwait: {}", e.desc())),
        }
    }
}

/// Asks the exec helper `pid` to kill and reap its process (it then exits
/// with 128+9). For callers that do not hold the helper's `Child`; whoever
/// holds it still reaps the helper.
pub fn request_stop(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(pid), STOP_SIGNAL);
    }
}

/// Stops an exec and reaps its helper: [`request_stop`], then waits up to
/// `grace` for the helper, then SIGKILLs it (the process then dies by its
/// PDEATHSIG but may stay a zombie in the container: the fallback only).
pub fn stop_helper(helper: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    request_stop(helper.id());
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(s) = helper.try_wait()? {
            return Ok(s);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = helper.kill();
    helper.wait()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    #[test]
    fn stop_reaps_a_helper_that_would_not_stop() {
        // A process that ignores the stop request: the grace runs out and it
        // is SIGKILLed, and reaped.
        let mut child = Command::new("sh")
            // exec: sleep inherits the ignored SIGTERM, and nothing is left
            // behind once it is killed.
            .args(["-c", "trap '' TERM; exec sleep 30"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        let st = stop_helper(&mut child, Duration::from_millis(200)).unwrap();
        assert_eq!(st.signal(), Some(libc::SIGKILL));
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
