//! The `cria` binary run as a person would, against a real criad and a real
//! registry started by the cria-tests harness.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use cria_proto::v1::{ListContainersRequest, ListPodSandboxRequest};
use cria_tests::{Criad, CriadConfig, Fixture, Registry};

/// Upper bound for any single `cria` invocation in these tests.
const CMD_TIMEOUT: Duration = Duration::from_secs(120);

/// A registry holding busybox, a criad that may pull from it, and a private pod log root.
struct Env {
    reg: Registry,
    criad: Criad,
    logs: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        let reg = Registry::start().expect("registry");
        Fixture::get("busybox")
            .expect("busybox fixture")
            .push(&reg, "latest", "library/busybox:latest", &[])
            .expect("push busybox");
        let criad = Criad::start(CriadConfig {
            insecure: vec![reg.host()],
            ..CriadConfig::default()
        })
        .await
        .expect("criad");
        let logs = tempfile::Builder::new()
            .prefix("cria-cli-logs-")
            .tempdir()
            .expect("log root");
        Env { reg, criad, logs }
    }

    fn busybox(&self) -> String {
        format!("{}/library/busybox:latest", self.reg.host())
    }

    /// `cria --endpoint <this criad> ARGS`, bounded in time, stdin closed.
    fn cria(&self, args: &[&str]) -> Output {
        self.cria_stdin(args, b"")
    }

    /// `cria --endpoint <this criad> ARGS` with `stdin` piped in, bounded in time.
    fn cria_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        cria_at_stdin(&self.criad.socket(), self.logs.path(), args, stdin)
    }

    /// Containers and pods criad still has.
    async fn leftovers(&self) -> (usize, usize) {
        let mut rt = self.criad.runtime().await.expect("runtime client");
        let c = rt
            .list_containers(ListContainersRequest { filter: None })
            .await
            .expect("list containers")
            .into_inner()
            .containers
            .len();
        let p = rt
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .expect("list pods")
            .into_inner()
            .items
            .len();
        (c, p)
    }
}

fn cria_at(socket: &Path, log_root: &Path, args: &[&str]) -> Output {
    cria_at_stdin(socket, log_root, args, b"")
}

fn cria_at_stdin(socket: &Path, log_root: &Path, args: &[&str], stdin: &[u8]) -> Output {
    Command::cargo_bin("cria")
        .expect("cria binary")
        .arg("--endpoint")
        .arg(socket)
        .env("CRIA_LOG_ROOT", log_root)
        .env_remove("CONTAINER_RUNTIME_ENDPOINT")
        .args(args)
        .timeout(CMD_TIMEOUT)
        .write_stdin(stdin.to_vec())
        .output()
        .expect("running cria")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts success and returns stdout.
fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

#[tokio::test]
async fn pull_shows_layer_progress_and_ends_with_the_image_id() {
    let env = Env::start().await;
    let image = env.busybox();
    let manifest = env
        .reg
        .manifest("library/busybox", "latest")
        .expect("manifest");
    let config = manifest["config"]["digest"]
        .as_str()
        .expect("config digest");
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .expect("layer digest");

    let out = ok(env.cria(&["pull", &image]), "cria pull");
    let lines: Vec<&str> = out.lines().collect();
    // Not a terminal: plain lines, one per layer start/finish, then the id.
    assert_eq!(
        lines.first(),
        Some(&format!("pulling {image}").as_str()),
        "{out}"
    );
    let short = &layer[..19];
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(short) && l.ends_with(" done")),
        "a finished line for layer {layer}:\n{out}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("pulled {image} in "))),
        "{out}"
    );
    assert_eq!(
        lines.last(),
        Some(&config),
        "ends with the image id:\n{out}"
    );

    // The image is listed with its short id.
    let images = ok(env.cria(&["images"]), "cria images");
    assert!(
        images.contains(&config["sha256:".len().."sha256:".len() + 12]),
        "{images}"
    );
    let ids = ok(env.cria(&["images", "-q"]), "cria images -q");
    assert_eq!(ids.trim(), config);
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(env.cria(&["inspect", &image]), "inspect image")).expect("json");
    assert_eq!(inspect["kind"], "image");
    assert_eq!(inspect["status"]["id"], config);

    // rmi removes it; a second rmi says there is no such image.
    assert_eq!(
        ok(env.cria(&["rmi", &image]), "rmi"),
        format!("Deleted: {image}\n")
    );
    assert_eq!(ok(env.cria(&["images", "-q"]), "images -q"), "");
    let again = env.cria(&["rmi", &image]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains(&format!("no such image: {image}")));
}

#[tokio::test]
async fn run_prints_output_returns_exit_code_and_rm_leaves_nothing() {
    let env = Env::start().await;
    let image = env.busybox();
    // The image is not there yet: run pulls it (progress on stderr, not mixed into stdout).
    let out = env.cria(&[
        "run",
        "--rm",
        &image,
        "sh",
        "-c",
        "echo hi; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    let err = text(&out.stderr);
    assert!(
        err.contains("oops\n"),
        "container stderr goes to stderr: {err}"
    );
    assert!(err.contains(&format!("pulling {image}")), "{err}");
    assert_eq!(
        env.leftovers().await,
        (0, 0),
        "--rm removed container and pod"
    );
    let left: Vec<PathBuf> = std::fs::read_dir(env.logs.path())
        .expect("log root")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(left.is_empty(), "pod log directory removed: {left:?}");

    // Without --rm the exited container stays and `ps -a` shows its exit code.
    let out = env.cria(&["run", "--name", "kept", &image, "sh", "-c", "exit 0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ps = ok(env.cria(&["ps", "-a"]), "cria ps -a");
    let row = ps.lines().find(|l| l.contains("kept")).unwrap_or_default();
    assert!(row.contains("Exited (0)"), "{ps}");
    ok(env.cria(&["rm", "kept"]), "cria rm");
    assert_eq!(
        env.leftovers().await,
        (0, 0),
        "rm took the pod cria run made"
    );
}

#[tokio::test]
async fn env_and_volumes_reach_the_container() {
    let env = Env::start().await;
    let image = env.busybox();
    let data = tempfile::tempdir().expect("data dir");
    std::fs::write(data.path().join("greeting"), "from the host\n").expect("write");
    let ro = format!("{}:/data:ro", data.path().display());
    let rw_dir = tempfile::tempdir().expect("rw dir");
    let rw = format!("{}:/out", rw_dir.path().display());
    let out = env.cria(&[
        "run", "--rm", "-e", "GREETING=hello there", "-v", &ro, "-v", &rw, &image, "sh", "-c",
        "echo \"$GREETING\"; cat /data/greeting; touch /data/x 2>/dev/null && echo writable; echo made > /out/f",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello there\nfrom the host\n");
    assert!(!data.path().join("x").exists(), ":ro mount is read-only");
    assert_eq!(
        std::fs::read_to_string(rw_dir.path().join("f")).expect("written through the mount"),
        "made\n"
    );
}

#[tokio::test]
async fn exec_and_logs_follow() {
    let env = Env::start().await;
    let image = env.busybox();
    let id = ok(
        env.cria(&[
            "run",
            "-d",
            "--name",
            "box",
            &image,
            "sh",
            "-c",
            "echo started; sleep 60",
        ]),
        "cria run -d",
    );
    let id = id.trim();
    assert_eq!(id.len(), 64, "run -d prints the container id: {id}");

    let out = env.cria(&[
        "exec",
        "box",
        "sh",
        "-c",
        "echo in-exec; echo to-err >&2; exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "in-exec\n");
    assert_eq!(text(&out.stderr), "to-err\n");
    // By unique id prefix too.
    ok(env.cria(&["exec", &id[..8], "true"]), "exec by id prefix");

    // The other views of a running container.
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(env.cria(&["inspect", "box"]), "inspect")).expect("json");
    assert_eq!(inspect["kind"], "container");
    assert_eq!(inspect["status"]["id"], id);
    assert_eq!(inspect["status"]["state"], "CONTAINER_RUNNING");
    let ps: serde_json::Value =
        serde_json::from_str(&ok(env.cria(&["ps", "-o", "json"]), "ps -o json")).expect("json");
    assert_eq!(ps[0]["name"], "box");
    assert_eq!(ps[0]["pod"], "box");
    let ps = ok(env.cria(&["ps"]), "ps");
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id[..12]) && l.contains(" Up ")),
        "{ps}"
    );
    let pods = ok(env.cria(&["pods", "-o", "yaml"]), "pods -o yaml");
    assert!(pods.contains("name: box"), "{pods}");
    let stats = ok(env.cria(&["stats"]), "stats");
    assert!(stats.lines().any(|l| l.starts_with(&id[..12])), "{stats}");

    // logs -f prints lines as they come and returns when the container exits.
    ok(
        env.cria(&[
            "run",
            "-d",
            "--name",
            "counter",
            &image,
            "sh",
            "-c",
            "for i in 1 2 3; do echo n$i; sleep 0.3; done; exit 5",
        ]),
        "cria run -d counter",
    );
    let out = ok(env.cria(&["logs", "-f", "counter"]), "cria logs -f");
    assert_eq!(out, "n1\nn2\nn3\n");
    let tail = ok(env.cria(&["logs", "--tail", "1", "counter"]), "logs --tail");
    assert_eq!(tail, "n3\n");

    // stop, then the exited container shows its status and can be removed without -f.
    assert_eq!(ok(env.cria(&["stop", "-t", "1", "box"]), "stop"), "box\n");
    let ps = ok(env.cria(&["ps", "-a"]), "ps -a");
    let row = ps.lines().find(|l| l.contains(" box ")).unwrap_or_default();
    assert!(row.contains("Exited ("), "{ps}");
    assert_eq!(ok(env.cria(&["ps", "-q"]), "ps -q"), "", "nothing running");
    ok(env.cria(&["rm", "box", "counter"]), "cria rm");
    assert_eq!(env.leftovers().await, (0, 0));
}

#[tokio::test]
async fn ctrl_c_stops_the_container_prints_its_last_words_and_rm_cleans_up() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command as Std, Stdio};

    let env = Env::start().await;
    let image = env.busybox();
    let mut child = Std::new(assert_cmd::cargo::cargo_bin("cria"))
        .arg("--endpoint")
        .arg(env.criad.socket())
        .env("CRIA_LOG_ROOT", env.logs.path())
        .args(["run", "--rm", &image, "sh", "-c"])
        .arg("trap 'echo got-term; exit 143' TERM; echo started; while true; do sleep 0.1; done")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cria run");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(CMD_TIMEOUT).expect("container started");
    assert_eq!(first, "started");
    let pid = child.id().to_string();
    let status = Std::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cria run did not end after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(143), "the container's own exit code");
    let rest: Vec<String> = rx.try_iter().collect();
    assert_eq!(
        rest,
        ["got-term"],
        "output after the interrupt is still printed"
    );
    assert_eq!(
        env.leftovers().await,
        (0, 0),
        "--rm cleaned up after Ctrl-C"
    );
}

#[tokio::test]
async fn missing_image_names_reference_and_registry() {
    let env = Env::start().await;
    let missing = format!("{}/library/nope:1", env.reg.host());
    let out = env.cria(&["pull", &missing]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "image {missing} not found in registry {}",
            env.reg.host()
        )),
        "{err}"
    );
    let out = env.cria(&["run", "--rm", &missing]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not found in registry"));
    assert_eq!(env.leftovers().await, (0, 0), "a failed run leaves nothing");
}

#[tokio::test]
async fn stopped_daemon_says_how_to_start_it_and_non_root_is_told_to_use_sudo() {
    use std::os::unix::fs::PermissionsExt;

    let mut env = Env::start().await;
    ok(env.cria(&["ps"]), "cria ps while criad runs");

    // As an unprivileged user (the socket is root's, 0600). The binary is copied where
    // that user may execute it, whatever the permissions of the checkout.
    let bin_dir = tempfile::tempdir().expect("bin dir");
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod bin dir");
    let bin = bin_dir.path().join("cria");
    std::fs::copy(assert_cmd::cargo::cargo_bin("cria"), &bin).expect("copy cria");
    let socket = env.criad.socket();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .arg("--endpoint")
        .arg(&socket)
        .arg("ps")
        .output()
        .expect("setpriv");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stderr),
        format!(
            "cria: error: permission denied on {}: run as root (sudo)\n",
            socket.display()
        )
    );

    env.criad.stop().await.expect("stop criad");
    let out = env.cria(&["ps"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "cria: error: cannot connect to criad at {}: is it running? start it with `sudo criad` or `sudo systemctl start criad`\n",
            socket.display()
        )
    );
}

#[test]
fn usage_errors_exit_125() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("none.sock");
    for args in [
        &["run"][..],
        &["run", "--memory", "64x", "busybox"],
        &["run", "-v", "nocolon", "busybox"],
        &["frobnicate"],
        &["--endpoint", "tcp://1.2.3.4:1", "ps"],
    ] {
        let out = cria_at(&sock, dir.path(), args);
        assert_eq!(
            out.status.code(),
            Some(125),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let help = cria_at(&sock, dir.path(), &["run", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Examples:"));
    let bash = cria_at(&sock, dir.path(), &["completion", "bash"]);
    assert!(text(&bash.stdout).contains("cria"), "completion script");
}

#[test]
fn missing_socket_says_how_to_start_criad() {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("cria.sock");
    let out = cria_at(&sock, dir.path(), &["images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is it running? start it with `sudo criad`"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn interactive_exec_run_and_attach_stream_stdin_and_exit_codes() {
    let env = Env::start().await;
    let image = env.busybox();
    ok(
        env.cria(&["run", "-d", "--name", "box", &image, "sleep", "300"]),
        "cria run -d",
    );

    // Piped stdin reaches the command and its end closes the command's stdin (v5 close signal).
    let out = env.cria_stdin(&["exec", "-i", "box", "cat"], b"hi\n");
    assert_eq!(ok(out, "echo hi | cria exec -i box cat"), "hi\n");
    // The exit code comes back through the error channel's status.
    let out = env.cria(&[
        "exec",
        "-i",
        "box",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    // A terminal: `script` gives cria a pty of 37 rows and 91 columns; the exec sees that size.
    let cria = assert_cmd::cargo::cargo_bin("cria");
    let line = format!(
        "stty rows 37 cols 91; {} --endpoint {} exec -it box stty size; echo exit=$?; stty -a",
        cria.display(),
        env.criad.socket().display()
    );
    let got = under_script(&env, &line, b"");
    assert!(
        got.contains("37 91"),
        "stty size under cria exec -it: {got:?}"
    );
    assert!(got.contains("exit=0"), "{got:?}");
    // Raw mode ended with the session: line editing and echo are back.
    assert!(
        got.contains(" icanon") && got.contains(" echo ") && !got.contains("-icanon"),
        "terminal not restored: {got:?}"
    );
    // A shell on a terminal: what we type runs, and its exit code is cria's.
    let line = format!(
        "{} --endpoint {} exec -it box sh; echo exit=$?",
        cria.display(),
        env.criad.socket().display()
    );
    let got = under_script(&env, &line, b"echo tty-$((20+22)); exit 6\n");
    assert!(got.contains("tty-42"), "{got:?}");
    assert!(got.contains("exit=6"), "{got:?}");

    // Exec in a container that is gone is an error naming it, not a hang.
    let out = env.cria(&["exec", "-i", "nope", "cat"]);
    assert_eq!(out.status.code(), Some(1));
    ok(env.cria(&["rm", "-f", "box"]), "cria rm -f");

    // run -i --rm: stdin echoed through Attach, the exit code is the container's, nothing stays.
    let out = env.cria_stdin(&["run", "-i", "--rm", &image, "cat"], b"one\ntwo\n");
    assert_eq!(ok(out, "cria run -i --rm cat"), "one\ntwo\n");
    let out = env.cria_stdin(
        &[
            "run",
            "-i",
            "--rm",
            &image,
            "sh",
            "-c",
            "read l; echo got-$l; exit 3",
        ],
        b"x\n",
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "got-x\n");
    // run -it --rm on a terminal: a shell through Attach, its exit code, nothing left.
    let line = format!(
        "{} --endpoint {} run -it --rm {image} sh; echo exit=$?",
        cria.display(),
        env.criad.socket().display()
    );
    let got = under_script(&env, &line, b"echo run-$((40+2)); exit 9\n");
    assert!(got.contains("run-42"), "{got:?}");
    assert!(got.contains("exit=9"), "{got:?}");
    assert_eq!(env.leftovers().await, (0, 0), "run -i --rm left nothing");

    // attach -i to a detached interactive container: input in, output out, its exit code back.
    ok(
        env.cria(&["run", "-d", "-i", "--name", "sh1", &image, "sh"]),
        "cria run -d -i sh",
    );
    let out = env.cria_stdin(&["attach", "-i", "sh1"], b"echo attached\nexit 7\n");
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "attached\n");
    ok(env.cria(&["rm", "sh1"]), "cria rm");
    assert_eq!(env.leftovers().await, (0, 0));
}

/// Runs the shell command `line` on a pseudo-terminal (`script` from util-linux) with
/// `input` typed into it; returns what the terminal showed.
fn under_script(env: &Env, line: &str, input: &[u8]) -> String {
    let out = Command::new("script")
        .args(["-qec", line, "/dev/null"])
        .env("CRIA_LOG_ROOT", env.logs.path())
        .timeout(CMD_TIMEOUT)
        .write_stdin(input.to_vec())
        .output()
        .expect("running script");
    text(&out.stdout)
}
