//! Modem families the simulator can imitate: their quirks as data
//! (reference/modems.md §1.3, §2, §3.3, §5).

use std::time::Duration;

/// One modem family's observable behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub manufacturer: &'static str,
    pub model: &'static str,
    pub revision: &'static str,
    /// Echo after power-up and after `ATZ` (gammu: `ATZ` re-enables echo).
    pub echo: bool,
    /// The bytes sent after `AT+CMGS=<n>\r`.
    pub prompt: &'static str,
    /// `+CPIN: READY` with no `OK` after it (Wavecom).
    pub cpin_no_ok: bool,
    /// The answer to an unknown command.
    pub unsupported: &'static str,
    /// Lines printed at power-up, in order.
    pub boot_lines: &'static [&'static str],
    /// After power-up, SIM commands answer `+CME ERROR: <busy_code>` this long.
    pub sim_busy: Duration,
    pub busy_code: u16,
    /// Unsolicited noise cycled through periodically.
    pub noise: &'static [&'static str],
    /// Default noise period (None: silent).
    pub noise_every: Option<Duration>,
    /// Line ending of unsolicited lines (Huawei: CR CR LF).
    pub urc_end: &'static str,
    /// Memory where status reports are stored for `+CDSI`.
    pub report_mem: &'static str,
    /// `+CDS: ,<len>` instead of `+CDS: <len>` (ZTE).
    pub cds_leading_comma: bool,
    /// Echo the PDU back, cut by CR LF every 32 characters (Huawei).
    pub echo_pdu_chunks: bool,
    /// Stored status reports cannot be read back: kept in SR, announced as
    /// `+CDSI: "SM",<i>`, and SR reads give nothing (Quectel EC25/EG25:
    /// asterisk-chan-quectel PR #75, Quectel's forum).
    pub report_storage_broken: bool,
}

const GENERIC: Profile = Profile {
    name: "generic",
    manufacturer: "SMSGW",
    model: "SIM-MODEM",
    revision: "1.0",
    echo: true,
    prompt: "\r\n> ",
    cpin_no_ok: false,
    unsupported: "ERROR",
    boot_lines: &[],
    sim_busy: Duration::ZERO,
    busy_code: 14,
    noise: &[],
    noise_every: None,
    urc_end: "\r\n",
    report_mem: "SR",
    cds_leading_comma: false,
    echo_pdu_chunks: false,
    report_storage_broken: false,
};

/// Every built-in profile.
pub const PROFILES: &[Profile] = &[
    GENERIC,
    Profile {
        name: "huawei",
        manufacturer: "huawei",
        model: "E1752",
        revision: "11.126.13.00.00",
        unsupported: "COMMAND NOT SUPPORT",
        boot_lines: &["^SIMST:1", "^SRVST:2"],
        noise: &[
            "^RSSI:14",
            "^BOOT:35323129,0,0,0,26",
            "^MODE:5,4",
            "^DSFLOWRPT:00000A,00000000,00000000",
        ],
        noise_every: Some(Duration::from_secs(15)),
        urc_end: "\r\r\n",
        report_mem: "SR",
        echo_pdu_chunks: true,
        ..GENERIC
    },
    Profile {
        name: "zte",
        manufacturer: "ZTE INCORPORATED",
        model: "K3565-Z",
        revision: "BD_P673A2V1.0.0B09",
        noise: &[
            "+ZPASR: \"UMTS\"",
            "+ZDONR: \"METEOR\",272,3,\"CS_ONLY\",\"ROAM_OFF\"",
        ],
        noise_every: Some(Duration::from_secs(20)),
        cds_leading_comma: true,
        ..GENERIC
    },
    Profile {
        name: "simcom",
        manufacturer: "SIMCOM_Ltd",
        model: "SIMCOM_SIM800",
        revision: "Revision:1418B04SIM800L24",
        prompt: "\r\n>\r\n",
        boot_lines: &["RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"],
        sim_busy: Duration::from_secs(2),
        ..GENERIC
    },
    Profile {
        name: "quectel",
        manufacturer: "Quectel",
        model: "EC25",
        revision: "EC25EFAR02A09M4G",
        boot_lines: &[
            "RDY",
            "+CFUN: 1",
            "+CPIN: READY",
            "+QUSIM: 1",
            "+QIND: SMS DONE",
            "+QIND: PB DONE",
        ],
        sim_busy: Duration::from_secs(2),
        report_mem: "SR",
        report_storage_broken: true,
        ..GENERIC
    },
    Profile {
        name: "wavecom",
        manufacturer: "WAVECOM MODEM",
        model: "MULTIBAND  900E  1800",
        revision: "641b09gg.Q2403A",
        cpin_no_ok: true,
        boot_lines: &["+WIND: 1", "+WIND: 3", "+WIND: 4"],
        sim_busy: Duration::from_secs(2),
        busy_code: 515,
        // +WIND: 4 (ready for all commands) follows a boot: not periodic noise.
        noise: &["+WIND: 7", "+WIND: 8"],
        noise_every: Some(Duration::from_secs(30)),
        ..GENERIC
    },
];

/// A built-in profile by name.
pub fn by_name(name: &str) -> Option<Profile> {
    PROFILES
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .cloned()
}

/// The names, for help texts and errors.
pub fn names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}
