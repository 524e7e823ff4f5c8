//! The real criad binary on a socket in a temp dir: a stale socket is
//! replaced, the socket is 0600, a second criad on it is refused, the CRI
//! and progress services answer, nothing is created outside root/state/socket,
//! and SIGTERM stops it cleanly and removes the socket.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cria_proto::cria::v1alpha::WatchPullRequest;
use cria_proto::v1;
use cria_proto::{ImageServiceClient, PullProgressClient, RuntimeServiceClient};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A criad child in `dir`, killed if the test fails half-way.
struct Criad {
    child: Child,
    socket: PathBuf,
}

impl Drop for Criad {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn criad_command(dir: &Path) -> Command {
    let config = dir.join("config.toml");
    std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_criad"));
    cmd.arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--socket")
        .arg(dir.join("run/cria.sock"))
        .stdin(Stdio::null());
    cmd
}

async fn connect(socket: &Path) -> Result<Channel, tonic::transport::Error> {
    let socket = socket.to_path_buf();
    // The URI is a placeholder: the connector always dials the socket.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(socket).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}

async fn start(dir: &Path) -> Criad {
    let log = std::fs::File::create(dir.join("criad.log")).unwrap();
    let child = criad_command(dir).stderr(log).spawn().unwrap();
    let mut criad = Criad {
        child,
        socket: dir.join("run/cria.sock"),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = criad.child.try_wait().unwrap() {
            panic!(
                "criad exited early ({status}):\n{}",
                std::fs::read_to_string(dir.join("criad.log")).unwrap_or_default()
            );
        }
        if connect(&criad.socket).await.is_ok() {
            return criad;
        }
        assert!(Instant::now() < deadline, "criad did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn criad_serves_on_a_private_socket_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/cria.sock");

    // A socket file left by a crashed criad.
    std::fs::create_dir(dir.path().join("run")).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let stale_ino = std::fs::metadata(&socket).unwrap().ino();

    let mut criad = start(dir.path()).await;
    let meta = std::fs::metadata(&socket).unwrap();
    assert_ne!(meta.ino(), stale_ino, "the stale socket was replaced");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    for d in ["root", "state"] {
        let mode = std::fs::metadata(dir.path().join(d)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o700, "{d}");
    }

    // The services answer.
    let channel = connect(&socket).await.unwrap();
    let version = RuntimeServiceClient::new(channel.clone())
        .version(v1::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "cria");
    assert_eq!(version.runtime_api_version, "v1");
    let mut images = ImageServiceClient::new(channel.clone());
    let list = images
        .list_images(v1::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.images.is_empty());
    let status = images
        .image_status(v1::ImageStatusRequest {
            image: Some(v1::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.image.is_none(),
        "an unknown image is an empty answer"
    );
    let fs = images
        .image_fs_info(v1::ImageFsInfoRequest::default())
        .await
        .unwrap()
        .into_inner();
    let usage = &fs.image_filesystems[0];
    assert_eq!(
        usage.fs_id.as_ref().unwrap().mountpoint,
        dir.path().join("root").to_string_lossy()
    );
    assert!(usage.inodes_used.as_ref().unwrap().value > 0);
    // An empty image is refused by the progress service, proving it is served.
    let err = PullProgressClient::new(channel.clone())
        .watch(WatchPullRequest {
            image: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // A second criad on the same socket refuses to start and leaves it alone.
    let second = criad_command(dir.path()).output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("already running"), "{stderr}");
    assert!(socket.exists());

    // Nothing outside the given root, state and socket directories.
    let mut top: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["config.toml", "criad.log", "root", "run", "state"]);

    // A progress watch waits for a pull that never comes: a long-lived
    // stream that must not hold up the shutdown.
    let mut watch = PullProgressClient::new(channel.clone())
        .watch(WatchPullRequest {
            image: "busybox".into(),
        })
        .await
        .unwrap()
        .into_inner();

    // SIGTERM: a prompt, clean exit that removes the socket.
    let stopping = Instant::now();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(criad.child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = criad.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "criad ignored SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for the open watch",
        stopping.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), watch.message()).await;
    assert!(
        matches!(end, Ok(Ok(None)) | Ok(Err(_))),
        "the watch ended with the daemon: {end:?}"
    );
    assert!(!socket.exists(), "the socket is removed on shutdown");
}

/// One HTTP/2 frame: type, flags, stream, payload.
type Frame = (u8, u8, u32, Vec<u8>);

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

async fn read_frame(s: &mut tokio::net::UnixStream) -> std::io::Result<Frame> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await?;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Ok((head[3], head[4], stream, payload))
}

/// What grpc-go before Kubernetes 1.26 (crictl/critest 1.26) sends: the
/// socket path as `:authority`. Spoken byte by byte, so nothing on the
/// client side can tidy it up.
#[tokio::test]
async fn a_socket_path_authority_is_served() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let criad = start(dir.path()).await;
    let authority = criad.socket.to_string_lossy().into_owned();
    let headers: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", b"/runtime.v1.RuntimeService/Version"),
        (b":authority", authority.as_bytes()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
    ];
    let block = loona_hpack::Encoder::new().encode(headers);
    let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    wire.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    wire.extend(h2_frame(0x1, 0x4, 1, &block)); // HEADERS, END_HEADERS
                                                // An empty VersionRequest as one uncompressed gRPC message, END_STREAM.
    wire.extend(h2_frame(0x0, 0x1, 1, &[0, 0, 0, 0, 0]));

    let mut s = tokio::net::UnixStream::connect(&criad.socket)
        .await
        .unwrap();
    s.write_all(&wire).await.unwrap();
    let mut decoder = loona_hpack::Decoder::new();
    let (mut status, mut grpc_status, mut body) = (None, None, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(10);
    while grpc_status.is_none() {
        assert!(Instant::now() < deadline, "no complete answer");
        let (kind, flags, stream, payload) =
            tokio::time::timeout(Duration::from_secs(10), read_frame(&mut s))
                .await
                .expect("criad answers")
                .expect("a frame");
        match kind {
            0x4 if flags & 0x1 == 0 => s.write_all(&h2_frame(0x4, 0x1, 0, &[])).await.unwrap(),
            0x3 => panic!("stream {stream} reset: {payload:?}"),
            0x1 if stream == 1 => {
                for (name, value) in decoder.decode(&payload).unwrap() {
                    match name.as_slice() {
                        b":status" => status = Some(value),
                        b"grpc-status" => grpc_status = Some(value),
                        _ => {}
                    }
                }
            }
            0x0 if stream == 1 => body.extend_from_slice(&payload),
            _ => {}
        }
    }
    assert_eq!(status.as_deref(), Some(&b"200"[..]));
    assert_eq!(grpc_status.as_deref(), Some(&b"0"[..]));
    assert!(
        body.windows(4).any(|w| w == b"cria"),
        "the VersionResponse names the runtime: {body:?}"
    );
}
