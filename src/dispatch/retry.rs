//! "Write this to the store, and keep trying while the database is away": the
//! one helper every write of a fact (an acknowledged part, an outcome) goes
//! through. A transient error (connection lost, server restarting, lock) is
//! retried with capped backoff, beating the heartbeat so the watchdog knows
//! the dispatcher is alive and waiting; any other error is returned at once
//! (retrying a constraint violation cannot help).

use super::steer::Steering;
use crate::store::{Result, StoreError};
use std::future::Future;
use std::time::Duration;
use tracing::warn;

/// Runs `op` until it succeeds or fails with an error that is not transient.
pub async fn until_written<T, F, Fut>(what: &str, steer: &Steering, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut wait = Duration::from_millis(200);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_transient() => {
                warn!(error = %e, "{what}: database unavailable; retrying");
                steer.beat();
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether an error is worth trying again later (the database may come back).
pub fn transient(e: &StoreError) -> bool {
    e.is_transient()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn transient_errors_are_retried_and_others_returned_at_once() {
        let steer = Steering::default();
        let calls = AtomicU32::new(0);
        let r: Result<u32> = until_written("test", &steer, || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n < 2 {
                Err(StoreError::Database(sqlx::Error::PoolTimedOut))
            } else {
                Ok(n)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
        let calls = AtomicU32::new(0);
        let r: Result<u32> = until_written("test", &steer, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Time("bad value".into()))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "not transient: no retry");
    }
}
