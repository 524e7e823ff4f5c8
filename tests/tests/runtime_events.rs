//! Issue 3: GetContainerEvents streams created/started/stopped/deleted, and
//! the informational RPCs (Version, RuntimeConfig, Status) answer.

use std::time::Duration;

use cria_proto::v1;
use cria_tests::expect::ok;
use cria_tests::pod::{remove_container, PodEnv};
use futures::StreamExt;

#[tokio::test]
async fn container_events_follow_the_lifecycle() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let mut events = ok(
        rt.get_container_events(v1::GetEventsRequest {}).await,
        &env.criad,
    )
    .into_inner();
    let pod = env.pod_config("events").expect("pod config");
    let (pod_id, id) = ok(
        env.run_pod_and_start(
            &mut rt,
            &pod,
            &env.container_config("c", &["sleep", "3600"]),
        )
        .await,
        &env.criad,
    );
    ok(remove_container(&mut rt, &id, 1).await, &env.criad);
    use v1::ContainerEventType as E;
    let want = [
        E::ContainerCreatedEvent,
        E::ContainerStartedEvent,
        E::ContainerStoppedEvent,
        E::ContainerDeletedEvent,
    ];
    let mut seen = Vec::new();
    // Bounded: at most 50 events or 20 s.
    for _ in 0..50 {
        let Ok(Some(ev)) = tokio::time::timeout(Duration::from_secs(20), events.next()).await
        else {
            break;
        };
        let ev = ev.expect("event");
        if ev.container_id == id {
            seen.push(ev.container_event_type);
            assert!(ev.created_at > 0);
        }
        if seen.len() == want.len() {
            break;
        }
    }
    assert_eq!(seen, want.iter().map(|e| *e as i32).collect::<Vec<_>>());
    ok(
        cria_tests::pod::remove_pod(&mut rt, &pod_id).await,
        &env.criad,
    );
}

#[tokio::test]
async fn runtime_config_reports_cgroupfs() {
    let env = PodEnv::start().await.expect("env");
    let mut rt = env.rt().await.expect("client");
    let rc = ok(
        rt.runtime_config(v1::RuntimeConfigRequest {}).await,
        &env.criad,
    )
    .into_inner();
    let driver = rc.linux.map(|l| l.cgroup_driver).unwrap_or(-1);
    assert_eq!(driver, v1::CgroupDriver::Cgroupfs as i32);
}
