//! The `cria-monitor` binary's logic (stub).

/// Entry point of `cria-monitor`; returns the process exit code.
pub fn main() -> i32 {
    2
}
