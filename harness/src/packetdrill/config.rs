//! How a script runs: addresses, tolerances, the stack profile, and the `--option` lines that change them.

use super::ast::{ScriptOption, Unsupported};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;
use ustack::wire::ethernet::MacAddr;
use ustack::wire::ipv4::Ipv4Cidr;
use ustack::StackConfig;

/// The stack settings a script runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Linux's defaults, which are what packetdrill scripts written on Linux assume and what ustack does out of
    /// the box: MTU 1500 (MSS 1460 in our SYNs), an initial RTO of 1 s, a minimum RTO of 200 ms, an initial
    /// window of 10 segments, timestamps, SACK and window scaling offered with Linux's option layout
    /// (`mss,sackOK,TS,nop,wscale` in a SYN; `mss,nop,nop,sackOK,nop,wscale` without timestamps), a window
    /// shift of 7, a SYN window that is a whole number of MSS-sized segments of a 64 KiB space (64240),
    /// delayed ACKs of at most 40 ms with quick ACKs at the start, 6 SYN retries, 5 SYN-ACK retries, 15 data
    /// retries, TIME-WAIT of 60 s, FIN-WAIT-2 timeout of 60 s, keepalive 7200/75/9, somaxconn 4096, a TTL of 64.
    #[default]
    Linux,
}

impl Profile {
    /// The stack configuration of this profile for a stack at `cidr` with `mac`.
    pub fn stack_config(self, mac: MacAddr, cidr: Ipv4Cidr) -> StackConfig {
        match self {
            Profile::Linux => StackConfig::new(mac, cidr),
        }
    }
}

/// The system a script runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// ustack, in-process, on a virtual clock ([`Profile`] gives its settings).
    #[default]
    Ustack,
    /// The Linux kernel in a private network namespace behind a TAP device, on the wall clock (see
    /// [`super::kernel`]). Needs root.
    Kernel,
}

/// A hook that adjusts the stack's configuration after the profile and the addresses are applied.
pub type StackTweak = Arc<dyn Fn(&mut StackConfig) + Send + Sync>;

/// Settings of a run. The defaults are packetdrill's (`config.c`), with the addresses the brief of this
/// harness fixes: the stack at 192.168.0.1/16, the remote end at 192.0.2.1 behind the gateway 192.168.0.2.
#[derive(Clone)]
pub struct Config {
    /// `--tolerance_usecs`: how far an event may be from its script time (default 4000).
    pub tolerance_usecs: u64,
    /// `--tolerance_percent`: the tolerance grows to this share of the time since the previous event when that
    /// is larger (default 12.5, Linux's worst timer-wheel slack).
    pub tolerance_percent: f64,
    /// `--local_ip`: the stack's address.
    pub local_ip: Ipv4Addr,
    /// `--remote_ip`: the remote end the script plays.
    pub remote_ip: Ipv4Addr,
    /// `--gateway_ip`: the router towards the remote end.
    pub gateway_ip: Ipv4Addr,
    /// `--netmask_ip` as a prefix length (default /16).
    pub prefix_len: u8,
    /// `--bind_port`: where `bind(fd, ..., ...)` binds (default 8080).
    pub bind_port: u16,
    /// `--connect_port`: where `connect(fd, ..., ...)` connects (default 8080).
    pub connect_port: u16,
    /// `--mtu` of the stack's link (default 1500).
    pub mtu: usize,
    /// `--tcp_ts_tick_usecs`: when non-zero, outbound TS val is checked (rebased on the first one) with this
    /// many microseconds per tick; 0 (packetdrill's default) does not check it.
    pub tcp_ts_tick_usecs: u64,
    /// Check the TS ecr of outbound segments against the script (packetdrill does not; on by default here,
    /// since the script's TS vals are injected as written and the echo is fully determined by RFC 7323).
    pub check_ts_ecr: bool,
    /// `--strict_segments`: an expected segment must be exactly one segment of the stack (no aggregation).
    pub strict_segments: bool,
    /// The first remote port used for connections the script opens towards the stack.
    pub first_remote_port: u16,
    /// The longest a blocking call without an end time may hold the script (the main thread of packetdrill
    /// would hang forever); virtual time.
    pub block_limit: Duration,
    pub profile: Profile,
    /// What the script runs against.
    pub backend: Backend,
    /// Adjusts the stack's configuration last (ustack only).
    pub tweak: Option<StackTweak>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("tolerance_usecs", &self.tolerance_usecs)
            .field("tolerance_percent", &self.tolerance_percent)
            .field("local_ip", &self.local_ip)
            .field("remote_ip", &self.remote_ip)
            .field("gateway_ip", &self.gateway_ip)
            .field("prefix_len", &self.prefix_len)
            .field("bind_port", &self.bind_port)
            .field("connect_port", &self.connect_port)
            .field("mtu", &self.mtu)
            .field("tcp_ts_tick_usecs", &self.tcp_ts_tick_usecs)
            .field("check_ts_ecr", &self.check_ts_ecr)
            .field("strict_segments", &self.strict_segments)
            .field("profile", &self.profile)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tolerance_usecs: 4000,
            tolerance_percent: 12.5,
            local_ip: Ipv4Addr::new(192, 168, 0, 1),
            remote_ip: Ipv4Addr::new(192, 0, 2, 1),
            gateway_ip: Ipv4Addr::new(192, 168, 0, 2),
            prefix_len: 16,
            bind_port: 8080,
            connect_port: 8080,
            mtu: 1500,
            tcp_ts_tick_usecs: 0,
            check_ts_ecr: true,
            strict_segments: false,
            first_remote_port: 47001,
            block_limit: Duration::from_secs(3600),
            profile: Profile::Linux,
            backend: Backend::Ustack,
            tweak: None,
        }
    }
}

/// The tolerance the kernel backend uses by default: 25 ms instead of packetdrill's 4 ms, since the wall clock
/// of a loaded 2-core machine (the interpreter, the kernel's softirqs and other tests share it) wakes late by
/// more than 4 ms now and then.
pub const KERNEL_TOLERANCE_USECS: u64 = 25_000;

impl Config {
    /// The settings for running scripts against the Linux kernel ([`Backend::Kernel`]): packetdrill's defaults
    /// except for the addresses, which must lie in 198.18.0.0/15 (the kernel at 198.18.0.1/24, the remote end
    /// 198.18.1.1 behind the gateway 198.18.0.2), the tolerance ([`KERNEL_TOLERANCE_USECS`]) and the longest a
    /// blocking call without an end time may hold the script (180 s of wall-clock time).
    pub fn kernel() -> Config {
        Config {
            tolerance_usecs: KERNEL_TOLERANCE_USECS,
            local_ip: Ipv4Addr::new(198, 18, 0, 1),
            remote_ip: Ipv4Addr::new(198, 18, 1, 1),
            gateway_ip: Ipv4Addr::new(198, 18, 0, 2),
            prefix_len: 24,
            block_limit: Duration::from_secs(180),
            backend: Backend::Kernel,
            ..Config::default()
        }
    }
}

/// The stack's hardware address.
pub const LOCAL_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// The gateway's hardware address.
pub const GATEWAY_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);

impl Config {
    /// Applies a script's `--option` lines; returns the ones this interpreter cannot honour.
    pub fn apply_options(&mut self, options: &[ScriptOption]) -> Vec<Unsupported> {
        let mut bad = Vec::new();
        for o in options {
            let value = o.value.clone().unwrap_or_default();
            let mut fail = |what: String| bad.push(Unsupported { line: o.line, what });
            let ip = |v: &str| v.split('/').next().unwrap_or("").parse::<Ipv4Addr>().ok();
            match o.name.as_str() {
                // The kernel backend keeps its larger tolerance if the script asks for less.
                "tolerance_usecs" => match value.parse::<u64>() {
                    Ok(v) if self.backend == Backend::Kernel => self.tolerance_usecs = v.max(self.tolerance_usecs),
                    Ok(v) => self.tolerance_usecs = v,
                    Err(_) => fail(format!("--tolerance_usecs={value}: not a number")),
                },
                "tolerance_percent" => match value.parse() {
                    Ok(v) => self.tolerance_percent = v,
                    Err(_) => fail(format!("--tolerance_percent={value}: not a number")),
                },
                "tcp_ts_tick_usecs" => match value.parse() {
                    Ok(v) => self.tcp_ts_tick_usecs = v,
                    Err(_) => fail(format!("--tcp_ts_tick_usecs={value}: not a number")),
                },
                // Inbound TS ecr values not seen as outbound TS vals are always interpolated here.
                "tcp_ts_ecr_scaled" => {}
                "strict_segments" => self.strict_segments = true,
                // The kernel backend keeps its 198.18.0.0/15 addresses whatever the script says.
                "local_ip" | "remote_ip" | "gateway_ip" | "netmask_ip" if self.backend == Backend::Kernel => {}
                "local_ip" => match ip(&value) {
                    Some(a) => self.local_ip = a,
                    None => fail(format!("--local_ip={value}: only IPv4 addresses are supported")),
                },
                "remote_ip" => match ip(&value) {
                    Some(a) => self.remote_ip = a,
                    None => fail(format!("--remote_ip={value}: only IPv4 addresses are supported")),
                },
                "gateway_ip" => match ip(&value) {
                    Some(a) => self.gateway_ip = a,
                    None => fail(format!("--gateway_ip={value}: only IPv4 addresses are supported")),
                },
                "netmask_ip" => match ip(&value) {
                    Some(a) => self.prefix_len = u32::from(a).leading_ones() as u8,
                    None => fail(format!("--netmask_ip={value}: not an IPv4 netmask")),
                },
                "bind_port" => match value.parse() {
                    Ok(v) => self.bind_port = v,
                    Err(_) => fail(format!("--bind_port={value}: not a port")),
                },
                "connect_port" => match value.parse() {
                    Ok(v) => self.connect_port = v,
                    Err(_) => fail(format!("--connect_port={value}: not a port")),
                },
                "mtu" => match value.parse() {
                    Ok(v) => self.mtu = v,
                    Err(_) => fail(format!("--mtu={value}: not a number")),
                },
                "ip_version" if value == "ipv4" => {}
                "ip_version" => fail(format!("--ip_version={value}: only ipv4 is supported")),
                "verbose" | "dry_run" | "debug" => {}
                other => fail(format!("option --{other} is not supported")),
            }
        }
        bad
    }
}
