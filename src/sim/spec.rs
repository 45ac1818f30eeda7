//! The simulator as the configuration and the command line name it: a
//! `[[modem]]` device `sim:PROFILE[:MIN-MAX]` (the daemon starts that simulated
//! modem itself) and the latency syntax `N` or `MIN-MAX` milliseconds that
//! `smsgw sim --latency-ms` takes too. One parser for both, so they can never
//! disagree.

use super::model::SimConfig;
use super::profile;
use std::time::Duration;

/// `N` or `MIN-MAX` milliseconds; a minimum above the maximum is refused.
pub fn latency(s: &str) -> Result<(Duration, Duration), String> {
    let ms = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| format!("{s:?} is not N or MIN-MAX milliseconds"))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (ms(a)?, ms(b)?),
        None => {
            let d = ms(s)?;
            (d, d)
        }
    };
    if lo > hi {
        return Err(format!(
            "{s:?}: the minimum ({} ms) is above the maximum ({} ms)",
            lo.as_millis(),
            hi.as_millis()
        ));
    }
    Ok((lo, hi))
}

/// The simulator for a `[[modem]]` whose device is `sim:` + `spec`
/// (`PROFILE[:MIN-MAX]`, latency in milliseconds).
pub fn config(id: &str, spec: &str) -> Result<SimConfig, String> {
    let (name, lat) = match spec.split_once(':') {
        Some((p, l)) => (p, Some(l)),
        None => (spec, None),
    };
    let name = if name.is_empty() { "generic" } else { name };
    let p = profile::by_name(name).ok_or_else(|| {
        format!(
            "unknown simulator profile {name:?} (known: {})",
            profile::names().join(", ")
        )
    })?;
    let mut c = SimConfig::new(format!("{id}-sim"), p);
    if let Some(l) = lat {
        c.latency = latency(l)?;
    }
    c.report_delay = Duration::from_millis(800);
    c.seed = id
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    c.imei = format!("8675840{:08}", c.seed % 100_000_000);
    c.iccid = format!("898600{:014}", c.seed % 100_000_000_000_000);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_syntax_for_the_config_and_the_command_line() {
        assert_eq!(
            latency("5-20").unwrap(),
            (Duration::from_millis(5), Duration::from_millis(20))
        );
        assert_eq!(
            latency("7").unwrap(),
            (Duration::from_millis(7), Duration::from_millis(7))
        );
        assert!(latency("5-3").unwrap_err().contains("above the maximum"));
        assert!(latency("x").is_err());
        assert!(
            config("m1", "generic:5-3").is_err(),
            "the config refuses it too"
        );
        assert!(config("m1", "nokia").unwrap_err().contains("nokia"));
        assert_eq!(config("m1", "huawei:1-2").unwrap().profile.name, "huawei");
        assert_eq!(config("m1", "").unwrap().profile.name, "generic");
    }
}
