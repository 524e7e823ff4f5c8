//! `cria-monitor`: the per-container monitor, started by the runtime library.

fn main() {
    std::process::exit(cria_runtime::monitor::main());
}
