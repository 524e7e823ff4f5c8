//! Guards the wire contract: `runtime/v1/api.proto` must stay identical to
//! Kubernetes cri-api in everything that reaches the wire or the generated
//! code (package, services, RPCs, messages, enums, names, numbers, types,
//! options). Only comments may differ, so the test hashes the compiled
//! descriptor with `source_code_info` (comments and spans) removed.

use prost::Message;
use sha2::{Digest, Sha256};

/// sha256 of the comment-free descriptor of the upstream cri-api
/// `api.proto` (k8s.io/cri-api v0.37.0-alpha), compiled by protox 0.10 under
/// the name `runtime/v1/api.proto`. Recompute it from the upstream file with
/// `descriptor_hash` when moving to a newer cri-api, never from our copy.
const UPSTREAM_DESCRIPTOR_SHA256: &str =
    "3ef1dfda9310fc64a76133acec713f0600a0454055b93a335ab2ef62f4420ccc";

/// Compiles `file` (relative to `include`) and hashes its descriptor set
/// without source info.
fn descriptor_hash(include: &str, file: &str) -> String {
    let mut set = protox::compile([file], [include]).expect("the proto compiles");
    for f in &mut set.file {
        f.source_code_info = None;
    }
    hex::encode(Sha256::digest(set.encode_to_vec()))
}

#[test]
fn cri_api_matches_upstream_wire_contract() {
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/proto");
    let hash = descriptor_hash(include, "runtime/v1/api.proto");
    assert_eq!(
        hash, UPSTREAM_DESCRIPTOR_SHA256,
        "api.proto differs from upstream cri-api in more than comments"
    );
}

/// Prints the hash of an upstream `api.proto` given by `CRI_UPSTREAM_PROTO`
/// (a path to a directory holding `runtime/v1/api.proto`); run with
/// `--ignored` to refresh the constant above.
#[test]
#[ignore = "tool for refreshing UPSTREAM_DESCRIPTOR_SHA256"]
fn print_upstream_descriptor_hash() {
    let include = std::env::var("CRI_UPSTREAM_PROTO").expect("CRI_UPSTREAM_PROTO is set");
    println!("{}", descriptor_hash(&include, "runtime/v1/api.proto"));
}
