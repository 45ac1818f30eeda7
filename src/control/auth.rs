//! Who may use the status socket, and for what.
//!
//! The socket file is open to every local user (mode 0666 in a 0755 directory):
//! file permissions name one group, and two groups must reach it (technicians
//! who read, operators who steer), each without the other's membership. The
//! gate is therefore the daemon itself, per connection, on the peer's
//! kernel-reported credentials (SO_PEERCRED):
//!
//! - **control** (pause, resume, retry, cancel, release, test-send, reset): root,
//!   the daemon's own user, or a member of `operator_group`;
//! - **read** (status, modems, queue, message): those, and members of `read_group`;
//! - anyone else is refused at connect, before a byte of theirs is read, and
//!   holds no connection slot.
//!
//! Supplementary groups are read from `/proc/PID/status` of the peer (what the
//! kernel itself checks file access against), else from the group database.

use std::fmt;

/// A connected peer, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups (from /proc; empty when unknown).
    pub groups: Vec<u32>,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uid {} gid {}", self.uid, self.gid)?;
        if let Some(p) = self.pid {
            write!(f, " pid {p}")?;
        }
        Ok(())
    }
}

/// What a peer may do on the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Refused at connect.
    None,
    /// Status, modems, queue, message.
    Read,
    /// Everything, and a reserved connection slot when the others are taken.
    Control,
}

/// The rule, resolved at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The daemon's own uid (it may always steer itself).
    pub own_uid: u32,
    /// The read-only group's name and gid, if configured.
    pub read_group: Option<(String, u32)>,
    /// The operators' group's name and gid, if configured.
    pub operator_group: Option<(String, u32)>,
}

fn member(peer: &Peer, group: &Option<(String, u32)>) -> bool {
    group
        .as_ref()
        .is_some_and(|(_, gid)| peer.gid == *gid || peer.groups.contains(gid))
}

impl Policy {
    /// Pure decision: what may this peer do?
    pub fn access(&self, peer: &Peer) -> Access {
        if peer.uid == 0 || peer.uid == self.own_uid || member(peer, &self.operator_group) {
            Access::Control
        } else if member(peer, &self.read_group) {
            Access::Read
        } else {
            Access::None
        }
    }

    /// May this peer send control requests?
    pub fn allows(&self, peer: &Peer) -> bool {
        self.access(peer) == Access::Control
    }

    /// Who may steer, in words (for refusals).
    pub fn who(&self) -> String {
        match &self.operator_group {
            Some((name, _)) => format!("root, the daemon's user, or members of group {name:?}"),
            None => {
                "root or the daemon's user (set [status] operator_group to allow a group)".into()
            }
        }
    }

    /// Who may read, in words (for refusals at connect).
    pub fn who_reads(&self) -> String {
        let groups: Vec<String> = [&self.read_group, &self.operator_group]
            .into_iter()
            .flatten()
            .map(|(n, _)| format!("{n:?}"))
            .collect();
        if groups.is_empty() {
            "root or the daemon's user (set [status] read_group to allow a group)".into()
        } else {
            format!(
                "root, the daemon's user, or members of group {}",
                groups.join(" or ")
            )
        }
    }
}

/// Parses the `Groups:` line of `/proc/PID/status`.
pub fn groups_from_proc_status(text: &str) -> Vec<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The peer's supplementary groups as the kernel recorded them when it
/// connected (SO_PEERGROUPS, Linux 4.13): no /proc, no group database, no
/// race with a reused pid. None where the kernel lacks it.
pub fn socket_peer_groups(fd: std::os::fd::BorrowedFd<'_>) -> Option<Vec<u32>> {
    use std::os::fd::AsRawFd;
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    for _ in 0..2 {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is `len` bytes long and lives across the call; the
        // kernel writes at most `len` bytes and reports the length it needs.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(n);
            return Some(groups);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return None;
        }
        groups.resize(n.max(groups.len() * 2), 0);
    }
    None
}

/// The peer's supplementary groups where the kernel cannot tell them
/// ([`socket_peer_groups`]): its process's own (/proc/PID/status), or,
/// where /proc hides other users' processes (systemd's `ProtectProc=invisible`),
/// its user's groups from the group database. Empty if neither can be read: the
/// peer then counts only with its uid and primary gid (a refusal, never a grant).
pub fn peer_groups(pid: Option<i32>, uid: u32, gid: u32) -> Vec<u32> {
    if let Some(text) = pid.and_then(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
    {
        return groups_from_proc_status(&text);
    }
    use nix::unistd::{getgrouplist, Gid, Uid, User};
    let Some(user) = User::from_uid(Uid::from_raw(uid)).ok().flatten() else {
        return Vec::new();
    };
    let Ok(name) = std::ffi::CString::new(user.name) else {
        return Vec::new();
    };
    getgrouplist(&name, Gid::from_raw(gid))
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
        .unwrap_or_default()
}

/// A group's gid by name, from the system's group database.
pub fn gid_of(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: &[u32]) -> Peer {
        Peer {
            uid,
            gid,
            pid: None,
            groups: groups.to_vec(),
        }
    }

    #[test]
    fn three_kinds_of_peer() {
        let p = Policy {
            own_uid: 998,
            read_group: Some(("smsgw-status".into(), 1400)),
            operator_group: Some(("smsgw-ops".into(), 1500)),
        };
        use Access::{Control, Read};
        assert_eq!(p.access(&peer(0, 0, &[])), Control, "root");
        assert_eq!(p.access(&peer(998, 998, &[])), Control, "itself");
        assert_eq!(p.access(&peer(1000, 1500, &[])), Control, "primary");
        assert_eq!(p.access(&peer(1000, 1000, &[27, 1500])), Control);
        // An operator needs no other group to reach the socket.
        assert_eq!(p.access(&peer(1001, 1001, &[1500])), Control);
        assert_eq!(p.access(&peer(1002, 1002, &[1400])), Read, "technician");
        assert_eq!(p.access(&peer(1003, 1400, &[])), Read);
        assert_eq!(
            p.access(&peer(1004, 1004, &[27, 20])),
            Access::None,
            "outsider"
        );
        // The daemon's group (it can read the config) grants nothing here.
        assert_eq!(p.access(&peer(1005, 1005, &[998])), Access::None);
        assert!(p.allows(&peer(1001, 1001, &[1500])));
        assert!(!p.allows(&peer(1002, 1002, &[1400])));
        assert!(p.who_reads().contains("\"smsgw-status\" or \"smsgw-ops\""));
        let none = Policy {
            own_uid: 998,
            read_group: None,
            operator_group: None,
        };
        assert_eq!(none.access(&peer(1000, 1500, &[1500, 1400])), Access::None);
        assert_eq!(none.access(&peer(998, 1, &[])), Control);
        assert!(none.who().contains("operator_group"));
        assert!(none.who_reads().contains("read_group"));
    }

    #[test]
    fn proc_groups_line() {
        let t = "Name:\tsmsgw\nUid:\t1000\t1000\t1000\t1000\nGroups:\t20 27 1500 \nVmPeak:\t1 kB\n";
        assert_eq!(groups_from_proc_status(t), vec![20, 27, 1500]);
        assert_eq!(groups_from_proc_status("Groups:\t\n"), Vec::<u32>::new());
        assert_eq!(groups_from_proc_status("nothing"), Vec::<u32>::new());
        // Our own process has a readable entry.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(own.contains("Groups:"));
        // Without /proc: the group database (root is in group root everywhere).
        let db = peer_groups(None, 0, 0);
        assert!(db.contains(&0), "{db:?}");
    }

    #[test]
    fn the_kernel_tells_a_peers_groups() {
        use std::os::fd::AsFd;
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut got = socket_peer_groups(a.as_fd()).expect("SO_PEERGROUPS");
        let mut ours: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        got.sort_unstable();
        ours.sort_unstable();
        assert_eq!(got, ours);
    }
}
