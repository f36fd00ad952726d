//! Go's `time.Duration` text form (`24h0m0s`, `5m0s`, `300ms`), as kubeadm's `metav1.Duration` fields carry it.

use std::time::Duration;

/// Parses `1h30m`, `24h0m0s`, `90s`, `300ms`, `0` (the workspace's Go-duration parser, with Go's error text).
pub fn parse(s: &str) -> Result<Duration, String> {
    api_types::duration::parse(s).ok_or_else(|| format!("time: invalid duration {:?}", s.trim()))
}

/// Go's `Duration.String()` for whole seconds and milliseconds: `24h0m0s`, `5m0s`, `30s`, `500ms`, `0s`.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        let ms = d.subsec_millis();
        return if ms == 0 { "0s".into() } else { format!("{ms}ms") };
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let frac = d.subsec_millis();
    let s = if frac > 0 { format!("{s}.{frac:03}").trim_end_matches('0').to_string() } else { s.to_string() };
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Human-readable time left as kubeadm's `duration.ShortHumanDuration` prints it (`364d`, `9y`, `23h`).
pub fn short_human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 60 * 60 {
        format!("{}m", secs / 60)
    } else if secs < 60 * 60 * 24 {
        format!("{}h", secs / 3600)
    } else if secs < 60 * 60 * 24 * 365 {
        format!("{}d", secs / 86400)
    } else {
        format!("{}y", secs / (86400 * 365))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_go_durations() {
        for s in ["24h0m0s", "8760h0m0s", "87600h0m0s", "4m0s", "5m0s", "1m0s", "2m0s", "30s", "0s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert!(parse("5").is_err());
        assert!(parse("5x").is_err());
    }

    #[test]
    fn short_human_matches_check_expiration() {
        assert_eq!(short_human(Duration::from_secs(364 * 86400 + 100)), "364d");
        assert_eq!(short_human(Duration::from_secs(9 * 365 * 86400 + 300 * 86400)), "9y");
        assert_eq!(short_human(Duration::from_secs(3 * 3600)), "3h");
    }
}
