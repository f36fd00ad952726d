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

/// How a quantity was written, which decides how upstream writes it back (`resource.Format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DecimalSI,
    BinarySI,
    DecimalExponent,
}

/// A quantity string as upstream's `Quantity` serializes it once parsed (`ParseQuantity`, then `CanonicalizeBytes`):
/// `1000m` -> `1`, `0.5Gi` -> `512Mi`, `1.5` -> `1500m`, `1024Mi` -> `1Gi`, `1e3` -> `1e3`, `10e3` -> `10e3`. Values
/// are rounded up to nano precision, and capped at 2^63-1 as upstream caps them. `None` when it does not parse.
pub fn canonical(s: &str) -> Option<String> {
    let (mut mantissa, mut scale, mut format) = parse_exact(s)?;
    // Rounded up (away from zero) to 1n: someone who asks for some of a resource gets some.
    if scale < -9 {
        let div = 10i128.checked_pow((-9 - scale) as u32)?;
        let rounded = mantissa.unsigned_abs().div_ceil(div.unsigned_abs()) as i128;
        mantissa = if mantissa < 0 { -rounded } else { rounded };
        scale = -9;
    }
    if mantissa == 0 {
        return Some("0".into());
    }
    // Capped at the largest int64, as upstream's maxAllowed.
    let max = i64::MAX as i128;
    let whole = (scale >= 0).then(|| 10i128.checked_pow(scale as u32).and_then(|p| mantissa.checked_mul(p))).flatten();
    if scale >= 0 && whole.is_none_or(|w| w.abs() > max) {
        (mantissa, scale) = (if mantissa < 0 { -max } else { max }, 0);
    }
    if format == Format::BinarySI {
        // Under 1024, or not whole: written as DecimalSI, so that nothing is rounded.
        let integer = if scale >= 0 { 10i128.checked_pow(scale as u32).map(|p| mantissa * p) } else { None };
        let integer = integer.or_else(|| {
            let p = 10i128.pow((-scale) as u32);
            (mantissa % p == 0).then(|| mantissa / p)
        });
        match integer {
            Some(v) if !(-1024 < v && v < 1024) => {
                let (mut amount, mut times) = (v, 0);
                while amount % 1024 == 0 && times < 6 {
                    amount /= 1024;
                    times += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][times];
                return Some(format!("{amount}{suffix}"));
            }
            _ => format = Format::DecimalSI,
        }
    }
    // Trailing zeros into the exponent, then the exponent lowered to a multiple of three.
    while mantissa % 10 == 0 {
        mantissa /= 10;
        scale += 1;
    }
    match scale.rem_euclid(3) {
        1 => (mantissa, scale) = (mantissa * 10, scale - 1),
        2 => (mantissa, scale) = (mantissa * 100, scale - 2),
        _ => {}
    }
    let suffix = match format {
        Format::DecimalExponent if scale == 0 => String::new(),
        Format::DecimalExponent => format!("e{scale}"),
        _ => decimal_suffix(scale),
    };
    Some(format!("{mantissa}{suffix}"))
}

/// A quantity as `mantissa × 10^scale` exactly, and its format; upstream's syntax: a sign, digits with at most one
/// point, then a suffix (`m`, `Ki`, `e3`...).
fn parse_exact(s: &str) -> Option<(i128, i32, Format)> {
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(end);
    let (neg, num) = match num.as_bytes().first() {
        Some(b'-') => (true, &num[1..]),
        Some(b'+') => (false, &num[1..]),
        _ => (false, num),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    // Leading zeros carry nothing; more digits than an i128 holds are beyond any quantity that is not capped.
    let all = format!("{int}{frac}");
    let all = all.trim_start_matches('0');
    if all.len() > 36 {
        return None;
    }
    let mut mantissa: i128 = if all.is_empty() { 0 } else { all.parse().ok()? };
    let mut scale = -(frac.len() as i32);
    let format = match suffix {
        "" => Format::DecimalSI,
        "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => {
            scale += match suffix {
                "n" => -9,
                "u" => -6,
                "m" => -3,
                "k" => 3,
                "M" => 6,
                "G" => 9,
                "T" => 12,
                "P" => 15,
                _ => 18,
            };
            Format::DecimalSI
        }
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
            let shift = 10 * (1 + ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].iter().position(|b| *b == suffix)? as u32);
            mantissa = mantissa.checked_mul(1i128 << shift)?;
            Format::BinarySI
        }
        e if e.len() > 1 && e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            scale = scale.checked_add(exp)?;
            Format::DecimalExponent
        }
        _ => return None,
    };
    if !(-60..=60).contains(&scale) {
        return None;
    }
    Some((if neg { -mantissa } else { mantissa }, scale, format))
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

    /// Quantities as upstream's apiserver writes them back (quantity_test.go's TestQuantityParse and
    /// TestQuantityString cases through `ParseQuantity(s).String()`).
    #[test]
    fn canonical_strings() {
        for (given, want) in [
            ("0", "0"),
            ("0n", "0"),
            ("-0.0Mi", "0"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1.5", "1500m"),
            ("0.1", "100m"),
            ("100m", "100m"),
            ("1", "1"),
            ("1000", "1k"),
            ("1001", "1001"),
            ("1024Mi", "1Gi"),
            ("0.5Gi", "512Mi"),
            ("1.5Gi", "1536Mi"),
            ("512Ki", "512Ki"),
            ("1Ki", "1Ki"),
            ("0.5Ki", "512"),
            ("1023", "1023"),
            ("1.1Ki", "1126400m"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("10e3", "10e3"),
            ("1e4", "10e3"),
            ("1.5e3", "1500"),
            ("100e-3", "100e-3"),
            ("100e-4", "10e-3"),
            ("1e0", "1"),
            ("1k", "1k"),
            ("1000k", "1M"),
            ("0.001", "1m"),
            ("0.0001", "100u"),
            ("1n", "1n"),
            ("0.1n", "1n"),
            ("1.0000000001", "1000000001n"),
            ("-1500m", "-1500m"),
            ("-0.1n", "-1n"),
            ("+5", "5"),
            (".5", "500m"),
            ("5.", "5"),
            ("0050m", "50m"),
            ("9E", "9E"),
            ("10E", "9223372036854775807"),
            ("8Ei", "9223372036854775807"),
            ("2Ei", "2Ei"),
        ] {
            assert_eq!(canonical(given).as_deref(), Some(want), "{given}");
        }
        for bad in ["", "m", "1.2.3", "1Q", "abc", "1 m", "--1", ".", "1e", "1i"] {
            assert_eq!(canonical(bad), None, "{bad:?}");
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
