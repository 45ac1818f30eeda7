//! What the daemon does differently per modem family, as data: detected from
//! `AT+CGMI`, or forced with `vendor = "..."` in a `[[modem]]` section. Pure
//! data beside the AT core, so the configuration can check a vendor's name.

use super::{Registry, UrcKind};

/// A modem family's handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vendor {
    pub name: &'static str,
    /// `AT+CGMI` answers containing one of these (lowercase) select this vendor.
    pub matches: &'static [&'static str],
    /// `+CPIN: READY` comes without `OK`.
    pub cpin_no_ok: bool,
    /// Extra init commands; failures are logged and ignored.
    pub init: &'static [&'static str],
    /// Extra unsolicited patterns (`=LINE` for exact lines).
    pub urcs: &'static [(&'static str, UrcKind)],
    /// Why this family's delivery reports must be routed (`+CDS`) rather than
    /// stored (`+CDSI`); `None`: storing is preferred (nothing is lost while
    /// smsgw restarts), routing is the fallback.
    pub route_reports: Option<&'static str>,
}

pub const GENERIC: Vendor = Vendor {
    name: "generic",
    matches: &[],
    cpin_no_ok: false,
    init: &[],
    urcs: &[],
    route_reports: None,
};

/// Known families. Order matters only for overlapping `matches`.
pub const VENDORS: &[Vendor] = &[
    Vendor {
        name: "huawei",
        matches: &["huawei"],
        // Silence ^RSSI/^BOOT/^MODE (they are swallowed anyway if this fails).
        init: &["AT^CURC=0"],
        route_reports: Some(
            "Huawei's AT interface specification (MU509, \u{a7}6.6): +CDSI is announced but a report in SR cannot be read",
        ),
        ..GENERIC
    },
    Vendor {
        name: "zte",
        matches: &["zte"],
        // Stay online (no CD-ROM mode switch on replug).
        init: &["AT+ZOPRT=5"],
        urcs: &[("+ZSTART", UrcKind::Noise)],
        ..GENERIC
    },
    Vendor {
        name: "simcom",
        matches: &["simcom"],
        ..GENERIC
    },
    Vendor {
        name: "quectel",
        matches: &["quectel"],
        route_reports: Some(
            "EC25/EG25 announce +CDSI: \"SM\" for a report kept in SR that cannot be read back (asterisk-chan-quectel PR #75, Quectel forum)",
        ),
        ..GENERIC
    },
    Vendor {
        name: "wavecom",
        matches: &["wavecom", "multiband"],
        cpin_no_ok: true,
        ..GENERIC
    },
    Vendor {
        name: "cinterion",
        matches: &["siemens", "cinterion"],
        ..GENERIC
    },
];

/// The vendor for an `AT+CGMI` answer (generic when unknown).
pub fn detect(manufacturer: &str) -> Vendor {
    let m = manufacturer.to_ascii_lowercase();
    VENDORS
        .iter()
        .find(|v| v.matches.iter().any(|k| m.contains(k)))
        .copied()
        .unwrap_or(GENERIC)
}

/// A vendor by its configured name.
pub fn by_name(name: &str) -> Option<Vendor> {
    if name.eq_ignore_ascii_case("generic") {
        return Some(GENERIC);
    }
    VENDORS
        .iter()
        .find(|v| v.name.eq_ignore_ascii_case(name))
        .copied()
}

impl Vendor {
    /// The URC registry for this vendor: the standard table plus its patterns.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::standard();
        for (p, k) in self.urcs {
            r.add(p, *k);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection() {
        assert_eq!(detect("huawei").name, "huawei");
        assert_eq!(detect(" WAVECOM MODEM").name, "wavecom");
        assert_eq!(detect("MULTIBAND  900E  1800").name, "wavecom");
        assert_eq!(detect("Quectel").name, "quectel");
        assert_eq!(detect("Acme").name, "generic");
        assert_eq!(by_name("ZTE").unwrap().name, "zte");
        assert!(by_name("nokia").is_none());
    }
}
