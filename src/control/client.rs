//! The CLI's side of the status socket: one connection, requests in order, typed
//! answers, and errors a technician can act on.

use super::proto::{Envelope, ErrorBody, Request, Response, VERSION};
use serde::de::DeserializeOwned;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {}: {}", path.display(), connect_hint(source))]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon closed the connection")]
    Closed,
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
    /// The daemon understood and refused (or failed); the code is for scripts.
    #[error("{}", .0.message)]
    Refused(ErrorBody),
}

fn connect_hint(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            format!("{e}: is smsgw running? (systemctl status smsgw)")
        }
        ErrorKind::PermissionDenied => format!(
            "{e}: its directory is closed to you; run as root (sudo), and see [status] read_group / operator_group in docs/operations.md"
        ),
        _ => e.to_string(),
    }
}

pub struct Client {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
    line: String,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let s = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (r, w) = s.into_split();
        Ok(Client {
            reader: BufReader::new(r),
            writer: w,
            line: String::new(),
        })
    }

    /// Sends a request; returns the response's data, or the daemon's refusal.
    pub async fn raw(&mut self, request: Request) -> Result<serde_json::Value, ClientError> {
        let mut out = serde_json::to_vec(&Envelope {
            v: VERSION,
            request,
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        out.push(b'\n');
        // A daemon that refuses this peer answers at connect and hangs up: the
        // write may then fail, but its answer is still there to read.
        let wrote = self.writer.write_all(&out).await;
        self.line.clear();
        match (self.reader.read_line(&mut self.line).await, wrote) {
            (Ok(n), _) if n > 0 => {}
            (_, Err(e)) => return Err(e.into()),
            (Ok(_), Ok(())) => return Err(ClientError::Closed),
            (Err(e), Ok(())) => return Err(e.into()),
        }
        let r: Response = serde_json::from_str(&self.line)
            .map_err(|e| ClientError::Protocol(format!("{e}: {}", self.line.trim())))?;
        match (r.ok, r.error) {
            (true, _) => Ok(r.data.unwrap_or(serde_json::Value::Null)),
            (false, Some(e)) => Err(ClientError::Refused(e)),
            (false, None) => Err(ClientError::Protocol("a refusal without a reason".into())),
        }
    }

    /// Sends a request and reads its data as `T`.
    pub async fn call<T: DeserializeOwned>(&mut self, request: Request) -> Result<T, ClientError> {
        let v = self.raw(request).await?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
