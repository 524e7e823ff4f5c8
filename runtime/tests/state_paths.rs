//! A state root deeper than a unix socket address (sun_path, 107 bytes):
//! the monitor's control and attach sockets still bind and connect. Needs
//! root.

mod common;

use common::Fixture;
use cria_runtime::attach::{encode_frame, take_frames, FRAME_STDIN, FRAME_STDOUT};
use cria_runtime::{Runtime, RuntimeConfig, Status};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);

#[test]
fn control_and_attach_sockets_work_under_a_deep_state_root() {
    let mut f = Fixture::new("deep");
    let mut state = f.tmp.path().join("state");
    let sock_len = |s: &std::path::Path| {
        s.join("containers")
            .join(&f.id)
            .join("control.sock")
            .as_os_str()
            .len()
    };
    while sock_len(&state) <= 120 {
        state.push("a-deep-state-directory");
    }
    f.rt = Runtime::new(RuntimeConfig {
        monitor_path: f.rt.config().monitor_path.clone(),
        state_root: state,
    });
    let mut req = f.request(&f.spec(&["cat"]));
    req.stdin = true;
    f.rt.create(&req).unwrap();
    // start and reopen_log go through control.sock.
    f.rt.start(&f.id).unwrap();
    f.rt.reopen_log(&f.id).unwrap();
    assert_eq!(f.rt.state(&f.id).unwrap().status, Status::Running);

    // attach.sock: what we send to stdin comes back from cat on stdout.
    let mut a = f.rt.attach_connect(&f.id).unwrap();
    a.write_all(&encode_frame(FRAME_STDIN, b"deep hello\n"))
        .unwrap();
    a.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + T;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    while !String::from_utf8_lossy(&out).contains("deep hello") {
        assert!(Instant::now() < deadline, "no echo over attach: {out:?}");
        let mut chunk = [0u8; 4096];
        match a.read(&mut chunk) {
            Ok(0) => panic!("attach socket closed early"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read attach socket: {e}"),
        }
        for (kind, payload) in take_frames(&mut buf).unwrap() {
            if kind == FRAME_STDOUT {
                out.extend_from_slice(&payload);
            }
        }
    }
    f.rt.kill(&f.id, libc::SIGKILL, false).unwrap();
    assert_eq!(f.rt.wait(&f.id, T).unwrap().exit_code, Some(137));
    f.rt.delete(&f.id, false).unwrap();
}
