//! `--daily`: one fortune for everyone all day, a quote of the day derived
//! from the date alone (in the service's time zone: `TZ`, else
//! `/etc/localtime`), so restarts and `Accept=yes` processes agree.

use jiff::civil::Date;

use super::select::Draw;

/// Today in the local time zone.
pub fn today() -> Date {
    jiff::ZonedDateTime::now().date()
}

/// The day's draws for a pick ([`Draw`]); `attempt` > 0 gives the day's
/// fallbacks when its entry cannot be served. Fixed arithmetic, not a
/// library RNG, so that it never changes between builds; a collection
/// without a choice draws once: the position of the day's fortune.
#[derive(Debug, Clone)]
pub struct Days {
    state: u64,
}

impl Days {
    pub fn new(date: Date, attempt: u64) -> Days {
        let day = (i64::from(date.year()) * 12 + i64::from(date.month())) * 31 + i64::from(date.day());
        Days {
            state: splitmix64(splitmix64(day as u64) ^ attempt),
        }
    }

    fn next(&mut self) -> u64 {
        let value = self.state;
        self.state = splitmix64(value);
        value
    }
}

impl Draw for Days {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn coin(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
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

    fn index(date: Date, attempt: u64, n: usize) -> usize {
        Days::new(date, attempt).below(n)
    }

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
