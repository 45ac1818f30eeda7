//! The daemon's side of the status socket: binds it with the right permissions,
//! reads one request per line from each client, authorises control requests, and
//! answers from the store, the modem handles and the dispatcher's shared state.
//!
//! A client can do the daemon no harm: lines are bounded, every request gets one
//! answer or a typed refusal, a client that goes away mid-answer only ends its own
//! connection, and connections are capped.

use super::auth::{peer_groups, Access, Peer, Policy};
use super::proto::{
    self, Done, ErrorCode, MessageView, ModemView, QueueCount, QueueView, ReleaseAction, Request,
    Response, Summary,
};
use crate::dispatch::steer::Steering;
use crate::modem::{Fleet, ModemHandle, ModemState};
use crate::pdu::{self, SubmitOptions};
use crate::store::{OperatorAction, OutboxRow, Store};
use chrono::{DateTime, Utc};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

/// Why the socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("[status] socket {path}: another smsgw is already listening there")]
    InUse { path: PathBuf },
    #[error("[status] socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "[status] socket {path} is {kind}, not a socket: refusing to remove it (check the path)"
    )]
    NotASocket { path: PathBuf, kind: &'static str },
}

/// Everything a request may look at or act on.
pub struct Context {
    pub store: Store,
    pub modems: Fleet,
    pub steer: Arc<Steering>,
    pub policy: Policy,
    pub owner: String,
    pub config_file: Option<String>,
    pub started_at: DateTime<Utc>,
    pub started: Instant,
    /// The database URL without its password.
    pub database_url: String,
    /// Remembers a database that just failed to answer in time.
    pub slow: SlowDatabase,
}

/// After one database call misses its deadline, the next calls within a few
/// seconds are refused at once instead of each waiting out its own deadline: a
/// status request must answer quickly exactly when the database does not (a
/// locked table, a server restarting), so the technician sees why.
#[derive(Default)]
pub struct SlowDatabase(std::sync::Mutex<Option<Instant>>);

/// How long a database call from the socket may take.
const DB_DEADLINE: Duration = Duration::from_secs(3);

/// How long a missed deadline makes later calls fail fast.
const SLOW_MEMORY: Duration = Duration::from_secs(10);

impl SlowDatabase {
    fn recently(&self) -> bool {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.is_some_and(|at| at.elapsed() < SLOW_MEMORY)
    }
    fn noticed(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

/// Connections open at once for technicians and operators together.
pub const MAX_CLIENTS: usize = 32;

/// Further connections only root, the daemon's user and operators may take: a
/// technician (or a script of theirs) holding every ordinary slot cannot lock
/// an operator out.
pub const RESERVED_FOR_OPERATORS: usize = 4;

/// A request line must be complete this long after the previous answer (or the
/// connect): neither a trickle of bytes nor empty lines keep a connection.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// An answer must be taken by the client within this.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// No connection lives longer, however busy (reconnecting is cheap).
const MAX_LIFE: Duration = Duration::from_secs(600);

/// Binds the socket. An existing socket with a daemon behind it is refused; a
/// stale one (a crash) is replaced; anything that is not a socket is never
/// removed (a typo in `[status] socket` must not delete the database). The file
/// is then opened as what it is, without following a symlink, and made 0666:
/// the daemon authorises every peer itself ([`super::auth`]), so no group
/// ownership and no chown are needed.
pub async fn bind(path: &Path) -> Result<UnixListener, BindError> {
    use std::os::unix::fs::FileTypeExt;
    let io = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(BindError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(m) => {
            return Err(BindError::NotASocket {
                path: path.to_path_buf(),
                kind: kind_of(&m.file_type()),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    chmod_own_socket(path, 0o666).map_err(io)?;
    Ok(listener)
}

fn kind_of(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a FIFO"
    } else {
        "a device"
    }
}

/// chmod of the socket we just bound, never through a symlink: the path is
/// opened with O_PATH|O_NOFOLLOW, checked to be a socket of our own, and the
/// mode set through that descriptor (`/proc/self/fd`, as glibc's
/// `fchmodat(AT_SYMLINK_NOFOLLOW)` does; one syscall the unit allows).
fn chmod_own_socket(path: &Path, mode: u32) -> std::io::Result<()> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    use std::os::fd::AsRawFd;
    let fd = open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)?;
    let st = fstat(&fd).map_err(std::io::Error::from)?;
    let is_socket = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK;
    if !is_socket || st.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(std::io::Error::other(
            "replaced by something else while binding; refusing to change its mode",
        ));
    }
    std::fs::set_permissions(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        std::fs::Permissions::from_mode(mode),
    )
}

/// Removes the socket file at stop, if it still is a socket.
fn remove_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Accepts clients until `stop` turns true, then removes the socket file.
///
/// Every connection is accepted at once and judged by its peer's credentials
/// before anything of it is read: an outsider gets a refusal and is closed; a
/// technician takes an ordinary slot, an operator an ordinary or a reserved
/// one; with none free the client is told so and closed. The daemon therefore
/// never holds more than `MAX_CLIENTS + RESERVED_FOR_OPERATORS` client sockets,
/// whatever a local user opens.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    ctx: Arc<Context>,
    mut stop: watch::Receiver<bool>,
) {
    let ordinary = Arc::new(Semaphore::new(MAX_CLIENTS));
    let reserved = Arc::new(Semaphore::new(RESERVED_FOR_OPERATORS));
    let mut refused_at = Instant::now() - Duration::from_secs(60);
    loop {
        let stream = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => match a {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: the pending connection stays queued.
                    warn!(error = %e, "status socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let peer = peer_of(&stream);
        let access = peer
            .as_ref()
            .map(|p| ctx.policy.access(p))
            .unwrap_or(Access::None);
        let permit = match access {
            Access::None => {
                let r = Response::err(
                    ErrorCode::Forbidden,
                    format!(
                        "the status socket is for {}; you are {}",
                        ctx.policy.who_reads(),
                        peer.as_ref()
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "unknown".into())
                    ),
                );
                if refused_at.elapsed() > Duration::from_secs(10) {
                    refused_at = Instant::now();
                    warn!(peer = ?peer.as_ref().map(|p| p.to_string()), "status socket: connection refused (not in read_group or operator_group)");
                }
                refuse(&stream, &r);
                continue;
            }
            Access::Read => ordinary.clone().try_acquire_owned().ok(),
            Access::Control => ordinary
                .clone()
                .try_acquire_owned()
                .or_else(|_| reserved.clone().try_acquire_owned())
                .ok(),
        };
        let Some(permit) = permit else {
            let r = Response::err(
                ErrorCode::Busy,
                "every connection slot is taken; try again shortly",
            );
            refuse(&stream, &r);
            continue;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let life = tokio::time::timeout(MAX_LIFE, connection(stream, peer, &ctx));
            match life.await {
                Ok(Err(e)) => debug!(error = %e, "status client went away"),
                Err(_) => debug!("status client reached the connection's maximum life"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
    remove_socket(&path);
}

/// One answer written without waiting (the socket is new, its buffer empty),
/// then the connection closes: a refused client costs no task and no slot.
/// Rate-limits a log line: [`LogLimit::allow`] says yes at most once per
/// period, with how many were held back since.
struct LogLimit {
    last: std::sync::Mutex<Option<Instant>>,
    held: std::sync::atomic::AtomicU64,
}

impl LogLimit {
    const fn new() -> Self {
        LogLimit {
            last: std::sync::Mutex::new(None),
            held: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn allow(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            self.held.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(Instant::now());
        Some(self.held.swap(0, Ordering::Relaxed))
    }
}

static REFUSALS: LogLimit = LogLimit::new();

fn refuse(stream: &UnixStream, r: &Response) {
    let mut out = serde_json::to_vec(r).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    let _ = stream.try_write(&out);
}

fn peer_of(stream: &UnixStream) -> Option<Peer> {
    let c = stream.peer_cred().ok()?;
    Some(Peer {
        uid: c.uid(),
        gid: c.gid(),
        pid: c.pid(),
        groups: super::auth::socket_peer_groups(std::os::fd::AsFd::as_fd(stream))
            .unwrap_or_else(|| peer_groups(c.pid(), c.uid(), c.gid())),
    })
}

/// Reads the next request line into `line` (at most one byte over
/// `MAX_REQUEST`). `None` at the end of the stream or at `deadline`: empty lines
/// do not move the deadline, so a client sending only newlines is dropped as an
/// idle one is.
async fn next_request<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    deadline: tokio::time::Instant,
) -> std::io::Result<Option<()>> {
    loop {
        line.clear();
        let limit = proto::MAX_REQUEST as u64 + 1;
        let n = match tokio::time::timeout_at(
            deadline,
            (&mut *reader).take(limit).read_until(b'\n', line),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        };
        if n == 0 {
            return Ok(None);
        }
        if !line.trim_ascii().is_empty() || line.last() != Some(&b'\n') {
            return Ok(Some(()));
        }
    }
}

async fn connection(stream: UnixStream, peer: Option<Peer>, ctx: &Context) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::with_capacity(256);
    loop {
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
        if next_request(&mut reader, &mut line, deadline)
            .await?
            .is_none()
        {
            return Ok(());
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && line.len() > proto::MAX_REQUEST {
            let r = Response::err(
                ErrorCode::TooLarge,
                format!("a request is at most {} bytes", proto::MAX_REQUEST),
            );
            reply(&mut write, &r).await?;
            return Ok(());
        }
        let body = line.trim_ascii();
        if body.is_empty() {
            // The stream's last bytes: blanks without a newline.
            return Ok(());
        }
        let response = match proto::parse_request(body) {
            Err(refusal) => refusal,
            Ok(req) => match &peer {
                Some(p) if req.is_control() && !ctx.policy.allows(p) => {
                    // At most one line per 10 s: a reader cannot flood the journal.
                    if let Some(suppressed) = REFUSALS.allow() {
                        warn!(peer = %p, request = req.name(), suppressed, "control request refused");
                    }
                    Response::err(
                        ErrorCode::Forbidden,
                        format!(
                            "{} changes the daemon's state: allowed to {}; you are {p}",
                            req.name(),
                            ctx.policy.who()
                        ),
                    )
                }
                None if req.is_control() => Response::err(
                    ErrorCode::Forbidden,
                    "the peer's credentials are unknown; control requests refused",
                ),
                _ => handle(ctx, peer.as_ref(), req).await,
            },
        };
        reply(&mut write, &response).await?;
        if !complete {
            return Ok(());
        }
    }
}

async fn reply(w: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut out = serde_json::to_vec(r).unwrap_or_else(|_| b"{}".to_vec());
    out.push(b'\n');
    match tokio::time::timeout(WRITE_DEADLINE, w.write_all(&out)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client does not read its answer",
        )),
    }
}

fn modem(ctx: &Context, id: &str) -> Result<ModemHandle, Response> {
    ctx.modems.get(id).ok_or_else(|| {
        let all = ctx.modems.list();
        let known: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
        Response::err(
            ErrorCode::NotFound,
            format!("no modem {id:?}; configured: {}", known.join(", ")),
        )
    })
}

fn failed(e: impl std::fmt::Display) -> Response {
    Response::err(ErrorCode::Failed, e.to_string())
}

/// Answers one (authorised) request.
pub async fn handle(ctx: &Context, peer: Option<&Peer>, req: Request) -> Response {
    let who = peer.map(|p| p.to_string()).unwrap_or_default();
    match req {
        Request::Summary => summary(ctx).await,
        Request::Modems => Response::ok(modem_views(ctx)),
        Request::Queue => queue(ctx).await.unwrap_or_else(|r| r),
        Request::Message { id, recipient } => {
            message(ctx, id, recipient).await.unwrap_or_else(|r| r)
        }
        Request::Pause { modem: Some(m) } => match modem(ctx, &m) {
            Err(r) => r,
            Ok(_) => {
                ctx.steer.pause(Some(&m));
                info!(peer = %who, modem = %m, "modem paused by an operator");
                Response::ok(Done {
                    message: format!("modem {m} paused (a send in flight finishes)"),
                    mrs: Vec::new(),
                })
            }
        },
        Request::Resume { modem: Some(m) } => match modem(ctx, &m) {
            Err(r) => r,
            Ok(_) => {
                ctx.steer.resume(Some(&m));
                info!(peer = %who, modem = %m, "modem resumed by an operator");
                let note = if ctx.steer.all_paused() {
                    " (all sending is still paused: `smsgw resume` to lift it)"
                } else {
                    ""
                };
                Response::ok(Done {
                    message: format!("modem {m} resumed{note}"),
                    mrs: Vec::new(),
                })
            }
        },
        Request::Pause { .. } => {
            ctx.steer.pause(None);
            info!(peer = %who, "all sending paused by an operator");
            Response::ok(Done {
                message: "all sending paused (sends in flight finish)".into(),
                mrs: Vec::new(),
            })
        }
        Request::Resume { .. } => {
            ctx.steer.resume(None);
            info!(peer = %who, "all sending resumed by an operator");
            Response::ok(Done {
                message: "sending resumed on every modem".into(),
                mrs: Vec::new(),
            })
        }
        Request::Retry { id } => operate(ctx, id, OperatorAction::Retry, &who).await,
        Request::Cancel { id } => operate(ctx, id, OperatorAction::Cancel, &who).await,
        Request::Release { id, action } => {
            let a = match action {
                ReleaseAction::Resend => OperatorAction::ReleaseResend,
                ReleaseAction::Fail => OperatorAction::ReleaseFail,
            };
            operate(ctx, id, a, &who).await
        }
        Request::TestSend { modem: m, to, text } => test_send(ctx, &m, &to, &text, &who)
            .await
            .unwrap_or_else(|r| r),
        Request::Reset { modem: m } => match modem(ctx, &m) {
            Err(r) => r,
            Ok(h) => {
                h.reset().await;
                info!(peer = %who, modem = %m, "modem reset by an operator");
                Response::ok(Done {
                    message: format!("modem {m} is resetting (watch `smsgw modems`)"),
                    mrs: Vec::new(),
                })
            }
        },
    }
}

async fn summary(ctx: &Context) -> Response {
    let (ok, error) = match tokio::time::timeout(Duration::from_secs(3), ctx.store.ping()).await {
        Ok(Ok(())) => (true, None),
        Ok(Err(e)) => (false, Some(e.to_string())),
        Err(_) => (false, Some("no answer within 3 s".into())),
    };
    // Counted only with a healthy database: the summary must answer quickly
    // exactly when the database does not.
    let counts = if ok {
        with_deadline(ctx, ctx.store.counts()).await.ok()
    } else {
        None
    };
    let (waiting, ambiguous) = match counts {
        Some(c) => {
            let (w, a) = c
                .iter()
                .fold((0, 0), |(w, a), (state, _, n)| match state.as_str() {
                    "queued" | "retrying" => (w + n, a),
                    "ambiguous" => (w, a + n),
                    _ => (w, a),
                });
            (Some(w), Some(a))
        }
        None => (None, None),
    };
    let durability = if ok {
        with_deadline(ctx, ctx.store.durability()).await.ok()
    } else {
        None
    };
    let modems = ctx.modems.list();
    let ready = modems
        .iter()
        .filter(|m| m.status().state == ModemState::Ready)
        .count();
    Response::ok(Summary {
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        started_at: ctx.started_at,
        uptime_secs: ctx.started.elapsed().as_secs(),
        config_file: ctx.config_file.clone(),
        owner: ctx.owner.clone(),
        database: proto::DatabaseHealth {
            backend: ctx.store.backend().into(),
            url: ctx.database_url.clone(),
            ok,
            error,
            durable: durability.as_ref().map(|d| d.durable()),
            durability_risks: durability.map(|d| d.risks).unwrap_or_default(),
        },
        modems_total: modems.len(),
        modems_ready: ready,
        sending_paused: ctx.steer.all_paused(),
        waiting,
        ambiguous,
        unrecorded: ctx.steer.unrecorded(),
        dispatcher_silent_secs: Some(ctx.steer.since_beat().as_secs_f64()),
        recorder_busy_secs: Some(ctx.steer.since_inbound_beat().as_secs_f64()),
    })
}

/// Every modem, as the status view shows it.
pub fn modem_views(ctx: &Context) -> Vec<ModemView> {
    let now = Utc::now();
    ctx.modems
        .list()
        .iter()
        .map(|h| {
            let s = h.status();
            let u = ctx.steer.usage(&h.id);
            let dbm = s.signal.as_ref().and_then(|x| x.dbm());
            ModemView {
                id: s.id.clone(),
                device: s.device.clone(),
                state: serde_json::to_value(s.state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                reason: s.reason.clone(),
                since: s.since,
                in_state_secs: (now - s.since).num_seconds().max(0) as u64,
                paused: ctx.steer.is_paused(&h.id),
                manufacturer: s.info.manufacturer.clone(),
                model: s.info.model.clone(),
                imei: s.info.imei.clone(),
                operator: s.operator.clone(),
                registration: s.registration.map(|r| format!("{r:?}").to_lowercase()),
                signal_dbm: dbm,
                signal_bars: proto::bars(dbm),
                sent_today: u.sent_today,
                failed_today: u.failed_today,
                quota_per_day: u.per_day,
                busy: u.busy,
                storage: s.storage,
                reports: s.reports.as_ref().map(|r| r.describe()),
                desyncs: s.desyncs,
                last_error: s.last_error.clone(),
            }
        })
        .collect()
}

/// A database call with an answer within [`DB_DEADLINE`], or a refusal saying
/// so; refused at once while the database is known to be slow.
async fn with_deadline<T>(
    ctx: &Context,
    f: impl std::future::Future<Output = crate::store::Result<T>>,
) -> Result<T, Response> {
    if ctx.slow.recently() {
        return Err(failed(
            "database: did not answer in time a moment ago; try again shortly",
        ));
    }
    match tokio::time::timeout(DB_DEADLINE, f).await {
        Ok(r) => r.map_err(|e| failed(format!("database: {e}"))),
        Err(_) => {
            ctx.slow.noticed();
            Err(failed(format!(
                "database: no answer within {} s",
                DB_DEADLINE.as_secs()
            )))
        }
    }
}

async fn queue(ctx: &Context) -> Result<Response, Response> {
    let counts = with_deadline(ctx, ctx.store.counts()).await?;
    let activity = with_deadline(ctx, ctx.store.activity(Utc::now())).await?;
    Ok(Response::ok(QueueView {
        counts: counts
            .into_iter()
            .map(|(state, category, count)| QueueCount {
                state,
                category,
                count,
            })
            .collect(),
        oldest_due_id: activity.oldest_due.map(|(id, _)| id),
        oldest_due_at: activity.oldest_due.map(|(_, at)| at),
        sent_last_hour: activity.sent_last_hour,
        delivered_last_hour: activity.delivered_last_hour,
    }))
}

async fn view(ctx: &Context, row: OutboxRow) -> Result<MessageView, Response> {
    let parts = with_deadline(ctx, ctx.store.parts(row.id)).await?;
    Ok(MessageView { row, parts })
}

async fn message(
    ctx: &Context,
    id: Option<i64>,
    recipient: Option<String>,
) -> Result<Response, Response> {
    let rows = match (id, recipient) {
        (Some(id), _) => with_deadline(ctx, ctx.store.get(id))
            .await?
            .into_iter()
            .collect(),
        (None, Some(r)) => with_deadline(ctx, ctx.store.find_recipient(&r)).await?,
        (None, None) => {
            return Err(Response::err(
                ErrorCode::BadRequest,
                "message: give \"id\" or \"recipient\"",
            ))
        }
    };
    if rows.is_empty() {
        return Err(Response::err(ErrorCode::NotFound, "no such message"));
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(view(ctx, r).await?);
    }
    Ok(Response::ok(out))
}

async fn operate(ctx: &Context, id: i64, a: OperatorAction, who: &str) -> Response {
    match ctx.store.operate(id, a, Utc::now()).await {
        Err(e) => failed(e),
        Ok(true) => {
            info!(peer = %who, id, action = ?a, to = a.to().as_str(), "message changed by an operator");
            ctx.steer.wake();
            Response::ok(Done {
                message: format!("message {id} is now {}", a.to().as_str()),
                mrs: Vec::new(),
            })
        }
        Ok(false) => match ctx.store.get(id).await {
            Err(e) => failed(e),
            Ok(None) => Response::err(ErrorCode::NotFound, format!("no message {id}")),
            Ok(Some(row)) => {
                let from: Vec<&str> = a.from().iter().map(|s| s.as_str()).collect();
                let mut from = from;
                from.dedup();
                Response::err(
                    ErrorCode::Conflict,
                    format!(
                        "message {id} is {}; this applies only to {} messages",
                        row.state,
                        from.join(", ")
                    ),
                )
            }
        },
    }
}

async fn test_send(
    ctx: &Context,
    id: &str,
    to: &str,
    text: &str,
    who: &str,
) -> Result<Response, Response> {
    let h = modem(ctx, id)?;
    let status = h.status();
    if status.state != ModemState::Ready {
        return Err(Response::err(
            ErrorCode::Conflict,
            format!(
                "modem {id} is {:?}{}",
                status.state,
                status.reason.map(|r| format!(": {r}")).unwrap_or_default()
            ),
        ));
    }
    let to = crate::store::contract::normalise_recipient(to);
    let opts = SubmitOptions {
        request_report: false,
        ..SubmitOptions::default()
    };
    let parts = pdu::encode_submit(&to, text, &opts)
        .map_err(|e| Response::err(ErrorCode::BadRequest, e.to_string()))?;
    let report = h.send(parts).await;
    let mrs: Vec<u8> = report.sent.iter().filter_map(|p| p.mr).collect();
    match report.failure {
        None => {
            info!(peer = %who, modem = %id, ?mrs, "test message sent");
            Ok(Response::ok(Done {
                message: format!("sent through {id} ({} part(s))", report.sent.len()),
                mrs,
            }))
        }
        Some(f) => {
            info!(peer = %who, modem = %id, reason = %f.reason, "test message failed");
            Err(Response::err(
                ErrorCode::Failed,
                format!(
                    "{id}: {} ({} part(s) accepted before the failure)",
                    f.reason,
                    report.sent.len()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod deadline_tests {
    use super::*;

    /// Empty lines and a trickle of bytes do not keep a connection: the request
    /// deadline runs from the last answer. (Paused time: no real waiting.)
    #[tokio::test(start_paused = true)]
    async fn newlines_and_trickles_do_not_extend_the_request_deadline() {
        for trickle in [&b"\n"[..], &b"{"[..]] {
            let (client, server) = tokio::io::duplex(64);
            let mut reader = BufReader::new(server);
            let started = tokio::time::Instant::now();
            let feeder = tokio::spawn(async move {
                let mut client = client;
                for _ in 0..100 {
                    if client.write_all(trickle).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
            let mut line = Vec::new();
            let got = next_request(&mut reader, &mut line, started + REQUEST_DEADLINE)
                .await
                .unwrap();
            assert_eq!(got, None, "{trickle:?}");
            assert_eq!(started.elapsed(), REQUEST_DEADLINE, "{trickle:?}");
            feeder.abort();
        }
        // A request between blank lines is read.
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(b"\n\n{\"v\":1}\n").await.unwrap();
        let mut reader = BufReader::new(server);
        let mut line = Vec::new();
        let deadline = tokio::time::Instant::now() + REQUEST_DEADLINE;
        assert_eq!(
            next_request(&mut reader, &mut line, deadline)
                .await
                .unwrap(),
            Some(())
        );
        assert_eq!(line, b"{\"v\":1}\n");
    }
}
