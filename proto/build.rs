//! Compiles the CRI v1 proto at build time. protox parses the .proto in pure
//! Rust, so no system `protoc` is needed; tonic-prost-build generates the
//! prost messages and both tonic clients and servers from the parsed set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/runtime/v1/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
