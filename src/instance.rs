//! Who this process is among the smsgw instances that share a database, and
//! the guarantee that one live process at a time holds an identity.
//!
//! The identity is what a row's lease names. It is stable across restarts (the
//! host and the configuration, or `[instance] id`), so a restarted process
//! knows the rows its predecessor left `sending` and settles them at once
//! instead of waiting out their lease. Two live processes with one identity
//! would settle each other's sends: a file lock in the state directory (and,
//! on PostgreSQL and MariaDB, an advisory lock held by a session of its own:
//! [`crate::store::InstanceLock`]) makes the second one refuse to start.

use crate::config::Config;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Why this process may not run as this identity.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another smsgw process runs as instance {id:?} (it holds {path}); stop it first, or give this one its own [instance] id")]
    Held { id: String, path: String },
    #[error("cannot create the lock {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn fnv(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0xFF]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// This host's name (`smsgw` when it cannot be read).
fn host() -> String {
    let h = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let h: String = h
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    if h.is_empty() {
        "smsgw".into()
    } else {
        h
    }
}

/// The identity: `[instance] id`, or the host name with a short hash of the
/// configuration file's path and the database url (two configurations on one
/// host are two instances; the same one restarted is the same).
pub fn identity(cfg: &Config, config_file: Option<&str>) -> String {
    if let Some(id) = &cfg.instance.id {
        return id.clone();
    }
    let file = config_file
        .map(|f| {
            std::fs::canonicalize(f)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| f.to_string())
        })
        .unwrap_or_default();
    let url = crate::store::redact_url(&cfg.database.url);
    format!("{}-{:08x}", host(), fnv(&[&file, &url]) as u32)
}

/// Where an instance keeps its files: systemd's `STATE_DIRECTORY`, else a
/// directory under the system's temporary directory.
pub fn state_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("smsgw"))
}

/// A file name for an identity (anything but letters, digits, `.`, `-`, `_` becomes `_`).
pub fn file_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The exclusive lock of one identity, held while this value lives (and by the
/// kernel only while this process does: a killed process leaves no stale lock).
#[derive(Debug)]
pub struct FileLock {
    _lock: nix::fcntl::Flock<File>,
    pub path: PathBuf,
}

/// Takes the lock of `id` in `dir`.
pub fn lock(dir: &Path, id: &str) -> Result<FileLock, LockError> {
    let path = dir.join(format!("instance-{}.lock", file_name(id)));
    let io = |source| LockError::Io {
        path: path.display().to_string(),
        source,
    };
    crate::durable::create_dir_all(dir).map_err(io)?;
    let file = crate::durable::open_creating(
        &path,
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
    )
    .map_err(io)?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(FileLock { _lock: l, path }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(LockError::Held {
            id: id.to_string(),
            path: path.display().to_string(),
        }),
        Err((_, e)) => Err(io(std::io::Error::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_and_tells_configurations_apart() {
        let mut a = Config::default();
        let b = a.clone();
        assert_eq!(
            identity(&a, Some("/etc/smsgw/smsgw.toml")),
            identity(&b, Some("/etc/smsgw/smsgw.toml"))
        );
        assert_ne!(
            identity(&a, Some("/etc/smsgw/a.toml")),
            identity(&a, Some("/etc/smsgw/b.toml"))
        );
        a.instance.id = Some("branch-7".into());
        assert_eq!(identity(&a, None), "branch-7");
        assert_eq!(file_name("a/b c"), "a_b_c");
    }

    #[test]
    fn one_holder_per_identity() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path(), "x").unwrap();
        assert!(matches!(lock(dir.path(), "x"), Err(LockError::Held { .. })));
        assert!(lock(dir.path(), "y").is_ok(), "another identity is free");
        drop(first);
        assert!(lock(dir.path(), "x").is_ok(), "released with its holder");
    }
}
