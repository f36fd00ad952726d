//! Durations as Go writes them in flags and configuration files.

use std::time::Duration;

/// Parses Go's `time.ParseDuration` forms: `10s`, `1m0s`, `500ms`, `1h30m`, `1.5h`, `20us`/`20µs`, `100ns`, and `0`.
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let second_s = matches!(c, 'm' | 'u' | 'µ' | 'n') && chars.peek() == Some(&'s');
        if second_s {
            chars.next();
        }
        let unit = match (c, second_s) {
            ('h', false) => 3600.0,
            ('m', false) => 60.0,
            ('s', false) => 1.0,
            ('m', true) => 1e-3,
            ('u' | 'µ', true) => 1e-6,
            ('n', true) => 1e-9,
            _ => return None,
        };
        total += num.parse::<f64>().ok()? * unit;
        num.clear();
        any = true;
    }
    (num.is_empty() && any).then(|| Duration::from_secs_f64(total))
}

/// Go's `time.Duration.String()`: `0s`, `1.5µs`, `100ms`, `1.5s`, `1m30s`, `1h0m0s`.
pub fn format(nanos: i64) -> String {
    fn fraction(value: u64, digits: usize) -> String {
        if value == 0 {
            return String::new();
        }
        let text = format!(".{value:0digits$}");
        text.trim_end_matches('0').to_string()
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (digits, unit, scale) = match u {
            0..1_000 => (0, "ns", 1),
            1_000..1_000_000 => (3, "µs", 1_000),
            _ => (6, "ms", 1_000_000),
        };
        return format!("{sign}{}{}{unit}", u / scale, fraction(u % scale, digits));
    }
    let (secs, frac) = (u / 1_000_000_000, u % 1_000_000_000);
    let (minutes, hours) = (secs / 60, secs / 3600);
    let mut out = sign.to_string();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        out.push_str(&format!("{}m", minutes % 60));
    }
    out.push_str(&format!("{}{}s", secs % 60, fraction(frac, 9)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse("40s"), Some(Duration::from_secs(40)));
        assert_eq!(parse("1m0s"), Some(Duration::from_secs(60)));
        assert_eq!(parse("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("5"), None);
        assert_eq!(parse("5x"), None);
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse(""), None);
        assert_eq!(parse("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("20us"), Some(Duration::from_micros(20)));
        assert_eq!(parse("20µs"), Some(Duration::from_micros(20)));
        assert_eq!(parse("100ns"), Some(Duration::from_nanos(100)));
    }
}
