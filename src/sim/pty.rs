//! Runs a [`SimModem`] on a real pseudo-terminal, so the daemon meets it the
//! way it meets a USB modem: by opening a device path through tokio-serial.
//!
//! The slave side is put in raw mode (no echo, no CR/LF translation by the line
//! discipline: the modem model does its own echo). With `link`, a symlink points
//! at the current `/dev/pts/N`, like `/dev/serial/by-id/...` points at `ttyUSBn`;
//! a simulated unplug closes the pty and, on return, creates a new one under a new
//! name and moves the link, as a re-enumerated USB modem does.

use super::model::{SimConfig, SimModem, Submitted};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::{openpty, OpenptyResult};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Run-time controls for a running simulator.
#[derive(Debug, Clone)]
pub enum Control {
    /// An SMS arrives from the network.
    Incoming {
        from: String,
        text: String,
    },
    /// A long SMS arrives with the parts numbered in `lost` (1-based) lost by the network.
    IncomingLosing {
        from: String,
        text: String,
        lost: Vec<usize>,
    },
    /// A voice call from this number rings the modem (`-`: no `+CLIP`),
    /// until hung up or, when given, after that many rings.
    Ring(String, Option<u32>),
    /// The firmware stops answering (true) or recovers (false).
    Hang(bool),
    /// Registration is lost (false) or regained (true).
    Registered(bool),
    /// Bytes of line noise.
    Garbage(usize),
    /// USB unplug: the device disappears for this long, then returns under a new name.
    Unplug(Duration),
    /// The modem reboots where it is (a power dip, a watchdog in its firmware):
    /// its settings are lost, its boot lines follow, the port stays.
    Reboot,
    Stop,
}

/// A running simulated modem.
#[derive(Debug, Clone)]
pub struct SimHandle {
    tx: mpsc::UnboundedSender<Control>,
    /// The path to open: the link if one was asked for, else the pts path.
    pub path: PathBuf,
    /// The current `/dev/pts/N` (changes after an unplug).
    pub pts: watch::Receiver<PathBuf>,
    submitted: Arc<Mutex<Vec<Submitted>>>,
    stored: Arc<Mutex<(usize, usize)>>,
}

impl SimHandle {
    /// What the modem's memories hold now: (SM used, SR used).
    pub fn stored(&self) -> (usize, usize) {
        *self.stored.lock().expect("stored lock")
    }

    pub fn control(&self, c: Control) {
        // The runner outlives every handle's use in practice; a stopped one ignores controls.
        let _ = self.tx.send(c);
    }

    pub fn incoming(&self, from: &str, text: &str) {
        self.control(Control::Incoming {
            from: from.into(),
            text: text.into(),
        });
    }

    /// Every part the network received so far.
    pub fn submitted(&self) -> Vec<Submitted> {
        self.submitted.lock().expect("record lock").clone()
    }
}

/// What the handle reads of the running model.
struct Views {
    submitted: Arc<Mutex<Vec<Submitted>>>,
    stored: Arc<Mutex<(usize, usize)>>,
}

struct Pty {
    master: AsyncFd<OwnedFd>,
    /// Held open so the master never sees a hang-up between client opens.
    _slave: OwnedFd,
    path: PathBuf,
}

fn open_pty(link: Option<&Path>) -> io::Result<Pty> {
    let OpenptyResult { master, slave } = openpty(None, None).map_err(io::Error::from)?;
    let mut t = tcgetattr(&slave).map_err(io::Error::from)?;
    cfmakeraw(&mut t);
    tcsetattr(&slave, SetArg::TCSANOW, &t).map_err(io::Error::from)?;
    let path = nix::unistd::ttyname(&slave).map_err(io::Error::from)?;
    let flags =
        OFlag::from_bits_truncate(fcntl(&master, FcntlArg::F_GETFL).map_err(io::Error::from)?);
    fcntl(&master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    if let Some(link) = link {
        relink(&path, link)?;
    }
    // SAFETY: an OwnedFd owns an open descriptor, keeps it open until dropped with
    // the AsyncFd, and always reports the same number.
    let master = unsafe { AsyncFd::register(master) }.map_err(|e| e.into_parts().1)?;
    Ok(Pty {
        master,
        _slave: slave,
        path,
    })
}

/// Points `link` at `target` atomically (a new symlink renamed over the old).
fn relink(target: &Path, link: &Path) -> io::Result<()> {
    let tmp = link.with_extension("tmp-link");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link)
}

/// Starts a simulated modem on a new pty. `record` appends every submitted part
/// as a JSON line (the network's view: what was really sent, duplicates included).
pub async fn spawn(
    cfg: SimConfig,
    link: Option<PathBuf>,
    record: Option<PathBuf>,
) -> io::Result<SimHandle> {
    let pty = open_pty(link.as_deref())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let (pts_tx, pts_rx) = watch::channel(pty.path.clone());
    let submitted = Arc::new(Mutex::new(Vec::new()));
    let stored = Arc::new(Mutex::new((0, 0)));
    let record = match record {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ),
        None => None,
    };
    let handle = SimHandle {
        tx,
        path: link.clone().unwrap_or_else(|| pty.path.clone()),
        pts: pts_rx,
        submitted: submitted.clone(),
        stored: stored.clone(),
    };
    let model = SimModem::new(cfg, Instant::now().into_std());
    let views = Views { submitted, stored };
    tokio::spawn(run(model, pty, link, rx, pts_tx, views, record));
    Ok(handle)
}

async fn run(
    mut model: SimModem,
    mut pty: Pty,
    link: Option<PathBuf>,
    mut rx: mpsc::UnboundedReceiver<Control>,
    pts: watch::Sender<PathBuf>,
    views: Views,
    mut record: Option<std::fs::File>,
) {
    let Views { submitted, stored } = views;
    let mut buf = [0u8; 4096];
    loop {
        // Publish what reached the network before writing the answers that
        // acknowledge it: a client never sees a part the record lacks.
        let parts = model.drain_submitted();
        if !parts.is_empty() {
            if let Some(f) = record.as_mut() {
                for p in &parts {
                    let _ = writeln!(f, "{}", serde_json::to_string(p).unwrap_or_default());
                }
                let _ = f.flush();
            }
            submitted.lock().expect("record lock").extend(parts);
        }
        *stored.lock().expect("stored lock") = model.stored();
        let now = Instant::now().into_std();
        while let Some(out) = model.poll_output(now) {
            if write_all(&pty.master, &out).await.is_err() {
                break;
            }
        }
        let wake = model.poll_timeout().map(Instant::from_std);
        tokio::select! {
            r = pty.master.readable() => {
                let Ok(mut guard) = r else { return };
                match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), &mut buf).map_err(io::Error::from)) {
                    Ok(Ok(n)) if n > 0 => model.handle_input(Instant::now().into_std(), &buf[..n]),
                    Ok(Ok(_)) | Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                    Err(_would_block) => {}
                }
            }
            c = rx.recv() => {
                let now = Instant::now().into_std();
                match c {
                    None | Some(Control::Stop) => {
                        if let Some(l) = &link { let _ = std::fs::remove_file(l); }
                        return;
                    }
                    Some(Control::Incoming { from, text }) => { let _ = model.inject_incoming(now, &from, &text); }
                    Some(Control::IncomingLosing { from, text, lost }) => { let _ = model.inject_incoming_losing(now, &from, &text, &lost); }
                    Some(Control::Ring(n, rings)) => model.ring(now, &n, rings),
                    Some(Control::Hang(h)) => model.set_hung(h),
                    Some(Control::Registered(r)) => model.set_registered(now, r),
                    Some(Control::Garbage(n)) => model.inject_garbage(now, n),
                    Some(Control::Reboot) => model.power_cycle(now),
                    Some(Control::Unplug(d)) => {
                        if let Some(l) = &link { let _ = std::fs::remove_file(l); }
                        let old = pty.path.clone();
                        drop(pty);
                        tokio::time::sleep(d).await;
                        // Come back under a new name, as a re-enumerated USB modem does:
                        // Linux reuses the lowest free pts number, so hold any pty that
                        // got the old name while opening another.
                        let mut held = Vec::new();
                        pty = loop {
                            match open_pty(None) {
                                Ok(p) if p.path == old && held.len() < 4 => held.push(p),
                                Ok(p) => break p,
                                Err(_) => return,
                            }
                        };
                        drop(held);
                        if let Some(l) = &link {
                            if relink(&pty.path, l).is_err() { return; }
                        }
                        let _ = pts.send(pty.path.clone());
                        // Back on USB power: the modem boots again.
                        model.power_cycle(Instant::now().into_std());
                    }
                }
            }
            _ = sleep_until(wake) => {}
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), bytes).map_err(io::Error::from)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}
