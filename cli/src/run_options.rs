//! Parsers for `cria run` flags (`-v`, `-p`, `-e`, `-u`, `--memory`, `--cpus`).
//! They return `String` errors so clap reports bad values as usage errors (exit 125).

use std::path::{Path, PathBuf};

/// A bind mount from `-v host:ctr[:ro|:rw]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Absolute host path (a relative one is taken from the current directory).
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
    /// Mounted read-only.
    pub readonly: bool,
}

/// Parses `-v host:ctr[:ro|:rw]`.
pub fn parse_volume(s: &str) -> Result<Volume, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, container, readonly) = match parts.as_slice() {
        [h, c] => (*h, *c, false),
        [h, c, "ro"] => (*h, *c, true),
        [h, c, "rw"] => (*h, *c, false),
        [_, _, opt] => return Err(format!("unknown volume option {opt:?}: use ro or rw")),
        _ => return Err(format!("{s:?} is not host-path:container-path[:ro]")),
    };
    if host.is_empty() || container.is_empty() {
        return Err(format!("{s:?} is not host-path:container-path[:ro]"));
    }
    if !container.starts_with('/') {
        return Err(format!("container path {container:?} must be absolute"));
    }
    let host = if Path::new(host).is_absolute() {
        PathBuf::from(host)
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve relative host path {host:?}: {e}"))?
            .join(host)
    };
    Ok(Volume {
        host,
        container: container.to_string(),
        readonly,
    })
}

/// A port mapping from `-p [ip:]host:ctr[/tcp|udp|sctp]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Host address to bind; empty means all.
    pub host_ip: String,
    /// Port on the host.
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

/// Parses `-p [ip:]host:ctr[/proto]`.
pub fn parse_port(s: &str) -> Result<Port, String> {
    let (spec, protocol) = match s.rsplit_once('/') {
        Some((spec, p @ ("tcp" | "udp" | "sctp"))) => (spec, p),
        Some((_, p)) => return Err(format!("unknown protocol {p:?}: use tcp, udp or sctp")),
        None => (s, "tcp"),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [h, c] => ("", *h, *c),
        [ip, h, c] => (*ip, *h, *c),
        _ => return Err(format!("{s:?} is not [ip:]host-port:container-port")),
    };
    let num = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!("{p:?} is not a port number (1-65535)")),
        }
    };
    Ok(Port {
        host_ip: ip.to_string(),
        host_port: num(host)?,
        container_port: num(ctr)?,
        protocol: protocol.to_string(),
    })
}

/// Parses a memory size: `64m`, `1g`, `512k`, `1048576` (bytes), `64MiB`.
pub fn parse_memory(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 64m or 1g"))?;
    let mult: f64 = match unit {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" | "tib" => 1024.0_f64.powi(4),
        _ => {
            return Err(format!(
                "unknown size unit {unit:?} in {s:?}: use b, k, m, g or t"
            ))
        }
    };
    let bytes = (value * mult).round();
    if !(1.0..=i64::MAX as f64).contains(&bytes) {
        return Err(format!("memory size {s:?} is out of range"));
    }
    // The kernel rejects limits below a few pages; say so before the runtime does.
    if bytes < 6.0 * 1024.0 * 1024.0 {
        return Err(format!("memory limit {s:?} is below the minimum of 6m"));
    }
    Ok(bytes as i64)
}

/// CFS period used for `--cpus`, as docker does (100ms).
pub const CPU_PERIOD_US: i64 = 100_000;

/// Parses `--cpus 0.5` into a CFS quota in microseconds per [`CPU_PERIOD_US`].
pub fn parse_cpus(s: &str) -> Result<i64, String> {
    let cpus: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of CPUs like 0.5 or 2"))?;
    if !cpus.is_finite() || cpus <= 0.0 || cpus > 1024.0 {
        return Err(format!("--cpus {s} is out of range (0 < cpus <= 1024)"));
    }
    let quota = (cpus * CPU_PERIOD_US as f64).round() as i64;
    // The kernel's minimum quota is 1ms.
    Ok(quota.max(1000))
}

/// A user from `-u uid[:gid]` or `-u name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum User {
    /// Numeric uid and optional gid.
    Id { uid: i64, gid: Option<i64> },
    /// A user name resolved by the runtime in the image's /etc/passwd.
    Name(String),
}

/// Parses `-u uid[:gid]` or `-u name`.
pub fn parse_user(s: &str) -> Result<User, String> {
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    match (u.parse::<i64>(), g) {
        (Ok(uid), None) if uid >= 0 => Ok(User::Id { uid, gid: None }),
        (Ok(uid), Some(g)) if uid >= 0 => match g.parse::<i64>() {
            Ok(gid) if gid >= 0 => Ok(User::Id {
                uid,
                gid: Some(gid),
            }),
            _ => Err(format!("group {g:?} must be a numeric gid")),
        },
        (Err(_), None) if !u.is_empty() => Ok(User::Name(u.to_string())),
        _ => Err(format!("{s:?} is not uid[:gid] or a user name")),
    }
}

/// Parses `-e KEY=VALUE`; `-e KEY` takes KEY's value from cria's own environment.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some(("", _)) => Err(format!("{s:?} has an empty variable name")),
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None if s.is_empty() => Err("empty environment variable".to_string()),
        None => Ok((s.to_string(), std::env::var(s).unwrap_or_default())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes() {
        assert_eq!(
            parse_volume("/srv/data:/data:ro").unwrap(),
            Volume {
                host: "/srv/data".into(),
                container: "/data".into(),
                readonly: true
            }
        );
        let v = parse_volume("/a:/b").unwrap();
        assert!(!v.readonly);
        assert!(parse_volume("/a:/b:rw").is_ok_and(|v| !v.readonly));
        let rel = parse_volume("data:/d").unwrap();
        assert!(rel.host.is_absolute() && rel.host.ends_with("data"));
        assert!(parse_volume("/a").is_err());
        assert!(parse_volume("/a:rel").is_err());
        assert!(parse_volume("/a:/b:zz").is_err());
        assert!(parse_volume(":/b").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(
            parse_port("8080:80").unwrap(),
            Port {
                host_ip: String::new(),
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into()
            }
        );
        let p = parse_port("127.0.0.1:53:5353/udp").unwrap();
        assert_eq!(
            (
                p.host_ip.as_str(),
                p.host_port,
                p.container_port,
                p.protocol.as_str()
            ),
            ("127.0.0.1", 53, 5353, "udp")
        );
        assert!(parse_port("80").is_err());
        assert!(parse_port("0:80").is_err());
        assert!(parse_port("70000:80").is_err());
        assert!(parse_port("80:80/icmp").is_err());
    }

    #[test]
    fn memory() {
        assert_eq!(parse_memory("64m").unwrap(), 64 * 1024 * 1024);
        assert_eq!(parse_memory("64MiB").unwrap(), 64 * 1024 * 1024);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_memory("10485760").unwrap(), 10 * 1024 * 1024);
        assert!(parse_memory("1k").is_err(), "below the kernel's minimum");
        assert!(parse_memory("64x").is_err());
        assert!(parse_memory("m").is_err());
        assert!(parse_memory("").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5").unwrap(), 50_000);
        assert_eq!(parse_cpus("2").unwrap(), 200_000);
        assert_eq!(parse_cpus("0.001").unwrap(), 1000);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("-1").is_err());
        assert!(parse_cpus("NaN").is_err());
        assert!(parse_cpus("lots").is_err());
    }

    #[test]
    fn users() {
        assert_eq!(
            parse_user("1000").unwrap(),
            User::Id {
                uid: 1000,
                gid: None
            }
        );
        assert_eq!(
            parse_user("1000:50").unwrap(),
            User::Id {
                uid: 1000,
                gid: Some(50)
            }
        );
        assert_eq!(parse_user("nobody").unwrap(), User::Name("nobody".into()));
        assert!(parse_user("1000:staff").is_err());
        assert!(parse_user("-1").is_err());
        assert!(parse_user("").is_err());
    }

    #[test]
    fn envs() {
        assert_eq!(
            parse_env("A=b=c").unwrap(),
            ("A".to_string(), "b=c".to_string())
        );
        assert_eq!(parse_env("A=").unwrap(), ("A".to_string(), String::new()));
        assert!(parse_env("=x").is_err());
    }
}
