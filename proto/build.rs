//! Compiles cria's protos at build time. protox parses the .proto files in
//! pure Rust, so no system `protoc` is needed; tonic-prost-build generates the
//! prost messages and both tonic clients and servers from the parsed set.

/// The CRI v1 API (wire-identical to Kubernetes cri-api) and cria's own side
/// service for pull progress, relative to the include root `proto/`.
const PROTOS: [&str; 2] = ["runtime/v1/api.proto", "cria/v1alpha/progress.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed=proto/{proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
