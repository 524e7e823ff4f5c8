mod streaming_common;
use cria_tests::pod::PodEnv;
#[tokio::test]
async fn manual() {
    let env = PodEnv::start().await.unwrap();
    let mut rt = env.rt().await.unwrap();
    let pod = env.pod_config("manual").unwrap();
    let pod_id = env.run_pod(&mut rt, &pod).await.unwrap();
    let mut cfg = env.container_config("tty", &["sh"]);
    cfg.stdin = true;
    cfg.tty = true;
    let ctr = env.create_start(&mut rt, &pod_id, &pod, &cfg).await.unwrap();
    std::fs::write("/tmp/crictl-env", format!("SOCK={}\nPOD={}\nCTR={}\nLOG={}\n", env.criad.socket().display(), pod_id, ctr, cria_tests::pod::log_path(&pod, &cfg).display())).unwrap();
    for _ in 0..300 {
        if std::path::Path::new("/tmp/crictl-done").exists() { break; }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    let _ = std::fs::remove_file("/tmp/crictl-done");
    cria_tests::pod::remove_pod(&mut rt, &pod_id).await.unwrap();
}
