//! Container resources for the downward API (`resourceFieldRef` in env and in downwardAPI and projected volumes),
//! as upstream's `ExtractContainerResourceValue`: the quantity divided by the divisor (unset or `0` meaning 1),
//! rounded up, computed exactly on decimal quantities; limits that are not set (or zero) are the node's
//! allocatable, as `defaultPodLimitsForDownwardAPI` does.

use serde_json::Value;

/// An exact quantity: `mantissa * 10^exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    mantissa: i128,
    exp: i32,
}

impl Quantity {
    /// Parses Kubernetes' quantity syntax: a signed decimal number, then a binary suffix (`Ki`..`Ei`), a decimal
    /// suffix (`n`, `u`, `m`, `k`, `M`, `G`, `T`, `P`, `E`) or an exponent (`e3`, `E-2`).
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
        let (number, suffix) = s.split_at(end);
        let (negative, number) = match number.as_bytes().first() {
            Some(b'-') => (true, &number[1..]),
            Some(b'+') => (false, &number[1..]),
            _ => (false, number),
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || !(int.chars().chain(frac.chars()).all(|c| c.is_ascii_digit())) {
            return None;
        }
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        let mut mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
        let mut exp = -(frac.len() as i32);
        let binary = |n: u32| -> Option<i128> { 1i128.checked_shl(10 * n) };
        match suffix {
            "" => {}
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                let n = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].iter().position(|x| *x == suffix)? as u32 + 1;
                mantissa = mantissa.checked_mul(binary(n)?)?;
            }
            "n" => exp -= 9,
            "u" => exp -= 6,
            "m" => exp -= 3,
            "k" => exp += 3,
            "M" => exp += 6,
            "G" => exp += 9,
            "T" => exp += 12,
            "P" => exp += 15,
            "E" => exp += 18,
            e if e.starts_with(['e', 'E']) => exp += e[1..].parse::<i32>().ok()?,
            _ => return None,
        }
        Some(Quantity { mantissa: if negative { -mantissa } else { mantissa }, exp })
    }

    fn is_positive(&self) -> bool {
        self.mantissa > 0
    }

    /// `ceil(self / divisor)`, saturating at `i64::MAX`; 0 for a quantity or divisor that is not positive.
    pub fn div_ceil(&self, divisor: &Quantity) -> i64 {
        if !self.is_positive() || !divisor.is_positive() {
            return 0;
        }
        let pow = |e: i32| -> Option<i128> { 10i128.checked_pow(u32::try_from(e).ok()?) };
        let (num, den) = if self.exp >= divisor.exp {
            match pow(self.exp - divisor.exp).and_then(|p| self.mantissa.checked_mul(p)) {
                Some(n) => (n, divisor.mantissa),
                None => return i64::MAX,
            }
        } else {
            match pow(divisor.exp - self.exp).and_then(|p| divisor.mantissa.checked_mul(p)) {
                Some(d) => (self.mantissa, d),
                // The divisor is larger by more than i128 can show: the ceiling of a small positive ratio.
                None => return 1,
            }
        };
        let q = num / den + i128::from(num % den != 0);
        i64::try_from(q).unwrap_or(i64::MAX)
    }
}

/// The value of a `resourceFieldRef` for container `container` of `pod` (its `containerName` wins when set):
/// `limits.cpu`, `requests.memory`, `limits.ephemeral-storage`, `requests.hugepages-2Mi`, ...
pub fn field_value(pod: &Value, container: &Value, selector: &Value, allocatable: &Value) -> Result<String, String> {
    let c = match selector.get("containerName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
        Some(name) => ["/spec/containers", "/spec/initContainers"]
            .iter()
            .flat_map(|p| pod.pointer(p).and_then(Value::as_array).into_iter().flatten())
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| format!("container {name} not found"))?,
        None => container,
    };
    let resource = selector.get("resource").and_then(Value::as_str).unwrap_or_default();
    let (kind, name) =
        resource.split_once('.').ok_or_else(|| format!("unsupported container resource : {resource}"))?;
    let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage");
    if !matches!(kind, "limits" | "requests") || !(standard || name.starts_with("hugepages-")) {
        return Err(format!("unsupported container resource : {resource}"));
    }
    let one = Quantity { mantissa: 1, exp: 0 };
    // An unset divisor, or one equal to zero (Go clients send "0"), means 1.
    let divisor = match selector.get("divisor") {
        None | Some(Value::Null) => one,
        Some(v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            match Quantity::parse(&text) {
                Some(q) if q.mantissa == 0 => one,
                Some(q) => q,
                None => return Err(format!("invalid divisor {text:?}")),
            }
        }
    };
    let set = c.pointer(&format!("/resources/{kind}/{name}")).and_then(|v| match v {
        Value::String(s) => Quantity::parse(s),
        other => Quantity::parse(&other.to_string()),
    });
    // Limits not set (or zero) are the node's allocatable (not for huge pages, which are never overcommitted).
    let q = match set {
        Some(q) if q.is_positive() || kind == "requests" || !standard => Some(q),
        _ if kind == "limits" && standard => allocatable.get(name).and_then(Value::as_str).and_then(Quantity::parse),
        _ => None,
    };
    Ok(q.map(|q| q.div_ceil(&divisor)).unwrap_or(0).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn quantities_parse_exactly() {
        assert_eq!(q("250m"), Quantity { mantissa: 250, exp: -3 });
        assert_eq!(q("1.5"), Quantity { mantissa: 15, exp: -1 });
        assert_eq!(q("128Mi"), Quantity { mantissa: 128 << 20, exp: 0 });
        assert_eq!(q("1e3"), Quantity { mantissa: 1, exp: 3 });
        assert_eq!(q("1E"), Quantity { mantissa: 1, exp: 18 });
        assert_eq!(q("2E-2"), Quantity { mantissa: 2, exp: -2 });
        assert_eq!(q("-1k"), Quantity { mantissa: -1, exp: 3 });
        assert_eq!(q(".5"), Quantity { mantissa: 5, exp: -1 });
        for bad in ["", "abc", "1Xi", "1.2.3", "m"] {
            assert!(Quantity::parse(bad).is_none(), "{bad}");
        }
    }

    /// Upstream's rounding (ceil of quantity / divisor) on the cases its helpers tests use, plus large values.
    #[test]
    fn division_rounds_up() {
        let cases = [
            ("250m", "1", 1),
            ("250m", "1m", 250),
            ("1", "1m", 1000),
            ("1500m", "1", 2),
            ("2", "1", 2),
            ("0.5", "1m", 500),
            ("0.0005", "1", 1),
            ("64Mi", "1Mi", 64),
            ("64Mi", "1", 67_108_864),
            ("1Gi", "1M", 1074),
            ("1G", "1Gi", 1),
            ("100M", "1Mi", 96),
            ("1n", "1", 1),
            ("1Ei", "1n", i64::MAX),
            ("1", "1E", 1),
            ("0", "1", 0),
            ("-1", "1", 0),
        ];
        for (value, divisor, want) in cases {
            assert_eq!(q(value).div_ceil(&q(divisor)), want, "{value} / {divisor}");
        }
    }

    #[test]
    fn resource_fields_of_containers_with_node_allocatable_defaults() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi", "ephemeral-storage": "1Gi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "0"}}}
        ]}});
        let alloc = json!({"cpu": "1800m", "memory": "3Gi", "ephemeral-storage": "20Gi", "pods": "110"});
        let a = &pod["spec"]["containers"][0];
        let b = &pod["spec"]["containers"][1];
        let v = |c: &Value, sel: Value| field_value(&pod, c, &sel, &alloc);
        assert_eq!(v(a, json!({"resource": "limits.cpu"})).unwrap(), "1");
        assert_eq!(v(a, json!({"resource": "limits.cpu", "divisor": "1m"})).unwrap(), "500");
        assert_eq!(v(a, json!({"resource": "limits.cpu", "divisor": "0"})).unwrap(), "1", "divisor 0 means 1");
        assert_eq!(v(a, json!({"resource": "limits.memory"})).unwrap(), "67108864");
        assert_eq!(v(a, json!({"resource": "limits.memory", "divisor": "1Mi"})).unwrap(), "64");
        assert_eq!(v(a, json!({"resource": "requests.memory", "divisor": "1Ki"})).unwrap(), "32768");
        assert_eq!(v(a, json!({"resource": "requests.ephemeral-storage", "divisor": "1Mi"})).unwrap(), "1024");
        // Limits not set, or zero: the node's allocatable.
        assert_eq!(v(b, json!({"resource": "limits.cpu", "divisor": "1m"})).unwrap(), "1800");
        assert_eq!(v(b, json!({"resource": "limits.memory", "divisor": "1Gi"})).unwrap(), "3");
        assert_eq!(v(b, json!({"resource": "limits.ephemeral-storage", "divisor": "1Gi"})).unwrap(), "20");
        // Requests not set are 0.
        assert_eq!(v(b, json!({"resource": "requests.cpu"})).unwrap(), "0");
        // Another container by name (volumes name theirs).
        assert_eq!(v(b, json!({"containerName": "a", "resource": "limits.cpu", "divisor": "1m"})).unwrap(), "500");
        assert!(v(a, json!({"containerName": "nope", "resource": "limits.cpu"})).is_err());
        assert!(v(a, json!({"resource": "limits.gpu"})).is_err());
        assert_eq!(v(a, json!({"resource": "requests.hugepages-2Mi"})).unwrap(), "0");
    }
}
