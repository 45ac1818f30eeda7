//! Who may change the daemon's state through the status socket.
//!
//! The socket file itself is the first gate (mode 0660, owned by the configured
//! group): only its group may connect at all. Reads are then open to every peer;
//! control requests need the peer's kernel-reported credentials (SO_PEERCRED) to
//! be root, the daemon's own user, or a member of the configured admin group.
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

/// The rule, resolved at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The daemon's own uid (it may always steer itself).
    pub own_uid: u32,
    /// The admin group's name and gid, if configured.
    pub admin_group: Option<(String, u32)>,
}

impl Policy {
    /// Pure decision: may this peer send control requests?
    pub fn allows(&self, peer: &Peer) -> bool {
        if peer.uid == 0 || peer.uid == self.own_uid {
            return true;
        }
        match &self.admin_group {
            Some((_, gid)) => peer.gid == *gid || peer.groups.contains(gid),
            None => false,
        }
    }

    /// Who may, in words (for refusals).
    pub fn who(&self) -> String {
        match &self.admin_group {
            Some((name, _)) => format!("root, the daemon's user, or members of group {name:?}"),
            None => "root or the daemon's user (set [status] admin_group to allow a group)".into(),
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

/// The peer's supplementary groups: its process's own (/proc/PID/status), or,
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
    fn root_and_self_always_admin_group_when_set() {
        let p = Policy {
            own_uid: 998,
            admin_group: Some(("smsgw-admin".into(), 1500)),
        };
        assert!(p.allows(&peer(0, 0, &[])));
        assert!(p.allows(&peer(998, 998, &[])));
        assert!(p.allows(&peer(1000, 1500, &[])), "primary group");
        assert!(
            p.allows(&peer(1000, 1000, &[27, 1500])),
            "supplementary group"
        );
        assert!(!p.allows(&peer(1000, 1000, &[27, 20])));
        let none = Policy {
            own_uid: 998,
            admin_group: None,
        };
        assert!(!none.allows(&peer(1000, 1500, &[1500])));
        assert!(none.who().contains("admin_group"));
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
}
