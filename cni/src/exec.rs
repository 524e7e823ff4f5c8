//! Running a plugin: the seam between the CNI logic and the real processes.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::error::{CniError, Result};

/// The CNI operations a runtime invokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Ask which spec versions the plugin speaks.
    Version,
}

impl Command {
    /// The CNI_COMMAND value.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
        }
    }
}

/// One plugin invocation: everything the process gets.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecRequest {
    /// The plugin's `type` (for messages).
    pub plugin: String,
    /// The executable.
    pub path: PathBuf,
    /// The operation (also in `env` as CNI_COMMAND).
    pub command: Command,
    /// The CNI_* variables, added to the runtime's own environment.
    pub env: Vec<(String, String)>,
    /// The config on stdin.
    pub stdin: Vec<u8>,
    /// Kill the plugin after this long.
    pub timeout: Duration,
}

/// Runs plugins. The real one spawns processes; tests inject recording fakes.
pub trait PluginExec: Send + Sync {
    /// Runs one plugin and returns its stdout, or the error it reported.
    fn exec(&self, req: ExecRequest) -> impl Future<Output = Result<Vec<u8>>> + Send;
}

/// Runs plugins as child processes (the real thing).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessExec;

/// The error object a failing plugin prints on stdout.
#[derive(Deserialize)]
struct PluginErrorJson {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl PluginExec for ProcessExec {
    async fn exec(&self, req: ExecRequest) -> Result<Vec<u8>> {
        let mut child = tokio::process::Command::new(&req.path)
            // Plugins inherit our environment (portmap needs PATH to find
            // iptables) plus the CNI_* variables, which override stale ones.
            .envs(req.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // On timeout the future is dropped, which kills the plugin.
            .kill_on_drop(true)
            .spawn()
            .map_err(CniError::io("spawn cni plugin", &req.path))?;
        let stdin = child.stdin.take();
        let input = req.stdin.clone();
        let run = async move {
            let write = async move {
                if let Some(mut stdin) = stdin {
                    // A plugin that exits without reading all of stdin is
                    // judged by its exit status and output, not by EPIPE.
                    let _ = stdin.write_all(&input).await;
                }
            };
            let (_, output) = tokio::join!(write, child.wait_with_output());
            output
        };
        let output = match tokio::time::timeout(req.timeout, run).await {
            Ok(output) => output.map_err(CniError::io("wait for cni plugin", &req.path))?,
            Err(_) => {
                return Err(CniError::Timeout {
                    plugin: req.plugin,
                    command: req.command.as_str(),
                    after: req.timeout,
                })
            }
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(plugin_failure(
            &req,
            &output.stdout,
            &output.stderr,
            output.status.code(),
        ))
    }
}

/// Turns a failed plugin run into an error carrying the plugin's own words.
fn plugin_failure(req: &ExecRequest, stdout: &[u8], stderr: &[u8], exit: Option<i32>) -> CniError {
    let stderr = String::from_utf8_lossy(stderr).trim().to_string();
    let (code, msg, details) = match serde_json::from_slice::<PluginErrorJson>(stdout) {
        Ok(e) if !e.msg.is_empty() => (e.code, e.msg, e.details),
        _ => {
            let stdout = String::from_utf8_lossy(stdout).trim().to_string();
            let msg = [stdout, stderr]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_else(|| match exit {
                    Some(c) => format!("exit status {c}"),
                    None => "killed by a signal".to_string(),
                });
            (0, msg, String::new())
        }
    };
    CniError::Plugin {
        plugin: req.plugin.clone(),
        command: req.command.as_str(),
        code,
        msg,
        details,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        let path = dir.join("plugin");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn request(path: PathBuf, timeout: Duration) -> ExecRequest {
        ExecRequest {
            plugin: "fake".into(),
            path,
            command: Command::Add,
            env: vec![
                ("CNI_COMMAND".into(), "ADD".into()),
                ("CNI_IFNAME".into(), "eth0".into()),
            ],
            stdin: br#"{"name":"n"}"#.to_vec(),
            timeout,
        }
    }

    #[tokio::test]
    async fn passes_env_and_stdin_and_returns_stdout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = script(
            dir.path(),
            r#"printf '%s %s ' "$CNI_COMMAND" "$CNI_IFNAME"; cat"#,
        );
        let out = ProcessExec
            .exec(request(path, Duration::from_secs(10)))
            .await
            .expect("ok");
        assert_eq!(String::from_utf8_lossy(&out), r#"ADD eth0 {"name":"n"}"#);
    }

    #[tokio::test]
    async fn plugin_error_object_reaches_the_caller() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = script(
            dir.path(),
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"no luck","details":"try again"}'; exit 1"#,
        );
        match ProcessExec
            .exec(request(path, Duration::from_secs(10)))
            .await
        {
            Err(CniError::Plugin {
                code, msg, details, ..
            }) => {
                assert_eq!(
                    (code, msg.as_str(), details.as_str()),
                    (11, "no luck", "try again")
                );
            }
            other => panic!("want a plugin error, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn stderr_is_the_message_when_stdout_is_not_an_error_object() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = script(dir.path(), "echo 'exploded' >&2; exit 3");
        let err = ProcessExec
            .exec(request(path, Duration::from_secs(10)))
            .await
            .expect_err("fails");
        assert!(err.to_string().contains("exploded"), "{err}");
    }

    #[tokio::test]
    async fn slow_plugin_times_out_and_is_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("finished");
        let path = script(dir.path(), &format!("sleep 2; touch {}", marker.display()));
        let started = std::time::Instant::now();
        let err = ProcessExec
            .exec(request(path, Duration::from_millis(300)))
            .await
            .expect_err("times out");
        assert!(matches!(err, CniError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Killed: it never gets to finish its work.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!marker.exists(), "plugin kept running after the timeout");
    }

    /// criad runs sandbox work on blocking threads; the documented way to
    /// call this async API from there must work (processes included).
    #[test]
    fn runs_from_a_spawn_blocking_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = script(dir.path(), r#"echo "$CNI_COMMAND""#);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let out = rt.block_on(async move {
            tokio::task::spawn_blocking(move || {
                let req = request(path, Duration::from_secs(10));
                tokio::runtime::Handle::current().block_on(ProcessExec.exec(req))
            })
            .await
            .expect("join")
        });
        assert_eq!(out.expect("plugin ran"), b"ADD\n");
    }
}
