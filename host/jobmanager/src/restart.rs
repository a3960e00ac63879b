//! Restart strategies, as Flink names them: whether a failed job restarts, and after
//! how long. Pure: the failure history and the clock are passed in.

use std::str::FromStr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// When a failed job is restarted from its latest checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RestartStrategy {
    /// A failure is final.
    None,
    /// Up to `attempts` restarts, each after `delay`.
    FixedDelay {
        /// Restarts allowed over the job's life.
        attempts: u32,
        /// Wait before each.
        delay: Duration,
    },
    /// Delays doubling from `initial` up to `max`, without limit on the count; a job
    /// that ran for `max` since its last failure starts again from `initial`.
    ExponentialBackoff {
        /// First delay.
        initial: Duration,
        /// Largest delay.
        max: Duration,
    },
    /// Restart after `delay` unless more than `failures` happened within `interval`.
    FailureRate {
        /// Failures tolerated per interval.
        failures: u32,
        /// The sliding window.
        interval: Duration,
        /// Wait before each restart.
        delay: Duration,
    },
}

impl Default for RestartStrategy {
    fn default() -> Self {
        RestartStrategy::FixedDelay { attempts: 3, delay: Duration::from_secs(1) }
    }
}

impl RestartStrategy {
    /// The longest wait before a restart (what a transactional sink's transactions
    /// must outlive).
    pub fn longest_delay(&self) -> Duration {
        match *self {
            RestartStrategy::None => Duration::ZERO,
            RestartStrategy::FixedDelay { delay, .. } | RestartStrategy::FailureRate { delay, .. } => delay,
            RestartStrategy::ExponentialBackoff { max, .. } => max,
        }
    }

    /// Given every failure so far (oldest first, the latest included), how long to
    /// wait before restarting, or `None` to give up.
    pub fn next_delay(&self, failures: &[Instant], now: Instant) -> Option<Duration> {
        let count = failures.len() as u32;
        match *self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => (count <= attempts).then_some(delay),
            RestartStrategy::ExponentialBackoff { initial, max } => {
                // Failures since the last quiet period of `max` count towards the exponent.
                let mut streak = 0u32;
                let mut later = now;
                for &f in failures.iter().rev() {
                    if later.saturating_duration_since(f) > max && streak > 0 {
                        break;
                    }
                    streak += 1;
                    later = f;
                }
                let factor = 2u32.saturating_pow(streak.saturating_sub(1).min(30));
                Some(initial.saturating_mul(factor).min(max))
            }
            RestartStrategy::FailureRate { failures: allowed, interval, delay } => {
                let recent = failures.iter().filter(|&&f| now.saturating_duration_since(f) <= interval).count() as u32;
                (recent <= allowed).then_some(delay)
            }
        }
    }
}

impl FromStr for RestartStrategy {
    type Err = String;

    /// `none`, `fixed-delay:ATTEMPTS:DELAY_MS`, `exponential:INITIAL_MS:MAX_MS` or
    /// `failure-rate:FAILURES:INTERVAL_MS:DELAY_MS`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let num = |i: usize| -> Result<u64, String> {
            parts.get(i).ok_or_else(|| format!("{s:?}: missing field {i}"))?.parse::<u64>().map_err(|e| format!("{s:?}: field {i}: {e}"))
        };
        let ms = |i: usize| num(i).map(Duration::from_millis);
        let count = |i: usize| num(i).and_then(|n| u32::try_from(n).map_err(|e| format!("{s:?}: field {i}: {e}")));
        let (strategy, fields) = match parts[0] {
            "none" => (RestartStrategy::None, 1),
            "fixed-delay" => (RestartStrategy::FixedDelay { attempts: count(1)?, delay: ms(2)? }, 3),
            "exponential" => (RestartStrategy::ExponentialBackoff { initial: ms(1)?, max: ms(2)? }, 3),
            "failure-rate" => (RestartStrategy::FailureRate { failures: count(1)?, interval: ms(2)?, delay: ms(3)? }, 4),
            other => {
                return Err(format!(
                    "unknown restart strategy {other:?}: use none, fixed-delay:ATTEMPTS:DELAY_MS, exponential:INITIAL_MS:MAX_MS or failure-rate:FAILURES:INTERVAL_MS:DELAY_MS"
                ));
            }
        };
        if parts.len() != fields {
            return Err(format!("{s:?}: expected {fields} fields separated by ':'"));
        }
        Ok(strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_decide_as_flink_does() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let fixed: RestartStrategy = "fixed-delay:2:100".parse().expect("parses");
        assert_eq!(fixed.next_delay(&[s(0)], s(0)), Some(Duration::from_millis(100)));
        assert_eq!(fixed.next_delay(&[s(0), s(1)], s(1)), Some(Duration::from_millis(100)));
        assert_eq!(fixed.next_delay(&[s(0), s(1), s(2)], s(2)), None);

        let exp: RestartStrategy = "exponential:100:1000".parse().expect("parses");
        assert_eq!(exp.next_delay(&[s(0)], s(0)), Some(Duration::from_millis(100)));
        assert_eq!(exp.next_delay(&[s(0), s(0)], s(0)), Some(Duration::from_millis(200)));
        assert_eq!(exp.next_delay(&[s(0); 10], s(0)), Some(Duration::from_millis(1000)));
        assert_eq!(exp.next_delay(&[s(0), s(0), s(5)], s(5)), Some(Duration::from_millis(100)), "a quiet spell resets the backoff");

        let rate: RestartStrategy = "failure-rate:2:10000:50".parse().expect("parses");
        assert_eq!(rate.next_delay(&[s(0), s(1)], s(1)), Some(Duration::from_millis(50)));
        assert_eq!(rate.next_delay(&[s(0), s(1), s(2)], s(2)), None);
        assert_eq!(rate.next_delay(&[s(0), s(1), s(20)], s(20)), Some(Duration::from_millis(50)));

        assert_eq!("none".parse::<RestartStrategy>().expect("parses").next_delay(&[s(0)], s(0)), None);
        assert!("fixed-delay:x:1".parse::<RestartStrategy>().is_err());
        assert!("fixed-delay:1".parse::<RestartStrategy>().is_err());
        assert!("sometimes".parse::<RestartStrategy>().is_err());
    }
}
