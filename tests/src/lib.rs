//! cria's end-to-end test harness: a real distribution registry, images built
//! by independent tools (umoci, skopeo, GNU tar, python's tarfile), and isolated
//! criad instances driven only through their CRI socket.
//!
//! Errors are `anyhow` on purpose: this is test-support code whose errors are
//! only ever shown to a person reading a failed test, never matched on.

pub mod client;
pub mod criad;
pub mod expect;
pub mod fixtures;
pub mod host;
pub mod pod;
pub mod registry;
pub mod store;
pub mod tree;

pub use client::{connect, ImageClient, RuntimeClient};
pub use criad::{Criad, CriadConfig};
pub use fixtures::Fixture;
pub use registry::{Registry, RegistryOptions, ThrottledProxy};
