//! Resource quantities (`500m`, `2`, `128Mi`, `1G`, `1e3`) as numbers, rounded up as upstream's `Value()` and
//! `MilliValue()` do, and written back in upstream's canonical forms ([`format_scaled`]); [`Quantity`] keeps one
//! exactly, in thousandths, for sums that must not drift (quota usage).

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

/// Divides `value` by `base` while it divides evenly (apimachinery's `removeInt64Factors`).
fn remove_factors(value: i64, base: i64) -> (i64, i32) {
    let (mut result, mut times) = (value.unsigned_abs(), 0);
    let b = base as u64;
    while result >= b && result % b == 0 {
        result /= b;
        times += 1;
    }
    let result = if value < 0 { -(result as i64) } else { result as i64 };
    (result, times)
}

/// The decimal suffix of a power of ten (`n`, `u`, `m`, ``, `k`, `M`, ... `E`), else `e<exponent>`.
fn decimal_suffix(exponent: i32) -> String {
    match exponent {
        -9 => "n".into(),
        -6 => "u".into(),
        -3 => "m".into(),
        0 => String::new(),
        3 => "k".into(),
        6 => "M".into(),
        9 => "G".into(),
        12 => "T".into(),
        15 => "P".into(),
        18 => "E".into(),
        e => format!("e{e}"),
    }
}

/// The canonical decimal form of `mantissa × 10^scale` (`int64Amount.AsCanonicalBytes`): trailing zeros taken
/// into the exponent, which is then lowered to a multiple of three.
fn canonical_decimal(mantissa: i64, scale: i32) -> String {
    let (mut amount, times) = remove_factors(mantissa, 10);
    let mut exponent = scale + times;
    match exponent % 3 {
        1 | -2 => {
            amount *= 10;
            exponent -= 1;
        }
        2 | -1 => {
            amount *= 100;
            exponent -= 2;
        }
        _ => {}
    }
    format!("{amount}{}", decimal_suffix(exponent))
}

/// A quantity of `value × 10^scale` as upstream's `resource.Quantity.String()` writes it, in `DecimalSI`
/// (`binary` false: `123456789n`, `1500m`, `2`, `1k`) or `BinarySI` (`binary` true: `1Mi`, `4000Ki`, `1234567`;
/// values under 1024, or not whole, are written in DecimalSI as upstream does). metrics-server's CPU is
/// `format_scaled(nanocores, -9, false)` and its memory `format_scaled(bytes, 0, true)`.
pub fn format_scaled(value: i64, scale: i32, binary: bool) -> String {
    if value == 0 {
        return "0".into();
    }
    if binary && scale >= 0 && !(-1024 < value && value < 1024) {
        let whole = (0..scale).try_fold(value, |v, _| v.checked_mul(10));
        if let Some(whole) = whole {
            let (amount, times) = remove_factors(whole, 1024);
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].get(times as usize).copied().unwrap_or("");
            return format!("{amount}{suffix}");
        }
    }
    canonical_decimal(value, scale)
}

/// A quantity in milli-units, remembering whether it was written with a binary suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quantity {
    pub milli: i128,
    pub binary: bool,
}

impl Quantity {
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
        let (num, suffix) = s.split_at(end);
        let (mul_num, mul_den, binary): (i128, i128, bool) = match suffix {
            "" => (1, 1, false),
            "n" => (1, 1_000_000_000, false),
            "u" => (1, 1_000_000, false),
            "m" => (1, 1000, false),
            "k" => (1000, 1, false),
            "M" => (1_000_000, 1, false),
            "G" => (1_000_000_000, 1, false),
            "T" => (1_000_000_000_000, 1, false),
            "P" => (1_000_000_000_000_000, 1, false),
            "E" => (1_000_000_000_000_000_000, 1, false),
            "Ki" => (1 << 10, 1, true),
            "Mi" => (1 << 20, 1, true),
            "Gi" => (1 << 30, 1, true),
            "Ti" => (1 << 40, 1, true),
            "Pi" => (1 << 50, 1, true),
            "Ei" => (1 << 60, 1, true),
            e if e.starts_with(['e', 'E']) => {
                let exp: u32 = e[1..].parse().ok()?;
                (10i128.checked_pow(exp)?, 1, false)
            }
            _ => return None,
        };
        let neg = num.starts_with('-');
        let num = num.trim_start_matches(['+', '-']);
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = format!("{int}{frac}");
        let value: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        let scale = 10i128.checked_pow(frac.len() as u32)?;
        // milli = value / scale * mul * 1000, rounded up as upstream rounds up to milli precision.
        let numer = value.checked_mul(mul_num)?.checked_mul(1000)?;
        let denom = scale.checked_mul(mul_den)?;
        let milli = (numer + denom - 1) / denom;
        Some(Quantity { milli: if neg { -milli } else { milli }, binary })
    }

    /// The sum, in this quantity's format unless it is zero (upstream's `Quantity.Add`: a zero takes the other's).
    pub fn plus(self, o: Quantity) -> Quantity {
        Quantity { milli: self.milli + o.milli, binary: if self.milli == 0 { o.binary } else { self.binary } }
    }

    pub fn minus(self, o: Quantity) -> Quantity {
        Quantity { milli: self.milli - o.milli, binary: self.binary }
    }

    /// A count (`pods: 1`).
    pub fn count(n: i128) -> Quantity {
        Quantity { milli: n * 1000, binary: false }
    }

    /// Upstream's canonical form.
    pub fn format(&self) -> String {
        let m = self.milli;
        if m == 0 {
            return "0".into();
        }
        if m % 1000 != 0 {
            return format!("{m}m");
        }
        let v = m / 1000;
        if self.binary {
            for (suffix, shift) in [("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
                if v % (1i128 << shift) == 0 {
                    return format!("{}{suffix}", v >> shift);
                }
            }
            if v.abs() < 1024 {
                return v.to_string();
            }
        }
        let mut v = v;
        for suffix in ["", "k", "M", "G", "T", "P", "E"] {
            if v % 1000 != 0 || suffix == "E" {
                return format!("{v}{suffix}");
            }
            v /= 1000;
        }
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's canonical forms (quantity_test.go's TestQuantityString cases for DecimalSI and BinarySI).
    #[test]
    fn canonical_forms() {
        for (value, scale, binary, want) in [
            (0, -9, false, "0"),
            (123456789, -9, false, "123456789n"),
            (1_000_000, -9, false, "1m"),
            (1_500_000_000, -9, false, "1500m"),
            (2_000_000_000, -9, false, "2"),
            (12_000, -9, false, "12u"),
            (1000, 0, true, "1k"),
            (1023, 0, true, "1023"),
            (1024, 0, true, "1Ki"),
            (1 << 20, 0, true, "1Mi"),
            (4_096_000, 0, true, "4000Ki"),
            (1_234_567, 0, true, "1234567"),
            (1_616_273_408, 0, true, "1578392Ki"),
            (5 << 30, 0, true, "5Gi"),
            (100, 0, false, "100"),
            (1_000_000, 0, false, "1M"),
            (-1500, -3, false, "-1500m"),
        ] {
            assert_eq!(format_scaled(value, scale, binary), want, "{value} {scale} {binary}");
        }
    }

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
