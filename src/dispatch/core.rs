//! The dispatcher's decisions as one pure state machine, in the shape of
//! quinn-proto and of smsgw's own AT engine: no I/O, no clock reads, no tokio.
//!
//! The shell ([`super::dispatcher`]) claims rows and asks [`Core::prepare`] what
//! a row needs: an answer at once (reject, expire, hold for quiet hours), or
//! facts from the store (has the recipient opted out? how many messages today?).
//! With those facts [`Core::decide`] makes the whole decision in one step (a
//! modem for the message with its rate accounting, a release until the earliest
//! time a window opens, a suppression) so that nothing is decided between two
//! awaits. [`Core::finished`] takes a send's outcome back: accounting returned for
//! parts that never went, the row's completion.

use super::policy::{self, Candidate, QuietHours, RateWindow, WindowLimits};
use crate::at::classify::{FailureClass, SendFailure};
use crate::config::{Config, Sending};
use crate::pdu::{self, ConcatRef, EncodedPart, SubmitOptions};
use crate::store::contract::{self, Verdict};
use crate::store::{Claimed, Completion};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;

/// The rules, built from the configuration once (at load and at SIGHUP).
#[derive(Debug, Clone)]
pub struct Rules {
    pub quiet: QuietHours,
    /// All modems together.
    pub global: WindowLimits,
    pub max_parts: usize,
    pub validity_minutes: u32,
    /// Per recipient per local day, all categories (0: no limit).
    pub per_recipient_per_day: u32,
    /// Per recipient per local day, per category.
    pub recipient_limits: BTreeMap<String, u32>,
    /// Categories sent to recipients who opted out.
    pub opt_out_exempt: Vec<String>,
    /// Attempts, backoff and the ambiguity policy.
    pub sending: Sending,
}

impl Rules {
    pub fn from_config(cfg: &Config) -> Option<Rules> {
        Some(Rules {
            quiet: QuietHours::from_config(&cfg.quiet_hours)?,
            global: WindowLimits::global(&cfg.limits),
            max_parts: cfg.sending.max_parts,
            validity_minutes: cfg.sending.validity_minutes,
            per_recipient_per_day: cfg.limits.per_recipient_per_day,
            recipient_limits: cfg.recipient_limits.clone(),
            opt_out_exempt: cfg.opt_out.exempt_categories.clone(),
            sending: cfg.sending.clone(),
        })
    }
}

/// One modem as the core tracks it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub group: Option<String>,
    pub limits: WindowLimits,
    pub window: RateWindow,
    pub busy: bool,
    /// Failed sends since `failed_day` (local midnight), for the status view.
    pub failed_today: u32,
    pub failed_day: DateTime<Utc>,
    /// Removed from the configuration: takes no work, closes after its send in flight.
    pub retiring: bool,
}

/// A modem the core is told about: id, group, limits, parts sent today.
#[derive(Debug, Clone)]
pub struct ModemSpec {
    pub id: String,
    pub group: Option<String>,
    pub limits: WindowLimits,
    pub sent_today: u32,
}

/// What a claimed row needs before it can be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// Decided without facts (rejected, expired, held for quiet hours).
    Decided(Decision),
    /// Facts to fetch, then [`Core::decide`].
    Needs(Needs),
}

/// The facts a row's decision depends on, as questions for the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The normalised recipient.
    pub recipient: String,
    pub body: String,
    /// Ask whether the recipient opted out (the category is not exempt).
    pub opt_out: bool,
    /// Messages to the recipient since `since` to count: all categories (`None`)
    /// or one; each with the limit it is checked against.
    pub counts: Vec<(Option<String>, u32)>,
    pub since: DateTime<Utc>,
}

/// The store's answers to [`Needs`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub opted_out: bool,
    /// One count per [`Needs::counts`] entry, in order.
    pub sent: Vec<i64>,
}

/// What happens to a claimed row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Reject(String),
    Expire,
    /// Not sent by policy (opt-out).
    Suppress(String),
    /// Back to the queue unharmed until `due` (quiet hours, limits, no modem).
    Release {
        due: DateTime<Utc>,
        why: Hold,
    },
    /// Hand it to a modem; its parts are already counted in the rate windows.
    Send(Plan),
}

/// Why a row goes back to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    QuietHours,
    RecipientLimit,
    GlobalLimit,
    ModemLimit,
    NoModem,
}

/// A send to hand to a modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub modem: String,
    /// The parts still to send (those the network acknowledged are left out).
    pub parts: Vec<EncodedPart>,
    /// Parts of the whole message.
    pub total: i32,
    pub recipient: String,
    pub body: String,
    /// When the parts were counted in the rate windows.
    pub counted_at: DateTime<Utc>,
}

/// How a send ended, for [`Core::finished`].
#[derive(Debug, Clone)]
pub struct Finished<'a> {
    pub modem: &'a str,
    /// Parts the plan carried.
    pub planned: usize,
    /// Parts the network acknowledged.
    pub sent: usize,
    pub failure: Option<&'a SendFailure>,
    pub counted_at: DateTime<Utc>,
}

/// The decision core.
#[derive(Debug, Clone)]
pub struct Core {
    pub rules: Rules,
    pub slots: BTreeMap<String, Slot>,
    global: RateWindow,
    /// Concatenation reference for the next multipart message (wraps; references
    /// only need to differ between messages a handset receives close together).
    concat_ref: u8,
    /// Jitter for backoff (deterministic per seed).
    seed: u64,
}

/// How long a message blocked by busy or unready modems waits before the next look.
const RETRY_SOON: i64 = 2;

impl Core {
    /// `now` is when the daily counts `sent_today` were read.
    pub fn new(rules: Rules, modems: Vec<ModemSpec>, seed: u64, now: DateTime<Utc>) -> Core {
        let day_start = rules.quiet.day_start(now);
        let total: u32 = modems.iter().map(|m| m.sent_today).sum();
        let mut c = Core {
            global: RateWindow::seeded(total, day_start),
            rules,
            slots: BTreeMap::new(),
            concat_ref: (seed % 256) as u8,
            seed,
        };
        for m in modems {
            c.add(m, now);
        }
        c
    }

    /// A modem joins (start, or added by SIGHUP with its count of today).
    pub fn add(&mut self, m: ModemSpec, now: DateTime<Utc>) {
        let day_start = self.rules.quiet.day_start(now);
        self.slots.insert(
            m.id,
            Slot {
                group: m.group,
                limits: m.limits,
                window: RateWindow::seeded(m.sent_today, day_start),
                busy: false,
                failed_today: 0,
                failed_day: day_start,
                retiring: false,
            },
        );
    }

    /// Modems that could take a message now.
    pub fn free(&self, usable: &dyn Fn(&str) -> bool) -> usize {
        self.slots
            .iter()
            .filter(|(id, s)| !s.busy && !s.retiring && usable(id))
            .count()
    }

    /// The contract check, expiry and quiet hours; else the facts to fetch.
    pub fn prepare(&self, c: &Claimed, now: DateTime<Utc>) -> Prepared {
        let (recipient, body) = match contract::check(c, self.rules.max_parts, now) {
            Verdict::Send { recipient, body } => (recipient, body),
            Verdict::Reject(e) => return Prepared::Decided(Decision::Reject(e)),
            Verdict::Expire => return Prepared::Decided(Decision::Expire),
        };
        // A group no configured modem has can never be sent (it would come back
        // every few seconds for ever): rejected, with the groups there are.
        if let Some(g) = &c.modem_group {
            if !self.slots.values().any(|s| s.group.as_deref() == Some(g)) {
                let mut groups: Vec<&str> = self
                    .slots
                    .values()
                    .filter_map(|s| s.group.as_deref())
                    .collect();
                groups.sort_unstable();
                groups.dedup();
                return Prepared::Decided(Decision::Reject(format!(
                    "modem_group {}: no configured modem is in this group (groups: {})",
                    contract::clip(g, 40),
                    if groups.is_empty() {
                        "none".to_string()
                    } else {
                        groups.join(", ")
                    }
                )));
            }
        }
        if let Some(due) = self.rules.quiet.held_until(&c.category, now) {
            return Prepared::Decided(Decision::Release {
                due,
                why: Hold::QuietHours,
            });
        }
        let per_category = self
            .rules
            .recipient_limits
            .get(&c.category)
            .copied()
            .unwrap_or(0);
        let counts = [
            (None, self.rules.per_recipient_per_day),
            (Some(c.category.clone()), per_category),
        ]
        .into_iter()
        .filter(|(_, max)| *max > 0)
        .collect();
        Prepared::Needs(Needs {
            recipient,
            body,
            opt_out: !self.rules.opt_out_exempt.contains(&c.category),
            counts,
            since: self.rules.quiet.day_start(now),
        })
    }

    /// The decision for a row with its facts, taken in one step: suppression,
    /// per-recipient limits, encoding, the global and per-modem windows and the
    /// route. A `Send` is already counted in the windows and its modem is busy.
    pub fn decide(
        &mut self,
        c: &Claimed,
        needs: Needs,
        facts: &Facts,
        usable: &dyn Fn(&str) -> bool,
        now: DateTime<Utc>,
    ) -> Decision {
        if needs.opt_out && facts.opted_out {
            return Decision::Suppress("recipient opted out".into());
        }
        for ((_, max), sent) in needs.counts.iter().zip(&facts.sent) {
            if *sent >= i64::from(*max) {
                return Decision::Release {
                    due: self.rules.quiet.next_day(now),
                    why: Hold::RecipientLimit,
                };
            }
        }
        self.concat_ref = self.concat_ref.wrapping_add(1);
        let opts = SubmitOptions {
            smsc: None,
            request_report: c.request_report,
            validity_minutes: (self.rules.validity_minutes > 0)
                .then_some(self.rules.validity_minutes),
            flash: c.flash,
            concat_ref: ConcatRef::Ref8(self.concat_ref),
            max_parts: self.rules.max_parts,
            encoding: pdu::Encoding::Auto,
        };
        // Encoded once; parts the network already acknowledged are never sent again.
        let parts = match pdu::encode_submit(&needs.recipient, &needs.body, &opts) {
            Ok(p) => p,
            Err(e) => return Decision::Reject(e.to_string()),
        };
        let total = parts.len() as i32;
        let parts: Vec<EncodedPart> = parts
            .into_iter()
            .filter(|p| !c.parts_done.contains(&i32::from(p.seq)))
            .collect();
        let remaining = parts.len() as u32;
        let day_start = self.rules.quiet.day_start(now);
        let next_day = self.rules.quiet.next_day(now);
        if let Err(at) = self
            .global
            .check(&self.rules.global, remaining, now, day_start, next_day)
        {
            return Decision::Release {
                due: at,
                why: Hold::GlobalLimit,
            };
        }
        let mut candidates = Vec::new();
        // When the earliest rate window opens, among the modems the row may use
        // that only their windows block; None: some modem is merely busy or not ready.
        let mut window_opens: Option<DateTime<Utc>> = None;
        let mut only_windows_block = true;
        for (id, slot) in self.slots.iter_mut() {
            let eligible = c
                .modem_group
                .as_deref()
                .is_none_or(|g| slot.group.as_deref() == Some(g));
            let ready = !slot.retiring && usable(id);
            let allowed = match slot
                .window
                .check(&slot.limits, remaining, now, day_start, next_day)
            {
                Ok(()) => true,
                Err(at) => {
                    if eligible && ready && !slot.busy {
                        window_opens = Some(window_opens.map_or(at, |w| w.min(at)));
                    }
                    false
                }
            };
            if eligible && (!ready || slot.busy) {
                only_windows_block = false;
            }
            candidates.push(Candidate {
                id: id.clone(),
                ready,
                busy: slot.busy,
                group: slot.group.clone(),
                load: slot.window.today(),
                allowed,
            });
        }
        let Some(modem) =
            policy::route(&candidates, c.modem_group.as_deref()).map(|m| m.id.clone())
        else {
            return match window_opens {
                Some(at) if only_windows_block => Decision::Release {
                    due: at.max(now),
                    why: Hold::ModemLimit,
                },
                _ => Decision::Release {
                    due: now + Duration::seconds(RETRY_SOON),
                    why: Hold::NoModem,
                },
            };
        };
        // Counted now, so that the next decision (another modem, this same claim)
        // sees these parts; what does not go out is given back in `finished`.
        let slot = self.slots.get_mut(&modem).expect("routed to a known modem");
        slot.window.record(remaining, now, day_start);
        slot.busy = true;
        self.global.record(remaining, now, day_start);
        Decision::Send(Plan {
            modem,
            parts,
            total,
            recipient: needs.recipient,
            body: needs.body,
            counted_at: now,
        })
    }

    /// A decided send that never went to its modem (the row was taken from us
    /// at hand-over): its accounting is given back.
    pub fn abandon(&mut self, plan: &Plan) {
        let n = plan.parts.len() as u32;
        if let Some(slot) = self.slots.get_mut(&plan.modem) {
            slot.busy = false;
            slot.window.release(n, plan.counted_at);
        }
        self.global.release(n, plan.counted_at);
    }

    /// A send ended: the modem is free again, parts that did not go out are given
    /// back to the windows (a part in doubt stays counted), and the row's
    /// completion.
    pub fn finished(
        &mut self,
        c: &Claimed,
        f: &Finished<'_>,
        total: i32,
        now: DateTime<Utc>,
    ) -> Completion {
        let day_start = self.rules.quiet.day_start(now);
        let in_doubt = f
            .failure
            .is_some_and(|x| x.class == FailureClass::Ambiguous);
        let unsent = f.planned.saturating_sub(f.sent + usize::from(in_doubt)) as u32;
        if let Some(slot) = self.slots.get_mut(f.modem) {
            slot.busy = false;
            slot.window.release(unsent, f.counted_at);
            if slot.failed_day != day_start {
                slot.failed_day = day_start;
                slot.failed_today = 0;
            }
            if f.failure.is_some() {
                slot.failed_today += 1;
            }
        }
        self.global.release(unsent, f.counted_at);
        match f.failure {
            None => Completion::Sent {
                modem: f.modem.to_string(),
                parts_total: total,
                report_requested: c.request_report,
            },
            Some(x) => {
                self.seed = self.seed.wrapping_add(c.id as u64);
                policy::failure_completion(x, c.attempts, &self.rules.sending, now, self.seed)
            }
        }
    }

    /// Applies reloaded rules and modem settings; returns the removed modems that
    /// can close now (nothing in flight).
    pub fn reload(
        &mut self,
        rules: Rules,
        modems: &[(String, Option<String>, WindowLimits)],
        removed: &[String],
    ) -> Vec<String> {
        self.rules = rules;
        for (id, group, limits) in modems {
            if let Some(s) = self.slots.get_mut(id) {
                s.group = group.clone();
                s.limits = *limits;
            }
        }
        let mut now_free = Vec::new();
        for id in removed {
            if let Some(s) = self.slots.get_mut(id) {
                s.retiring = true;
                if !s.busy {
                    now_free.push(id.clone());
                }
            }
        }
        for id in &now_free {
            self.slots.remove(id);
        }
        now_free
    }

    /// A retiring modem whose last send is done leaves.
    pub fn retire_if_done(&mut self, id: &str) -> bool {
        if self.slots.get(id).is_some_and(|s| s.retiring && !s.busy) {
            self.slots.remove(id);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    //! Table-driven decisions, in virtual time: no database, no modem, no tokio.
    use super::*;
    use crate::config::Limits;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rules() -> Rules {
        Rules::from_config(&Config::default()).unwrap()
    }

    fn modem(id: &str, per_minute: u32, group: Option<&str>) -> ModemSpec {
        ModemSpec {
            id: id.into(),
            group: group.map(Into::into),
            limits: WindowLimits {
                per_minute,
                ..Default::default()
            },
            sent_today: 0,
        }
    }

    fn row(id: i64, category: &str, body: &str) -> Claimed {
        Claimed {
            id,
            recipient: Some("+8613800138000".into()),
            body: Some(body.into()),
            category: category.into(),
            priority: 0,
            send_at: None,
            expires_at: None,
            modem_group: None,
            request_report: true,
            flash: false,
            attempts: 0,
            due_at: at("2026-09-24T02:00:00Z"),
            lease_until: at("2026-09-24T02:10:00Z"),
            parts_done: vec![],
            unreadable: None,
        }
    }

    fn all(_: &str) -> bool {
        true
    }

    /// prepare + decide with no opt-out and no counts so far.
    fn run(core: &mut Core, c: &Claimed, now: DateTime<Utc>) -> Decision {
        match core.prepare(c, now) {
            Prepared::Decided(d) => d,
            Prepared::Needs(n) => {
                let facts = Facts {
                    opted_out: false,
                    sent: vec![0; n.counts.len()],
                };
                core.decide(c, n, &facts, &all, now)
            }
        }
    }

    #[test]
    fn the_earliest_window_decides_when_a_blocked_message_looks_again() {
        let now = at("2026-09-24T02:00:00Z");
        // Three modems whose minute windows were filled at different times: the
        // message must come back when the FIRST of them opens, whatever order
        // the modems are looked at in.
        for order in [["a", "b", "c"], ["c", "b", "a"], ["b", "c", "a"]] {
            let mut core = Core::new(
                rules(),
                order.iter().map(|id| modem(id, 1, None)).collect(),
                1,
                now,
            );
            let ds = core.rules.quiet.day_start(now);
            for (id, ago) in [("a", 10), ("b", 40), ("c", 25)] {
                core.slots
                    .get_mut(id)
                    .unwrap()
                    .window
                    .record(1, now - Duration::seconds(ago), ds);
            }
            match run(&mut core, &row(1, "notice", "hi"), now) {
                Decision::Release { due, why } => {
                    assert_eq!(why, Hold::ModemLimit);
                    assert_eq!(
                        due,
                        now + Duration::seconds(20),
                        "b opens first ({order:?})"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_busy_modem_means_look_again_soon_not_at_the_window() {
        let now = at("2026-09-24T02:00:00Z");
        let mut core = Core::new(
            rules(),
            vec![modem("a", 1, None), modem("b", 0, None)],
            1,
            now,
        );
        let ds = core.rules.quiet.day_start(now);
        core.slots.get_mut("a").unwrap().window.record(1, now, ds);
        core.slots.get_mut("b").unwrap().busy = true;
        assert_eq!(
            run(&mut core, &row(1, "notice", "hi"), now),
            Decision::Release {
                due: now + Duration::seconds(2),
                why: Hold::NoModem
            }
        );
    }

    #[test]
    fn rate_windows_at_minute_hour_and_day_boundaries_across_modems() {
        let rules = Rules {
            global: WindowLimits {
                per_minute: 3,
                ..Default::default()
            },
            ..rules()
        };
        let now = at("2026-09-24T15:59:30Z"); // 23:59:30 Shanghai
        let mut core = Core::new(
            rules,
            vec![
                ModemSpec {
                    limits: WindowLimits {
                        per_minute: 2,
                        per_hour: 3,
                        per_day: 4,
                    },
                    ..modem("a", 0, None)
                },
                modem("b", 0, None),
            ],
            1,
            now,
        );
        let mut sent = Vec::new();
        for i in 0..4 {
            match run(&mut core, &row(i, "notice", "hi"), now) {
                Decision::Send(p) => {
                    sent.push(p.modem.clone());
                    // Free the modem again at once (the send is over).
                    core.slots.get_mut(&p.modem).unwrap().busy = false;
                }
                Decision::Release { why, due } => {
                    assert_eq!(why, Hold::GlobalLimit, "the global minute: 3 parts");
                    assert_eq!(due, now + Duration::minutes(1));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(sent.len(), 3, "{sent:?}");
        // Least loaded first, ties by id: a, b, a.
        assert_eq!(sent, ["a", "b", "a"]);
        // A minute later (past local midnight) the global window is open again;
        // a's minute window too, but its daily count restarted at midnight.
        let later = now + Duration::seconds(61);
        match run(&mut core, &row(9, "notice", "hi"), later) {
            Decision::Send(p) => assert_eq!(p.modem, "a", "both at 0 today: by id"),
            other => panic!("{other:?}"),
        }
        assert_eq!(core.slots["a"].window.today(), 1, "the day count restarted");
    }

    #[test]
    fn a_message_larger_than_a_window_goes_alone() {
        let now = at("2026-09-24T02:00:00Z");
        let mut core = Core::new(rules(), vec![modem("a", 6, None)], 1, now);
        let long = "长".repeat(67 * 7);
        match run(&mut core, &row(1, "notice", &long), now) {
            Decision::Send(p) => assert_eq!(p.parts.len(), 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn group_routing_and_least_loaded() {
        let now = at("2026-09-24T02:00:00Z");
        let mut core = Core::new(
            rules(),
            vec![
                ModemSpec {
                    sent_today: 9,
                    ..modem("a", 0, Some("hq"))
                },
                modem("b", 0, Some("branch")),
                ModemSpec {
                    sent_today: 2,
                    ..modem("c", 0, Some("hq"))
                },
            ],
            1,
            now,
        );
        let mut r = row(1, "notice", "hi");
        r.modem_group = Some("hq".into());
        match run(&mut core, &r, now) {
            Decision::Send(p) => assert_eq!(p.modem, "c"),
            other => panic!("{other:?}"),
        }
        r.modem_group = Some("nowhere".into());
        match run(&mut core, &r, now) {
            Decision::Reject(why) => assert!(why.contains("groups: branch, hq"), "{why}"),
            other => panic!("a group no modem has would loop: {other:?}"),
        }
        // A group whose modems are all busy waits.
        core.slots.get_mut("a").unwrap().busy = true;
        core.slots.get_mut("c").unwrap().busy = true;
        r.modem_group = Some("hq".into());
        assert!(matches!(
            run(&mut core, &r, now),
            Decision::Release {
                why: Hold::NoModem,
                ..
            }
        ));
    }

    #[test]
    fn opt_out_suppresses_unless_the_category_is_exempt() {
        let now = at("2026-09-24T02:00:00Z");
        let mut core = Core::new(rules(), vec![modem("a", 0, None)], 1, now);
        for (category, suppressed) in [("greeting", true), ("reminder", false), ("notice", false)] {
            let c = row(1, category, "hi");
            let Prepared::Needs(n) = core.prepare(&c, at("2026-09-24T03:00:00Z")) else {
                panic!("{category}: prepared without facts")
            };
            assert_eq!(n.opt_out, suppressed, "{category}");
            let facts = Facts {
                opted_out: true,
                sent: vec![0; n.counts.len()],
            };
            let d = core.decide(&c, n, &facts, &all, now);
            assert_eq!(
                matches!(d, Decision::Suppress(_)),
                suppressed,
                "{category}: {d:?}"
            );
            if let Decision::Send(p) = d {
                core.abandon(&p);
            }
        }
    }

    #[test]
    fn quiet_hour_edges_in_the_zone() {
        let mut core = Core::new(
            rules(),
            vec![modem("a", 0, None)],
            1,
            at("2026-09-24T02:00:00Z"),
        );
        // 20:59:59 Shanghai: open; 21:00 held until 08:00.
        let c = row(1, "greeting", "中秋快乐");
        assert!(matches!(
            core.prepare(&c, at("2026-09-24T12:59:59Z")),
            Prepared::Needs(_)
        ));
        assert_eq!(
            core.prepare(&c, at("2026-09-24T13:00:00Z")),
            Prepared::Decided(Decision::Release {
                due: at("2026-09-25T00:00:00Z"),
                why: Hold::QuietHours
            })
        );
        assert!(matches!(
            run(
                &mut core,
                &row(2, "reminder", "9:00"),
                at("2026-09-24T13:00:00Z")
            ),
            Decision::Send(_)
        ));
    }

    #[test]
    fn per_recipient_limits_hold_until_the_next_local_day() {
        let mut cfg = Config {
            limits: Limits {
                per_recipient_per_day: 2,
                ..Default::default()
            },
            ..Config::default()
        };
        cfg.recipient_limits.insert("marketing".into(), 1);
        let mut core = Core::new(
            Rules::from_config(&cfg).unwrap(),
            vec![modem("a", 0, None)],
            1,
            at("2026-09-24T02:00:00Z"),
        );
        let now = at("2026-09-24T02:00:00Z");
        let c = row(1, "marketing", "sale");
        let Prepared::Needs(n) = core.prepare(&c, now) else {
            panic!()
        };
        assert_eq!(n.counts, [(None, 2), (Some("marketing".to_string()), 1)]);
        let d = core.decide(
            &c,
            n,
            &Facts {
                opted_out: false,
                sent: vec![1, 1],
            },
            &all,
            now,
        );
        assert_eq!(
            d,
            Decision::Release {
                due: at("2026-09-24T16:00:00Z"),
                why: Hold::RecipientLimit
            }
        );
    }

    #[test]
    fn retry_classes_and_backoff_from_the_outcome() {
        let now = at("2026-09-24T02:00:00Z");
        let mut core = Core::new(rules(), vec![modem("a", 0, None)], 1, now);
        let c = row(1, "notice", "hi");
        let fail = |class| SendFailure {
            class,
            reason: "x".into(),
        };
        let cases = [
            (FailureClass::Temporary, "retrying"),
            (FailureClass::Permanent, "failed"),
            (FailureClass::Modem, "retrying"),
            (FailureClass::Ambiguous, "ambiguous"),
        ];
        for (class, state) in cases {
            let Decision::Send(p) = run(&mut core, &c, now) else {
                panic!()
            };
            let f = fail(class);
            let done = Finished {
                modem: "a",
                planned: 1,
                sent: 0,
                failure: Some(&f),
                counted_at: p.counted_at,
            };
            let completion = core.finished(&c, &done, 1, now);
            assert_eq!(completion.transition().state.as_str(), state, "{class:?}");
            if let Completion::Retry {
                due, count_attempt, ..
            } = completion
            {
                assert_eq!(count_attempt, class == FailureClass::Temporary);
                assert!(
                    due > now && due <= now + Duration::seconds(30),
                    "{class:?}: {due}"
                );
            }
        }
        assert!(!core.slots["a"].busy);
        assert_eq!(core.slots["a"].failed_today, 4);
        // The part in doubt stays counted; the unsent ones were given back.
        assert_eq!(core.slots["a"].window.today(), 1);
    }
}
