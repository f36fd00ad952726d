//! IPVS virtual and real servers as upstream's `pkg/proxy/ipvs/util` models them, read from `ipvsadm -Ln` and
//! written as `ipvsadm-restore` lines (the same arguments `ipvsadm` takes): `-A`/`-E`/`-D` for virtual servers,
//! `-a`/`-e`/`-d` for real servers, always in masquerading (NAT) mode as kube-proxy uses IPVS.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::serviceport::{IpFamily, Protocol};

/// `-s mh` needs the source port hashed in too (upstream's `FlagSourceHash`, ipvsadm's `mh-port`).
pub const MH_PORT_FLAG: &str = "mh-port";

/// Which virtual server: protocol, address and port (upstream's `VirtualServer.String()` is `ip:port/PROTO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VsKey {
    pub protocol: Protocol,
    pub addr: SocketAddr,
}

impl VsKey {
    pub fn new(ip: IpAddr, port: u16, protocol: Protocol) -> Self {
        VsKey { protocol, addr: SocketAddr::new(ip, port) }
    }

    pub fn family(&self) -> IpFamily {
        IpFamily::of(&self.addr.ip())
    }

    /// `-t 10.0.0.1:80`, `-u [fd00::1]:53`, `--sctp-service 10.0.0.1:9`.
    fn service_args(&self) -> String {
        let flag = match self.protocol {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
            Protocol::Sctp => "--sctp-service",
        };
        format!("{flag} {}", self.addr)
    }
}

impl fmt::Display for VsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.protocol.upper())
    }
}

/// A virtual server's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    pub key: VsKey,
    pub scheduler: String,
    /// `sessionAffinity: ClientIP`: the persistence timeout in seconds (upstream's `FlagPersistent` + `Timeout`).
    pub persistence: Option<u32>,
    /// Scheduler flags (`-b`), sorted.
    pub sched_flags: Vec<String>,
}

impl VirtualServer {
    fn settings_args(&self) -> String {
        let mut s = format!("{} -s {}", self.key.service_args(), self.scheduler);
        if let Some(t) = self.persistence {
            s.push_str(&format!(" -p {t}"));
        }
        if !self.sched_flags.is_empty() {
            s.push_str(&format!(" -b {}", self.sched_flags.join(",")));
        }
        s
    }

    /// `-A ...`: creates it.
    pub fn add_line(&self) -> String {
        format!("-A {}", self.settings_args())
    }

    /// `-E ...`: changes the scheduler, persistence or flags of an existing one.
    pub fn edit_line(&self) -> String {
        format!("-E {}", self.settings_args())
    }
}

/// `-D ...`: deletes a virtual server and its real servers.
pub fn delete_vs_line(key: &VsKey) -> String {
    format!("-D {}", key.service_args())
}

/// `-a`/`-e ... -r <endpoint> -m -w <weight>`: adds or reweighs a real server (masquerading).
pub fn real_server_line(edit: bool, vs: &VsKey, rs: SocketAddr, weight: u32) -> String {
    format!("{} {} -r {rs} -m -w {weight}", if edit { "-e" } else { "-a" }, vs.service_args())
}

/// `-d ... -r <endpoint>`: removes a real server.
pub fn delete_rs_line(vs: &VsKey, rs: SocketAddr) -> String {
    format!("-d {} -r {rs}", vs.service_args())
}

/// A real server as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServerState {
    pub addr: SocketAddr,
    pub weight: u32,
    pub active_conns: u64,
    pub inactive_conns: u64,
}

/// A virtual server and its real servers as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServerState {
    pub vs: VirtualServer,
    pub real_servers: Vec<RealServerState>,
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

/// Parses `ipvsadm -Ln` (numeric listing with connection counters); firewall-mark services are skipped.
pub fn parse_list(text: &str) -> Vec<VirtualServerState> {
    let mut out: Vec<VirtualServerState> = Vec::new();
    let mut skipping = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["->", addr, _forward, weight, active, inactive, ..] => {
                let (Some(cur), false) = (out.last_mut(), skipping) else { continue };
                let Some(addr) = parse_addr(addr) else { continue };
                cur.real_servers.push(RealServerState {
                    addr,
                    weight: weight.parse().unwrap_or(0),
                    active_conns: active.parse().unwrap_or(0),
                    inactive_conns: inactive.parse().unwrap_or(0),
                });
            }
            [proto, addr, scheduler, rest @ ..] => {
                let protocol = match *proto {
                    "TCP" => Protocol::Tcp,
                    "UDP" => Protocol::Udp,
                    "SCTP" => Protocol::Sctp,
                    _ => {
                        skipping = true;
                        continue;
                    }
                };
                let Some(addr) = parse_addr(addr) else {
                    skipping = true;
                    continue;
                };
                skipping = false;
                let mut persistence = None;
                let mut sched_flags = Vec::new();
                let mut i = 0;
                while i < rest.len() {
                    match rest[i] {
                        "persistent" => {
                            persistence = rest.get(i + 1).and_then(|t| t.parse().ok());
                            i += 1;
                        }
                        "mask" | "pe" => i += 1,
                        f if f.starts_with('(') => {
                            sched_flags = f
                                .trim_matches(|c| c == '(' || c == ')')
                                .split(',')
                                .filter(|s| !s.is_empty())
                                .map(str::to_string)
                                .collect();
                            sched_flags.sort();
                        }
                        _ => {}
                    }
                    i += 1;
                }
                out.push(VirtualServerState {
                    vs: VirtualServer {
                        key: VsKey { protocol, addr },
                        scheduler: scheduler.to_string(),
                        persistence,
                        sched_flags,
                    },
                    real_servers: Vec::new(),
                });
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listing() {
        let text = "IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn
TCP  10.96.0.1:443 rr persistent 10800
  -> 192.168.0.2:6443             Masq    1      2          5
  -> 192.168.0.3:6443             Masq    0      0          1
UDP  [fd00::a]:53 mh (mh-port)
  -> [fd01::2]:5353               Masq    1      0          0
FWM  7 rr
  -> 10.0.0.9:80                  Masq    1      0          0
TCP  10.96.0.2:80 lc
";
        let got = parse_list(text);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].vs.key.to_string(), "10.96.0.1:443/TCP");
        assert_eq!((got[0].vs.scheduler.as_str(), got[0].vs.persistence), ("rr", Some(10800)));
        assert_eq!(got[0].real_servers[1].weight, 0);
        assert_eq!((got[0].real_servers[0].active_conns, got[0].real_servers[0].inactive_conns), (2, 5));
        assert_eq!(got[1].vs.key.to_string(), "[fd00::a]:53/UDP");
        assert_eq!(got[1].vs.sched_flags, ["mh-port"]);
        assert_eq!(got[1].real_servers.len(), 1);
        assert!(got[2].real_servers.is_empty(), "the firewall-mark service's real server is not attached to it");
    }

    #[test]
    fn restore_lines() {
        let key = VsKey::new("10.96.0.1".parse().unwrap(), 80, Protocol::Tcp);
        let vs = VirtualServer { key, scheduler: "rr".into(), persistence: Some(60), sched_flags: vec![] };
        assert_eq!(vs.add_line(), "-A -t 10.96.0.1:80 -s rr -p 60");
        let rs: SocketAddr = "10.1.0.2:8080".parse().unwrap();
        assert_eq!(real_server_line(false, &key, rs, 1), "-a -t 10.96.0.1:80 -r 10.1.0.2:8080 -m -w 1");
        assert_eq!(delete_rs_line(&key, rs), "-d -t 10.96.0.1:80 -r 10.1.0.2:8080");
        let udp6 = VsKey::new("fd00::a".parse().unwrap(), 53, Protocol::Udp);
        assert_eq!(delete_vs_line(&udp6), "-D -u [fd00::a]:53");
    }
}
