//! Files that survive a power cut. A write is on the disk only once it was
//! fsynced, and a file that was created, renamed or emptied exists after a
//! power cut only once its directory was fsynced too (ext4, xfs and btrfs
//! keep a new name in memory until then). smsgw's own files beside the
//! database (the recorder's journal, its rejected file, the instance lock,
//! the SQLite database file itself) are created through these helpers, so a
//! branch server that loses power finds them as they were last synced.

use std::fs::File;
use std::io;
use std::path::Path;

/// Fsyncs a directory: its entries (files created, renamed or removed in it)
/// reach the disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Fsyncs the directory that holds `path`.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => sync_dir(p),
        None => Ok(()),
    }
}

/// `create_dir_all` whose every created directory survives a power cut: the
/// parent of each one created is fsynced after it.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync_parent(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` with `opts` (which must allow creation); when the file did
/// not exist before, its directory entry is fsynced before this returns.
pub fn open_creating(path: &Path, opts: &std::fs::OpenOptions) -> io::Result<File> {
    let existed = std::fs::symlink_metadata(path).is_ok();
    let f = opts.open(path)?;
    if !existed {
        sync_parent(path)?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_nested_directories_and_files() {
        let d = tempfile::tempdir().unwrap();
        let deep = d.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        let mut o = std::fs::OpenOptions::new();
        o.create(true).append(true);
        let p = deep.join("f");
        open_creating(&p, &o).unwrap();
        open_creating(&p, &o).unwrap();
        assert!(p.is_file());
        sync_dir(Path::new("")).unwrap();
        // A file where a directory is wanted is an error, not a loop.
        assert!(create_dir_all(&p.join("x")).is_err());
    }
}
