//! Kubernetes resource quantities as pod annotations carry them: `64Mi`,
//! `10M`, `1.5G`, `1048576`.

/// Parses a quantity into a whole number (rounded up); `None` when it is
/// not one or does not fit.
pub fn parse(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(multiplier)?;
    if !frac.is_empty() {
        // frac/10^len × multiplier, rounded up, without floating point.
        let digits: u32 = frac.len().try_into().ok()?;
        let den = 10u128.checked_pow(digits)?;
        let num = u128::from(frac.parse::<u64>().ok()?) * u128::from(multiplier);
        let part = u64::try_from(num.div_ceil(den)).ok()?;
        value = value.checked_add(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse("64Mi"), Some(64 << 20));
        assert_eq!(parse("10M"), Some(10_000_000));
        assert_eq!(parse("1.5G"), Some(1_500_000_000));
        assert_eq!(parse("1048576"), Some(1048576));
        assert_eq!(parse(" 2Ki "), Some(2048));
        assert_eq!(parse("0.5"), Some(1));
        for bad in [
            "",
            "Mi",
            "1.2.3M",
            "-1",
            "1m",
            "12 Mi",
            "1e3",
            "99999999999Ei",
            ".",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
