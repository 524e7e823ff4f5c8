//! CRI `LinuxContainerResources` → OCI `LinuxResources` (shared by
//! CreateContainer and UpdateContainerResources), and device cgroup rules.

use super::SpecError;
use cria_proto::v1::LinuxContainerResources;
use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxResources, LinuxResourcesBuilder,
};

fn non_negative(value: i64, field: &str) -> Result<Option<u64>, SpecError> {
    match value {
        0 => Ok(None),
        v if v < 0 => Err(SpecError::invalid(field, format!("{v} is negative"))),
        v => Ok(Some(v as u64)),
    }
}

/// The OCI resources for `cri` (zero fields mean "not set", as in CRI);
/// `devices` are the device cgroup rules (`None` leaves them untouched, for
/// updates).
pub(crate) fn to_oci(
    cri: Option<&LinuxContainerResources>,
    devices: Option<Vec<LinuxDeviceCgroup>>,
) -> Result<LinuxResources, SpecError> {
    let mut builder = LinuxResourcesBuilder::default();
    if let Some(devices) = devices {
        builder = builder.devices(devices);
    }
    let Some(r) = cri else {
        return Ok(builder.build()?);
    };
    const F: &str = "linux.resources";
    let mut cpu = LinuxCpuBuilder::default();
    let mut cpu_set = false;
    if let Some(shares) = non_negative(r.cpu_shares, &format!("{F}.cpu_shares"))? {
        cpu = cpu.shares(shares);
        cpu_set = true;
    }
    if r.cpu_quota != 0 {
        // -1 means "no limit" and is valid.
        if r.cpu_quota < -1 {
            return Err(SpecError::invalid(format!("{F}.cpu_quota"), "below -1"));
        }
        cpu = cpu.quota(r.cpu_quota);
        cpu_set = true;
    }
    if let Some(period) = non_negative(r.cpu_period, &format!("{F}.cpu_period"))? {
        cpu = cpu.period(period);
        cpu_set = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu = cpu.cpus(r.cpuset_cpus.clone());
        cpu_set = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu = cpu.mems(r.cpuset_mems.clone());
        cpu_set = true;
    }
    if cpu_set {
        builder = builder.cpu(cpu.build()?);
    }

    let mut memory = LinuxMemoryBuilder::default();
    let mut memory_set = false;
    if r.memory_limit_in_bytes != 0 {
        if r.memory_limit_in_bytes < -1 {
            return Err(SpecError::invalid(
                format!("{F}.memory_limit_in_bytes"),
                "below -1",
            ));
        }
        memory = memory.limit(r.memory_limit_in_bytes);
        memory_set = true;
    }
    if r.memory_swap_limit_in_bytes != 0 {
        if r.memory_swap_limit_in_bytes < -1 {
            return Err(SpecError::invalid(
                format!("{F}.memory_swap_limit_in_bytes"),
                "below -1",
            ));
        }
        memory = memory.swap(r.memory_swap_limit_in_bytes);
        memory_set = true;
    }
    if memory_set {
        builder = builder.memory(memory.build()?);
    }

    if !r.hugepage_limits.is_empty() {
        let mut limits = Vec::new();
        for (i, h) in r.hugepage_limits.iter().enumerate() {
            if h.page_size.is_empty() {
                return Err(SpecError::invalid(
                    format!("{F}.hugepage_limits[{i}].page_size"),
                    "empty",
                ));
            }
            let limit = i64::try_from(h.limit).map_err(|_| {
                SpecError::invalid(format!("{F}.hugepage_limits[{i}].limit"), "too large")
            })?;
            limits.push(
                LinuxHugepageLimitBuilder::default()
                    .page_size(h.page_size.clone())
                    .limit(limit)
                    .build()?,
            );
        }
        builder = builder.hugepage_limits(limits);
    }
    if !r.unified.is_empty() {
        builder = builder.unified(
            r.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    Ok(builder.build()?)
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, SpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    Ok(b.build()?)
}

/// A privileged container may use every device.
pub(crate) fn allow_all_devices() -> Result<Vec<LinuxDeviceCgroup>, SpecError> {
    Ok(vec![rule(true, LinuxDeviceType::A, None, None, "rwm")?])
}

/// Deny every device, then allow mknod, the standard devices (null, zero,
/// full, random, urandom, tty, console, ptmx, pts, tun) and kubelet's.
pub(crate) fn device_rules(
    devices: &[LinuxDevice],
    access: &[String],
) -> Result<Vec<LinuxDeviceCgroup>, SpecError> {
    use LinuxDeviceType::{A, B, C};
    let mut rules = vec![
        rule(false, A, None, None, "rwm")?,
        rule(true, C, None, None, "m")?,
        rule(true, B, None, None, "m")?,
    ];
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        rules.push(rule(true, C, Some(major), Some(minor), "rwm")?);
    }
    rules.push(rule(true, C, Some(136), None, "rwm")?);
    for (i, (d, a)) in devices.iter().zip(access).enumerate() {
        if a.is_empty() || !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(SpecError::invalid(
                format!("devices[{i}].permissions"),
                format!("{a:?} is not a subset of \"rwm\""),
            ));
        }
        rules.push(rule(true, d.typ(), Some(d.major()), Some(d.minor()), a)?);
    }
    Ok(rules)
}
