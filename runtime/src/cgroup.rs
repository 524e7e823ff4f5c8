//! cgroups v1 and v2 (stub, filled in below).

/// Usage read from a container's cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory usage in bytes (including page cache).
    pub memory_usage_bytes: u64,
    /// Working set: usage minus inactive file pages.
    pub memory_working_set_bytes: u64,
    /// Anonymous + swap-backed resident memory in bytes.
    pub memory_rss_bytes: u64,
    /// Number of OOM kills recorded for the cgroup.
    pub oom_kills: u64,
    /// Number of processes/threads in the cgroup.
    pub pids_current: u64,
}
