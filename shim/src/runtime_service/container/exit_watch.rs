//! Watches a running container for its exit without holding a thread: the
//! monitor exits right after the container, so a pidfd of the monitor turns
//! readable at that moment; then the final state is read and recorded.

use super::record_exit;
use crate::runtime_service::context::blocking;
use crate::runtime_service::RuntimeContext;
use cria_runtime::{RuntimeError, Status as RtStatus};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;

/// Delay before re-reading the state when the monitor cannot be watched.
const RETRY: Duration = Duration::from_millis(500);

/// Starts a task that records the container's exit when it happens.
pub(crate) fn watch(ctx: Arc<RuntimeContext>, id: String) {
    tokio::spawn(async move {
        loop {
            let (rt_ctx, cid) = (ctx.clone(), id.clone());
            let state = match blocking(move || rt_ctx.runtime.state(&cid)).await {
                Ok(Ok(state)) => state,
                Ok(Err(RuntimeError::NotFound(_))) | Err(_) => return,
                Ok(Err(e)) => {
                    tracing::warn!(container = %id, error = %e, "reading container state");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            if matches!(state.status, RtStatus::Stopped | RtStatus::Unknown) {
                let Ok(entry) = ctx.containers.get(&id) else {
                    return;
                };
                if let Err(e) = record_exit(&ctx, &entry, &state) {
                    tracing::warn!(container = %id, error = %e, "recording exit");
                }
                return;
            }
            if wait_exit(state.monitor_pid).await.is_err() {
                tokio::time::sleep(RETRY).await;
            }
        }
    });
}

/// Resolves when process `pid` has exited.
async fn wait_exit(pid: i32) -> std::io::Result<()> {
    if pid <= 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged
    // until the AsyncFd is dropped.
    let afd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let _ready = afd.readable().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_when_the_process_exits() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let waited = tokio::time::timeout(Duration::from_secs(10), wait_exit(pid)).await;
        assert!(waited.unwrap().is_ok());
        child.wait().unwrap();
        assert!(wait_exit(0).await.is_err());
    }
}
