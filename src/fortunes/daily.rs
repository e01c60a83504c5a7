//! `--daily`: one fortune for everyone all day, a quote of the day derived
//! from the date alone (in the service's time zone: `TZ`, else
//! `/etc/localtime`), so restarts and `Accept=yes` processes agree.

use jiff::civil::Date;

/// Today in the local time zone.
pub fn today() -> Date {
    jiff::ZonedDateTime::now().date()
}

/// The position of `date`'s fortune among `n` (> 0); `attempt` > 0 gives
/// the day's fallbacks when that entry cannot be served. Fixed arithmetic,
/// not a library RNG, so that it never changes between builds.
pub fn index(date: Date, attempt: u64, n: usize) -> usize {
    let day = (i64::from(date.year()) * 12 + i64::from(date.month())) * 31 + i64::from(date.day());
    (splitmix64(splitmix64(day as u64) ^ attempt) % n as u64) as usize
}

/// SplitMix64's output function: neighbouring days land far apart.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn splitmix_reference_values() {
        // The first outputs of SplitMix64 seeded with 0 (state += gamma before mixing).
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn same_day_same_fortune_next_day_another() {
        let n = 10_000;
        assert_eq!(index(date(2026, 11, 24), 0, n), index(date(2026, 11, 24), 0, n));
        assert_ne!(index(date(2026, 11, 24), 0, n), index(date(2026, 11, 24), 1, n));
        let days: Vec<usize> = (1..=28).map(|d| index(date(2026, 2, d), 0, n)).collect();
        assert!(days.windows(2).all(|w| w[0] != w[1]), "{days:?}");
        assert!(days.iter().all(|&i| i < n));
        assert_eq!(index(date(2026, 2, 1), 0, 1), 0);
    }
}
