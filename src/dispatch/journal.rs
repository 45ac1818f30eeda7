//! The recorder's write-ahead file: modem events (delivery reports, incoming
//! messages) that the database did not take at once wait here, in order, one JSON
//! line each, written and synced before anything else happens to them. A routed
//! report exists nowhere else; a kill, an outage longer than memory could hold,
//! or a restart in the middle of one, loses none of them.
//!
//! Only a window of the file is in memory ([`Journal::load`]); entries are
//! confirmed in order once recorded, and the file is emptied when every entry
//! in it is. A crash between a record and its confirmation replays that entry:
//! every record is idempotent (the inbox's fingerprint, a report applied again,
//! a reassembled fragment remembered).

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tracing::warn;

/// An append-only file of pending entries.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Entries in the file.
    appended: u64,
    /// Entries recorded, from the start of the file.
    confirmed: u64,
    /// Entries handed out by `load`, from the start of the file.
    loaded: u64,
    /// Byte offset of the first entry not loaded yet.
    read_pos: u64,
}

impl Journal {
    /// Opens (or creates) the journal; entries left by a previous process are pending.
    pub fn open(path: &Path) -> io::Result<Journal> {
        if let Some(dir) = path.parent() {
            crate::durable::create_dir_all(dir)?;
        }
        // A new journal's name is synced with its directory: an entry synced
        // into a file whose name a power cut loses is lost with it.
        let file = crate::durable::open_creating(
            path,
            OpenOptions::new().create(true).read(true).append(true),
        )?;
        let mut appended = 0;
        for line in BufReader::new(&file).lines() {
            if !line?.trim().is_empty() {
                appended += 1;
            }
        }
        Ok(Journal {
            path: path.to_path_buf(),
            file,
            appended,
            confirmed: 0,
            loaded: 0,
            read_pos: 0,
        })
    }

    /// Entries not recorded yet.
    pub fn pending(&self) -> u64 {
        self.appended - self.confirmed
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and syncs it to disk before returning.
    pub fn append<T: Serialize>(&mut self, entry: &T) -> io::Result<()> {
        let mut line = serde_json::to_string(entry).map_err(io::Error::other)?;
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        self.appended += 1;
        Ok(())
    }

    /// The next entries not handed out yet, at most `max`. An entry that does not
    /// parse (a line cut by a crash mid-write) is skipped and counted as done.
    pub fn load<T: DeserializeOwned>(&mut self, max: usize) -> io::Result<Vec<T>> {
        let mut out = Vec::new();
        if self.loaded >= self.appended {
            return Ok(out);
        }
        let mut r = BufReader::new(&self.file);
        r.seek(SeekFrom::Start(self.read_pos))?;
        let mut line = String::new();
        while out.len() < max && self.loaded < self.appended {
            line.clear();
            let n = r.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            self.read_pos += n as u64;
            if line.trim().is_empty() {
                continue;
            }
            self.loaded += 1;
            match serde_json::from_str(line.trim_end()) {
                Ok(v) => out.push(v),
                Err(e) => {
                    warn!(journal = %self.path.display(), error = %e, "skipping an unreadable journal entry");
                    self.confirmed += 1;
                }
            }
        }
        Ok(out)
    }

    /// The oldest loaded entry is recorded. Once every entry is, the file is emptied.
    pub fn confirm(&mut self) -> io::Result<()> {
        self.confirmed = (self.confirmed + 1).min(self.loaded);
        if self.confirmed == self.appended {
            self.file.set_len(0)?;
            self.file.sync_data()?;
            self.appended = 0;
            self.confirmed = 0;
            self.loaded = 0;
            self.read_pos = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_in_order_and_the_file_empties() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut j = Journal::open(&p).unwrap();
        for i in 0..5u32 {
            j.append(&i).unwrap();
        }
        assert_eq!(j.load::<u32>(2).unwrap(), [0, 1]);
        j.confirm().unwrap();
        drop(j);
        // A restart: nothing was truncated, all five replay (idempotent records).
        let mut j = Journal::open(&p).unwrap();
        assert_eq!(j.pending(), 5);
        assert_eq!(j.load::<u32>(10).unwrap(), [0, 1, 2, 3, 4]);
        j.append(&5u32).unwrap();
        assert_eq!(j.load::<u32>(10).unwrap(), [5]);
        for _ in 0..6 {
            j.confirm().unwrap();
        }
        assert_eq!(j.pending(), 0);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        // A line cut by a crash is skipped.
        std::fs::write(&p, "7\n{\"cut\n8\n").unwrap();
        let mut j = Journal::open(&p).unwrap();
        assert_eq!(j.load::<u32>(10).unwrap(), [7, 8]);
    }
}

/// One journal for the whole daemon: the recorder of modem events and the
/// sends (an acknowledged part whose record failed) append to it; the recorder
/// records and confirms in order.
#[derive(Debug, Clone)]
pub struct Shared(std::sync::Arc<std::sync::Mutex<Journal>>);

impl Shared {
    pub fn open(path: &Path) -> io::Result<Shared> {
        Ok(Shared(std::sync::Arc::new(std::sync::Mutex::new(
            Journal::open(path)?,
        ))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn append<T: Serialize>(&self, entry: &T) -> io::Result<()> {
        self.lock().append(entry)
    }

    pub fn load<T: DeserializeOwned>(&self, max: usize) -> io::Result<Vec<T>> {
        self.lock().load(max)
    }

    pub fn confirm(&self) -> io::Result<()> {
        self.lock().confirm()
    }

    pub fn pending(&self) -> u64 {
        self.lock().pending()
    }

    pub fn path(&self) -> PathBuf {
        self.lock().path().to_path_buf()
    }
}
