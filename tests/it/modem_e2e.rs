//! End to end: the modem actor, through tokio-serial on a real pty, against the
//! simulator in each profile and fault mode. What the actor reports is checked
//! against the simulator's record of what reached the network.

use smsgw::at::classify::FailureClass;
use smsgw::modem::{self, ModemConfig, ModemEvent, ModemHandle, ModemState, Timeouts};
use smsgw::pdu::{self, SubmitOptions, Tpdu};
use smsgw::sim::{self, profile, Control, ReportOutcome, SimConfig, SimHandle};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::timeout;

struct Rig {
    sim: SimHandle,
    modem: ModemHandle,
    events: mpsc::UnboundedReceiver<ModemEvent>,
    _dir: tempfile::TempDir,
}

fn fast_timeouts() -> Timeouts {
    Timeouts {
        command: Duration::from_secs(2),
        send_prompt: Duration::from_secs(2),
        send_result: Duration::from_secs(3),
        resync: Duration::from_secs(1),
        sim_busy: Duration::from_secs(10),
    }
}

async fn rig(mut cfg: SimConfig, tweak: impl FnOnce(&mut ModemConfig)) -> Rig {
    // RUST_LOG=smsgw=trace shows the wire when a test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let link: PathBuf = dir.path().join("modem0");
    cfg.report_delay = Duration::from_millis(100);
    let sim = sim::spawn(
        cfg,
        Some(link.clone()),
        Some(dir.path().join("record.jsonl")),
    )
    .await
    .unwrap();
    let (tx, events) = mpsc::unbounded_channel();
    let mut mc = ModemConfig::new("m1", link.to_str().unwrap());
    mc.timeouts = fast_timeouts();
    mc.health_interval = Duration::from_secs(3600);
    mc.reconnect_initial = Duration::from_millis(100);
    mc.reconnect_max = Duration::from_millis(400);
    tweak(&mut mc);
    let modem = modem::spawn(mc, tx);
    Rig {
        sim,
        modem,
        events,
        _dir: dir,
    }
}

async fn wait_state(m: &ModemHandle, want: ModemState, within: Duration) {
    let mut w = m.watch();
    let r = timeout(within, async {
        loop {
            if w.borrow_and_update().state == want {
                return;
            }
            w.changed().await.unwrap();
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "modem never became {want:?}; status: {:?}",
        m.status()
    );
}

fn parts(to: &str, text: &str) -> Vec<pdu::EncodedPart> {
    pdu::encode_submit(to, text, &SubmitOptions::default()).unwrap()
}

async fn next_report(events: &mut mpsc::UnboundedReceiver<ModemEvent>) -> (u8, u8) {
    loop {
        let ev = timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("no event")
            .unwrap();
        if let ModemEvent::StatusReport { pdu: Ok(d), .. } = ev {
            if let Tpdu::StatusReport(sr) = d.tpdu {
                return (sr.message_reference, sr.status.raw);
            }
        }
    }
}

const GREETING: &str = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！本店全场八折，欢迎光临。详询请回复本短信，退订回T。另：会员积分可抵现金，活动截止本月底，敬请留意。";

#[tokio::test]
async fn every_profile_sends_multipart_chinese_and_gets_reports() {
    for p in profile::PROFILES {
        let mut cfg = SimConfig::new("sim-0", p.clone());
        cfg.first_mr = 254; // exercise the 255 -> 0 wrap across parts
        cfg.noise_every = Some(Duration::from_millis(30));
        let mut r = rig(cfg, |_| {}).await;
        wait_state(&r.modem, ModemState::Ready, Duration::from_secs(15)).await;
        let st = r.modem.status();
        assert!(st.info.vendor.is_some(), "{}", p.name);
        assert!(st.info.imei.is_some(), "{}: {:?}", p.name, st.info);
        let ps = parts("+8613800138000", GREETING);
        assert_eq!(ps.len(), 2);
        let rep = r.modem.send(ps).await;
        assert!(rep.failure.is_none(), "{}: {:?}", p.name, rep.failure);
        let mrs: Vec<_> = rep.sent.iter().map(|s| s.mr).collect();
        assert_eq!(mrs, [Some(254), Some(255)], "{}", p.name);
        let rep = r
            .modem
            .send(parts("13800138000", "Appointment at 9:00"))
            .await;
        assert_eq!(rep.sent[0].mr, Some(0), "{}: MR wraps to 0", p.name);
        // The network saw exactly these three parts, once each.
        let net = r.sim.submitted();
        assert_eq!(net.len(), 3, "{}", p.name);
        let joined: String = net[..2].iter().map(|s| s.text.as_str()).collect();
        assert_eq!(joined, GREETING);
        assert_eq!((net[0].part, net[0].total, net[1].part), (1, 2, 2));
        // One delivery report per part, matching the references.
        let mut got = vec![];
        for _ in 0..3 {
            got.push(next_report(&mut r.events).await);
        }
        got.sort();
        assert_eq!(got, [(0, 0), (254, 0), (255, 0)], "{}", p.name);
        r.sim.control(Control::Stop);
        r.modem.shutdown().await;
    }
}

#[tokio::test]
async fn still_trying_then_delivered_reports_both() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("generic").unwrap());
    cfg.report_outcome = ReportOutcome::StillTryingThenDelivered;
    let mut r = rig(cfg, |_| {}).await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    let rep = r.modem.send(parts("+8613800138000", "hello")).await;
    let mr = rep.sent[0].mr.unwrap();
    assert_eq!(next_report(&mut r.events).await, (mr, 0x30));
    assert_eq!(next_report(&mut r.events).await, (mr, 0x00));
}

#[tokio::test]
async fn incoming_chinese_multipart_is_read_then_deleted_only_on_request() {
    let r = rig(
        SimConfig::new("sim-0", profile::by_name("huawei").unwrap()),
        |_| {},
    )
    .await;
    let mut r = r;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    let text = "您好，我想改约到下周三下午，谢谢！".repeat(5);
    r.sim.incoming("+8613912345678", &text);
    let mut got = Vec::new();
    while got.len() < 2 {
        match timeout(Duration::from_secs(5), r.events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            ModemEvent::Incoming {
                pdu: Ok(d), stored, ..
            } => got.push((d, stored.expect("stored on SIM"))),
            other => panic!("unexpected {other:?}"),
        }
    }
    let mut joined = String::new();
    for (d, _) in &got {
        let Tpdu::Deliver(x) = &d.tpdu else { panic!() };
        assert_eq!(x.originator.number, "+8613912345678");
        joined.push_str(x.user_data.text().unwrap());
    }
    assert_eq!(joined, text);
    // Not deleted yet: a restarted actor would read them again.
    let (_, at) = &got[0];
    r.modem.delete(at.clone()).await.unwrap();
    r.modem.delete(got[1].1.clone()).await.unwrap();
    // Deleting again: the slot is empty now, the modem still answers OK.
    r.modem.delete(at.clone()).await.unwrap();
}

#[tokio::test]
async fn messages_on_the_sim_at_start_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("m");
    let s = sim::spawn(
        SimConfig::new("sim-0", profile::by_name("generic").unwrap()),
        Some(link.clone()),
        None,
    )
    .await
    .unwrap();
    // Arrives while no daemon runs: the modem stores it (no CNMI routing yet).
    s.incoming("10086", "余额提醒：您的账户余额为 12.50 元。");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut mc = ModemConfig::new("m1", link.to_str().unwrap());
    mc.timeouts = fast_timeouts();
    let _m = modem::spawn(mc, tx);
    match timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap()
    {
        ModemEvent::Incoming {
            pdu: Ok(d),
            stored: Some(_),
            ..
        } => {
            let Tpdu::Deliver(x) = d.tpdu else { panic!() };
            assert_eq!(
                x.user_data.text(),
                Some("余额提醒：您的账户余额为 12.50 元。")
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unplug_and_return_under_a_new_name() {
    let r = rig(
        SimConfig::new("sim-0", profile::by_name("simcom").unwrap()),
        |_| {},
    )
    .await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(15)).await;
    let first_pts = r.sim.pts.borrow().clone();
    r.sim.control(Control::Unplug(Duration::from_millis(300)));
    wait_state(&r.modem, ModemState::Disconnected, Duration::from_secs(5)).await;
    // While it is gone, sends fail fast as a modem problem (nothing sent).
    let rep = r.modem.send(parts("10086", "x")).await;
    assert_eq!(rep.failure.unwrap().class, FailureClass::Modem);
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(15)).await;
    assert_ne!(
        *r.sim.pts.borrow(),
        first_pts,
        "the device came back under another name"
    );
    let rep = r.modem.send(parts("10086", "after replug")).await;
    assert!(rep.failure.is_none(), "{:?}", rep.failure);
    assert_eq!(
        r.sim.submitted().len(),
        1,
        "only the send after the replug reached the network"
    );
}

#[tokio::test]
async fn hang_after_ctrl_z_is_ambiguous_and_never_resent() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("generic").unwrap());
    cfg.faults.hang_after_ctrl_z_rate = 1.0;
    let r = rig(cfg, |_| {}).await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    let rep = r.modem.send(parts("+8613800138000", GREETING)).await;
    assert!(rep.sent.is_empty());
    assert_eq!(rep.failure.unwrap().class, FailureClass::Ambiguous);
    // The network did get the first part, once; the second was never attempted.
    let net = r.sim.submitted();
    assert_eq!(net.len(), 1);
    assert!(!net[0].answered);
    // The modem still works afterwards (resynchronised).
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_hung_modem_is_reset_and_reopened() {
    let r = rig(
        SimConfig::new("sim-0", profile::by_name("generic").unwrap()),
        |m| {
            m.health_interval = Duration::from_millis(300);
        },
    )
    .await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    r.sim.control(Control::Hang(true));
    wait_state(&r.modem, ModemState::Resetting, Duration::from_secs(20)).await;
    r.sim.control(Control::Hang(false));
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(20)).await;
    let rep = r.modem.send(parts("10086", "back")).await;
    assert!(rep.failure.is_none());
}

#[tokio::test]
async fn cms_errors_are_classified_and_later_sends_work() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("quectel").unwrap());
    cfg.faults.fail_recipients = vec![("+8613000000001".into(), 1), ("+8613000000002".into(), 42)];
    let r = rig(cfg, |_| {}).await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(15)).await;
    let f = r
        .modem
        .send(parts("+8613000000001", "x"))
        .await
        .failure
        .unwrap();
    assert_eq!(f.class, FailureClass::Permanent);
    assert!(f.reason.contains("unassigned number"), "{}", f.reason);
    let f = r
        .modem
        .send(parts("+8613000000002", "x"))
        .await
        .failure
        .unwrap();
    assert_eq!(f.class, FailureClass::Temporary);
    assert!(r
        .modem
        .send(parts("+8613000000003", "x"))
        .await
        .failure
        .is_none());
    assert_eq!(r.sim.submitted().len(), 1);
}

#[tokio::test]
async fn deregistered_modem_is_degraded_and_refuses_sends() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("generic").unwrap());
    cfg.faults.deregistered = true;
    let r = rig(cfg, |_| {}).await;
    wait_state(&r.modem, ModemState::Degraded, Duration::from_secs(10)).await;
    assert!(r.modem.status().reason.unwrap().contains("not registered"));
    let f = r.modem.send(parts("10086", "x")).await.failure.unwrap();
    assert_eq!(f.class, FailureClass::Modem);
    // Registration returns (unsolicited +CREG): ready again.
    r.sim.control(Control::Registered(true));
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sim_pin_is_entered_and_a_missing_pin_is_reported() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("generic").unwrap());
    cfg.pin = Some("4321".into());
    let r = rig(cfg.clone(), |m| m.pin = Some(modem::Secret("4321".into()))).await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    let r2 = rig(cfg, |_| {}).await;
    wait_state(&r2.modem, ModemState::Degraded, Duration::from_secs(10)).await;
    let reason = r2.modem.status().reason.unwrap();
    assert!(reason.contains("SIM PIN required"), "{reason}");
}

#[tokio::test]
async fn a_missing_device_is_disconnected_with_the_reason() {
    let (tx, _rx) = mpsc::unbounded_channel();
    let m = modem::spawn(
        ModemConfig::new("m9", "/dev/serial/by-id/does-not-exist"),
        tx,
    );
    wait_state(&m, ModemState::Disconnected, Duration::from_secs(5)).await;
    let reason = m.status().reason.unwrap();
    assert!(
        reason.contains("cannot open /dev/serial/by-id/does-not-exist"),
        "{reason}"
    );
}

#[tokio::test]
async fn chaos_every_reported_part_is_on_the_network_exactly_once() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("zte").unwrap());
    cfg.faults.cms_error_rate = 0.15;
    cfg.faults.cms_error_code = 42;
    cfg.faults.hang_after_ctrl_z_rate = 0.05;
    cfg.noise_every = Some(Duration::from_millis(20));
    cfg.report_outcome = ReportOutcome::Never;
    cfg.seed = 7;
    let r = rig(cfg, |m| m.timeouts.send_result = Duration::from_millis(800)).await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    let mut reported = Vec::new();
    let mut classes = std::collections::BTreeMap::new();
    for i in 0..40 {
        if i % 10 == 5 {
            r.sim.control(Control::Garbage(3000));
        }
        let to = format!("+86139{i:08}");
        let text = if i % 3 == 0 {
            GREETING.to_string()
        } else {
            format!("提醒：您的预约号是 {i}")
        };
        let rep = r.modem.send(parts(&to, &text)).await;
        for p in &rep.sent {
            reported.push((to.clone(), p.mr.unwrap()));
        }
        if let Some(f) = rep.failure {
            *classes.entry(format!("{:?}", f.class)).or_insert(0) += 1;
        }
        wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    }
    let net = r.sim.submitted();
    // Nothing reached the network twice (same recipient, part and text).
    let mut seen = std::collections::HashSet::new();
    for s in &net {
        assert!(
            seen.insert((s.to.clone(), s.part, s.text.clone())),
            "sent twice: {s:?}"
        );
    }
    // Every part reported sent is on the network, answered, with that reference.
    for (to, mr) in &reported {
        assert!(
            net.iter().any(|s| &s.to == to && s.mr == *mr && s.answered),
            "reported {to} mr {mr} not on the network"
        );
    }
    // Parts on the network that were answered are exactly the reported ones.
    assert_eq!(net.iter().filter(|s| s.answered).count(), reported.len());
    assert!(classes.contains_key("Temporary"), "{classes:?}");
    assert!(!reported.is_empty());
}

#[tokio::test]
async fn stored_reports_via_cdsi_when_routed_reports_are_refused() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("huawei").unwrap());
    cfg.faults.refuse_routed_reports = true;
    let mut r = rig(cfg, |_| {}).await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    let rep = r.modem.send(parts("+8613800138000", "report me")).await;
    let mr = rep.sent[0].mr.unwrap();
    let ev = timeout(Duration::from_secs(5), r.events.recv())
        .await
        .unwrap()
        .unwrap();
    let ModemEvent::StatusReport {
        pdu: Ok(d),
        stored: Some(at),
        ..
    } = ev
    else {
        panic!("expected a stored report, got {ev:?}")
    };
    // Huawei stores reports in "SR".
    assert_eq!(at.mem, "SR");
    let Tpdu::StatusReport(sr) = d.tpdu else {
        panic!()
    };
    assert_eq!(sr.message_reference, mr);
    assert!(sr.status.delivered);
    r.modem.delete(at).await.unwrap();
}

#[tokio::test]
async fn no_smsc_anywhere_is_degraded_with_the_fix_in_the_reason() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("generic").unwrap());
    cfg.smsc = String::new();
    let r = rig(cfg.clone(), |_| {}).await;
    wait_state(&r.modem, ModemState::Degraded, Duration::from_secs(10)).await;
    assert!(r.modem.status().reason.unwrap().contains("smsc"));
    // With smsc configured, the actor sets it on the SIM and the modem is ready.
    let r2 = rig(cfg, |m| m.smsc = Some("+8613800100500".into())).await;
    wait_state(&r2.modem, ModemState::Ready, Duration::from_secs(10)).await;
    assert_eq!(r2.modem.status().smsc.as_deref(), Some("+8613800100500"));
    assert!(r2.modem.send(parts("10086", "x")).await.failure.is_none());
}

#[tokio::test]
async fn the_record_file_has_one_json_line_per_part() {
    let r = rig(
        SimConfig::new("sim-7", profile::by_name("generic").unwrap()),
        |_| {},
    )
    .await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    assert!(r
        .modem
        .send(parts("+8613800138000", GREETING))
        .await
        .failure
        .is_none());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let text = std::fs::read_to_string(r._dir.path().join("record.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["modem"], "sim-7");
    assert_eq!(lines[0]["to"], "+8613800138000");
    assert_eq!(lines[1]["part"], 2);
    assert_eq!(lines[1]["total"], 2);
    assert!(lines[0]["time"].as_str().unwrap().ends_with('Z'));
}

// --- Restarts, reboots and the report memory (issue: replies shifted by one
// after a restart, reports lost).

/// What the simulated USB modem says while no process has its port open waits
/// for the next open, as a real one's does (serialport does not flush at open).
#[tokio::test]
async fn output_written_while_the_port_is_closed_waits_for_the_next_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_serial::SerialPortBuilderExt;
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("m");
    let mut cfg = SimConfig::new("sim-0", profile::by_name("generic").unwrap());
    cfg.latency = (Duration::from_millis(400), Duration::from_millis(400));
    let s = sim::spawn(cfg, Some(link.clone()), None).await.unwrap();
    let open = || {
        tokio_serial::new(link.to_str().unwrap(), 115_200)
            .open_native_async()
            .unwrap()
    };
    let mut port = open();
    let part = &parts("+8613800138000", "hi")[0];
    port.write_all(b"ATE0\r").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    port.write_all(format!("AT+CMGS={}\r", part.cmgs_len).as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    port.write_all(format!("{}\x1a", part.pdu).as_bytes())
        .await
        .unwrap();
    // The process dies before the network answers.
    drop(port);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut port = open();
    let mut buf = vec![0u8; 512];
    let mut got = String::new();
    while !got.contains("OK\r\n") || !got.contains("+CMGS:") {
        let n = timeout(Duration::from_secs(2), port.read(&mut buf))
            .await
            .expect("the answer waited for the next open")
            .unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(got.contains("+CMGS: 0"), "{got:?}");
    s.control(Control::Stop);
}

async fn next_event(events: &mut mpsc::UnboundedReceiver<ModemEvent>) -> ModemEvent {
    timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an event")
        .unwrap()
}

/// A delete repeated after the SIM stored a newer message at the same index
/// must not remove it (the record of the first was retried, or the first was
/// read again after a restart).
#[tokio::test]
async fn a_repeated_delete_never_removes_a_newer_message_at_the_same_index() {
    let mut r = rig(
        SimConfig::new("sim-0", profile::by_name("generic").unwrap()),
        |_| {},
    )
    .await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    let stored = |ev: ModemEvent| match ev {
        ModemEvent::Incoming {
            stored: Some(at), ..
        } => at,
        other => panic!("unexpected {other:?}"),
    };
    r.sim.incoming("+8613912345678", "first");
    let first = stored(next_event(&mut r.events).await);
    r.modem.delete(first.clone()).await.unwrap();
    r.sim.incoming("+8613912345678", "second");
    let second = stored(next_event(&mut r.events).await);
    assert_eq!(second.index, first.index, "the SIM reused the slot");
    // The first message's delete, repeated: it must see the slot holds another.
    r.modem.delete(first).await.unwrap();
    // A reopen reads what the SIM holds: the second message is still there.
    r.modem.reset().await;
    let again = stored(next_event(&mut r.events).await);
    assert_eq!((again.index, &again.pdu), (second.index, &second.pdu));
}

/// How reports arrive is the vendor profile's choice, with its reason: stored
/// (+CDSI) by default, routed (+CDS) on Quectel, whose stored reports cannot be
/// read back; the simulator's Quectel has that very bug, and its reports still
/// arrive.
#[tokio::test]
async fn reports_are_stored_by_default_and_routed_where_storage_is_broken() {
    for (name, stored) in [("generic", true), ("quectel", false)] {
        let mut r = rig(
            SimConfig::new("sim-0", profile::by_name(name).unwrap()),
            |_| {},
        )
        .await;
        wait_state(&r.modem, ModemState::Ready, Duration::from_secs(15)).await;
        let mode = r.modem.status().reports.expect("a report mode");
        match (&mode, stored) {
            (smsgw::modem::ReportMode::Stored { mem }, true) => assert_eq!(mem, "SR"),
            (smsgw::modem::ReportMode::Routed { why }, false) => {
                assert!(why.contains("EC25"), "{why}")
            }
            other => panic!("{name}: {other:?}"),
        }
        let rep = r.modem.send(parts("+8613800138000", "hi")).await;
        let mr = rep.sent[0].mr.unwrap();
        loop {
            let ev = timeout(Duration::from_secs(5), r.events.recv())
                .await
                .unwrap_or_else(|_| panic!("{name}: no report"))
                .unwrap();
            if let ModemEvent::StatusReport {
                pdu: Ok(d),
                stored: at,
                ..
            } = ev
            {
                let Tpdu::StatusReport(sr) = d.tpdu else {
                    panic!()
                };
                assert_eq!(sr.message_reference, mr);
                assert_eq!(at.is_some(), stored, "{name}");
                break;
            }
        }
        r.sim.control(Control::Stop);
        r.modem.shutdown().await;
    }
}

/// A full report memory (+CMS ERROR: 322 on a send that asks for a report)
/// does not stop sending: the modem routes its reports from then on and the
/// part goes.
#[tokio::test]
async fn a_full_report_memory_does_not_stop_sending() {
    let mut cfg = SimConfig::new("sim-0", profile::by_name("generic").unwrap());
    cfg.report_slots = 1;
    cfg.faults.refuse_sends_when_report_memory_full = true;
    let mut r = rig(cfg, |_| {}).await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(10)).await;
    let opts = SubmitOptions {
        request_report: true,
        ..SubmitOptions::default()
    };
    let with_report = |text: &str| pdu::encode_submit("+8613800138000", text, &opts).unwrap();
    assert!(r.modem.send(with_report("one")).await.failure.is_none());
    // Its report fills the memory (nobody deletes it in this test).
    tokio::time::sleep(Duration::from_millis(400)).await;
    let rep = r.modem.send(with_report("two")).await;
    assert!(rep.failure.is_none(), "{:?}", rep.failure);
    assert!(matches!(
        r.modem.status().reports,
        Some(smsgw::modem::ReportMode::Routed { .. })
    ));
    let mut routed = false;
    while let Ok(Some(ev)) = timeout(Duration::from_secs(3), r.events.recv()).await {
        if let ModemEvent::StatusReport { stored: None, .. } = ev {
            routed = true;
            break;
        }
    }
    assert!(routed, "the second part's report came routed");
    assert_eq!(r.sim.submitted().len(), 2, "each part once");
}

/// A modem that reboots mid-session (its boot lines arrive unasked) is
/// initialised again: its settings were lost with the reboot.
#[tokio::test]
async fn a_reboot_mid_session_is_noticed_and_the_modem_set_up_again() {
    let r = rig(
        SimConfig::new("sim-0", profile::by_name("simcom").unwrap()),
        |_| {},
    )
    .await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(15)).await;
    let before = r.modem.status().since;
    r.sim.control(Control::Reboot);
    // Noticed: the actor initialises the modem again (its settings were lost).
    wait_state(&r.modem, ModemState::Initialising, Duration::from_secs(5)).await;
    wait_state(&r.modem, ModemState::Ready, Duration::from_secs(15)).await;
    assert!(r.modem.status().since > before);
    let rep = r
        .modem
        .send(parts("+8613800138000", "after the reboot"))
        .await;
    assert!(rep.failure.is_none(), "{:?}", rep.failure);
}
