//! criad, cria's CRI v1 server: configuration, the shared daemon context,
//! the ImageService and RuntimeService, cria's pull-progress side service,
//! and the unix-socket server that carries them.

pub mod config;
pub mod daemon;
pub mod error;
pub mod h2_authority;
pub mod image_service;
pub mod layer_unpacker;
pub mod progress_service;
pub mod runtime_service;
pub mod server;
pub mod streaming_backend;
