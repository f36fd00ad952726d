//! Resource quantities (`500m`, `2`, `128Mi`, `1G`, `1e3`) as numbers, rounded up as upstream's `Value()` and
//! `MilliValue()` do.

/// The quantity as a number of units (e.g. `1500m` -> 1.5, `1Ki` -> 1024).
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suffix, mult) in SUFFIXES {
        if let Some(n) = q.strip_suffix(suffix) {
            // "1E" is exa, but "1e3" is an exponent: only digits may precede a unit suffix.
            if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == '+') {
                continue;
            }
            return n.parse::<f64>().ok().map(|n| n * mult);
        }
    }
    q.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Thousandths of a unit, rounded up (`MilliValue`): CPU in millicores.
pub fn milli(q: &str) -> Option<i64> {
    parse(q).map(|v| (v * 1000.0 - 1e-9).ceil() as i64)
}

/// Whole units, rounded up (`Value`): bytes, counts.
pub fn value(q: &str) -> Option<i64> {
    parse(q).map(|v| (v - 1e-9).ceil() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(milli("500m"), Some(500));
        assert_eq!(milli("2"), Some(2000));
        assert_eq!(milli("0.1"), Some(100));
        assert_eq!(value("128Mi"), Some(128 << 20));
        assert_eq!(value("1G"), Some(1_000_000_000));
        assert_eq!(value("1e3"), Some(1000));
        assert_eq!(value("1500m"), Some(2));
        assert_eq!(value("110"), Some(110));
        assert_eq!(value("abc"), None);
    }
}
