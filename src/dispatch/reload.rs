//! What a SIGHUP changes in a running dispatcher: limits, quiet hours, opt-out
//! and sending policy (the decision core's rules, rebuilt from the new
//! configuration), and the modem list (new modems join with today's count from
//! the database; removed ones take no more work and close once their send in
//! flight is recorded). The database needs a restart.

use super::core::{ModemSpec, Rules};
use super::dispatcher::Dispatcher;
use super::policy::WindowLimits;
use crate::config::Config;
use crate::modem::ModemHandle;
use std::collections::HashMap;
use tracing::{info, warn};

/// A reloaded configuration (SIGHUP) with the modems the daemon started or
/// removed because of it.
pub struct Reload {
    pub cfg: Config,
    pub added: Vec<(crate::config::Modem, ModemHandle)>,
    pub removed: Vec<String>,
}

impl Dispatcher {
    pub async fn reload(&mut self, r: Reload) {
        let new = r.cfg;
        let Some(rules) = Rules::from_config(&new) else {
            warn!("reload: invalid [quiet_hours]; keeping the old configuration");
            return;
        };
        if new.database.url != self.cfg.database.url {
            warn!("reload: [database] url changed; that needs a restart");
        }
        let now = self.clock.db();
        if !r.added.is_empty() {
            let day_start = rules.quiet.day_start(now);
            let sent: HashMap<String, i64> = match self.store.parts_sent_since(day_start).await {
                Ok(v) => v.into_iter().collect(),
                Err(e) => {
                    warn!(error = %e, "reload: daily counts unavailable; new modems start at 0");
                    HashMap::new()
                }
            };
            for (m, handle) in r.added {
                self.core.add(
                    ModemSpec {
                        id: m.id.clone(),
                        group: m.group.clone(),
                        limits: WindowLimits::modem(&m.limits.unwrap_or(new.limits)),
                        sent_today: sent.get(&m.id).copied().unwrap_or(0).max(0) as u32,
                    },
                    now,
                );
                self.handles.insert(m.id.clone(), handle);
                self.publish_usage(&m.id);
            }
        }
        let modems: Vec<_> = new
            .modems
            .iter()
            .map(|m| {
                (
                    m.id.clone(),
                    m.group.clone(),
                    WindowLimits::modem(&m.limits.unwrap_or(new.limits)),
                )
            })
            .collect();
        for id in self.core.reload(rules, &modems, &r.removed) {
            self.retire(&id).await;
        }
        // `smsgw modems` shows the new quotas at once, not after the next send.
        let ids: Vec<String> = self.core.slots.keys().cloned().collect();
        for id in &ids {
            self.publish_usage(id);
        }
        self.cfg.limits = new.limits;
        self.cfg.recipient_limits = new.recipient_limits;
        self.cfg.quiet_hours = new.quiet_hours;
        self.cfg.opt_out = new.opt_out;
        self.cfg.inbox = new.inbox;
        self.cfg.sending = new.sending;
        self.cfg.modems = new.modems;
        info!(
            modems = self.core.slots.len(),
            "configuration reloaded (limits, quiet hours, opt-out, sending, modems)"
        );
    }
}
