//! `smsgw demo`: the whole flow on a machine with no modem, for a newcomer's first
//! run. Starts the daemon with simulated modems (config/demo.toml), queues greetings
//! and reminders as another system would, lets a customer reply 退订 (opt-out),
//! waits for the delivery reports, and prints what happened to every row.

use crate::config::Config;
use crate::daemon::Daemon;
use crate::store::NewMessage;
use std::time::Duration;

/// The demo configuration shipped in the binary (same as config/demo.toml).
pub const DEMO_TOML: &str = include_str!("../../config/demo.toml");

pub async fn run(cfg: Config) -> anyhow::Result<()> {
    println!(
        "starting smsgw with {} simulated modems, database {}",
        cfg.modems.len(),
        cfg.database.url
    );
    let d = Daemon::start(cfg, None).await?;
    let mut w: Vec<_> = d.modems().iter().map(|m| m.watch()).collect();
    for (m, w) in d.modems().iter().zip(w.iter_mut()) {
        let _ = tokio::time::timeout(Duration::from_secs(20), async {
            while w.borrow_and_update().state != crate::modem::ModemState::Ready {
                if w.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        let s = m.status();
        println!(
            "  modem {:10} {:?}: {} {} (IMEI {}), {}",
            s.id,
            s.state,
            s.info.manufacturer.unwrap_or_default(),
            s.info.model.unwrap_or_default(),
            s.info.imei.unwrap_or_default(),
            s.operator.unwrap_or_default()
        );
    }
    // A customer who does not want greetings replies 退订 to an earlier message.
    let opted = "+8613900000009";
    if let Some(sim) = d.sims.values().next() {
        sim.incoming(opted, "退订");
    }
    for _ in 0..50 {
        if d.store.is_opted_out(opted).await? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  a reply \"退订\" from {opted}: opted out = {}",
        d.store.is_opted_out(opted).await?
    );

    let greeting = "尊敬的客户：中秋佳节将至，祝您和家人身体健康、阖家幸福、万事如意！本店会员日全场八折，积分可抵现金，活动截止本月底，详询门店或回复本短信。退订回T";
    let mut rows = Vec::new();
    let add = |rows: &mut Vec<(i64, &'static str, String)>,
               id: i64,
               cat: &'static str,
               to: &str| rows.push((id, cat, to.to_string()));
    for i in 1..=6 {
        let to = format!("+861380013800{i}");
        let id = d
            .store
            .enqueue(&NewMessage {
                category: Some("greeting".into()),
                ..NewMessage::new(&to, greeting)
            })
            .await?
            .id;
        add(&mut rows, id, "greeting", &to);
    }
    for (i, text) in [
        "【某某医院】您预约的门诊时间为明天 09:00，请提前15分钟到达。",
        "您好，当前叫号 A023，请您到 3 号窗口办理。",
        "您的订单已发货，快递单号 SF1234567890。",
    ]
    .iter()
    .enumerate()
    {
        let to = format!("1391234567{i}");
        let id = d
            .store
            .enqueue(&NewMessage {
                category: Some("reminder".into()),
                priority: 10,
                ..NewMessage::new(&to, text)
            })
            .await?
            .id;
        add(&mut rows, id, "reminder", &to);
    }
    let id = d
        .store
        .enqueue(&NewMessage {
            category: Some("greeting".into()),
            ..NewMessage::new(opted, greeting)
        })
        .await?
        .id;
    add(&mut rows, id, "greeting", opted);
    let id = d
        .store
        .enqueue(&NewMessage::new(
            "call me",
            "a row with an impossible recipient",
        ))
        .await?
        .id;
    add(&mut rows, id, "notice", "call me");
    println!("queued {} messages (as another system would INSERT them); waiting for sends and delivery reports...", rows.len());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let mut open = 0;
        for (id, ..) in &rows {
            if let Some(r) = d.store.get(*id).await? {
                if matches!(r.state.as_str(), "queued" | "sending" | "retrying")
                    || (r.state == "sent" && r.delivery == "pending")
                {
                    open += 1;
                }
            }
        }
        if open == 0 || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "\n{:>4}  {:9} {:16} {:11} {:10} {:10} {:5}  note",
        "id", "category", "recipient", "state", "delivery", "modem", "parts"
    );
    for (id, cat, to) in &rows {
        if let Some(r) = d.store.get(*id).await? {
            println!(
                "{:>4}  {:9} {:16} {:11} {:10} {:10} {:5}  {}",
                r.id,
                cat,
                to,
                r.state,
                r.delivery,
                r.modem.unwrap_or_default(),
                r.parts_total.map(|p| p.to_string()).unwrap_or_default(),
                r.last_error.unwrap_or_default()
            );
        }
    }
    let on_network: usize = d.sims.values().map(|s| s.submitted().len()).sum();
    println!("\nparts that reached the (simulated) network: {on_network}");
    if let Some(sock) = &d.socket {
        // What a technician sees meanwhile, through the status socket.
        println!(
            "\n$ smsgw status --socket {}   (while the daemon runs)\n",
            sock.display()
        );
        let mut cl = crate::control::client::Client::connect(sock).await?;
        print!("{}", super::ops::status_text(&mut cl).await?);
    }
    d.shutdown().await;
    Ok(())
}
