//! Graceful removal of real servers (upstream's `pkg/proxy/ipvs/graceful_termination.go`, simplified): a TCP
//! real server that still has connections is first set to weight 0, so the scheduler sends it nothing new, and
//! deleted by a later sync once the kernel reports no active or inactive connection. UDP and SCTP real servers
//! are deleted at once (`expire_nodest_conn` drops their flows on the next packet), as upstream.
//!
//! The difference from upstream: no in-memory termination list and no one-minute timer. Every sync reads the
//! real servers with their connection counts (`ipvsadm -Ln`), so a real server that is no longer wanted and has
//! weight 0 *is* the termination list, which also survives a restart; the periodic sync (`syncPeriod`) is the
//! timer. An endpoint that comes back while being terminated gets its weight back instead of being deleted and
//! re-added.

use super::ipvsadm::RealServerState;
use crate::serviceport::Protocol;

/// What to do with a real server that is no longer wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Delete it now.
    Delete,
    /// Set its weight to 0 and wait for its connections to end.
    Quiesce,
    /// Already at weight 0 with connections left: leave it.
    Wait,
}

/// Upstream's `IsRsGracefulTerminationNeeded`: only TCP waits for connections to end.
pub fn graceful_termination_needed(protocol: Protocol) -> bool {
    protocol == Protocol::Tcp
}

/// Upstream's `deleteRsFunc` decision for one real server.
pub fn plan(protocol: Protocol, rs: &RealServerState) -> Removal {
    if !graceful_termination_needed(protocol) || rs.active_conns + rs.inactive_conns == 0 {
        Removal::Delete
    } else if rs.weight != 0 {
        Removal::Quiesce
    } else {
        Removal::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(weight: u32, active: u64, inactive: u64) -> RealServerState {
        RealServerState { addr: "10.1.0.1:80".parse().unwrap(), weight, active_conns: active, inactive_conns: inactive }
    }

    #[test]
    fn decisions() {
        assert_eq!(plan(Protocol::Tcp, &rs(1, 0, 0)), Removal::Delete);
        assert_eq!(plan(Protocol::Tcp, &rs(1, 3, 0)), Removal::Quiesce);
        assert_eq!(plan(Protocol::Tcp, &rs(1, 0, 2)), Removal::Quiesce);
        assert_eq!(plan(Protocol::Tcp, &rs(0, 0, 2)), Removal::Wait);
        assert_eq!(plan(Protocol::Tcp, &rs(0, 0, 0)), Removal::Delete);
        assert_eq!(plan(Protocol::Udp, &rs(1, 5, 5)), Removal::Delete);
        assert_eq!(plan(Protocol::Sctp, &rs(1, 5, 5)), Removal::Delete);
    }
}
