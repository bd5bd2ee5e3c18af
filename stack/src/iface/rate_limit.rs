//! A token bucket, for limiting how fast the stack sends ICMP errors (RFC 1812 section 4.3.2.8, RFC 1122
//! section 3.2.2: "a host SHOULD limit the rate"). Time is passed in.

use crate::time::Instant;

/// `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u32,
    burst: u32,
    tokens: u32,
    last_refill: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u32, burst: u32) -> Self {
        TokenBucket { rate_per_sec, burst, tokens: burst, last_refill: Instant::ZERO }
    }

    /// Takes a token if one is available at `now`.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.rate_per_sec == 0 {
            return;
        }
        let per_token_ns = 1_000_000_000 / u64::from(self.rate_per_sec);
        let elapsed = now.saturating_since(self.last_refill).as_nanos() as u64;
        let new_tokens = elapsed / per_token_ns.max(1);
        if new_tokens > 0 {
            self.tokens = (u64::from(self.tokens) + new_tokens).min(u64::from(self.burst)) as u32;
            self.last_refill += crate::time::Duration::from_nanos(new_tokens * per_token_ns);
        }
        if now < self.last_refill {
            // Time handed in went backwards (a new driver); restart the clock rather than stall.
            self.last_refill = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let mut b = TokenBucket::new(10, 3);
        let t0 = Instant::from_secs(100);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0), "burst used up");
        assert!(b.try_take(t0 + crate::time::Duration::from_millis(100)), "one token per 100 ms");
        assert!(!b.try_take(t0 + crate::time::Duration::from_millis(150)));
        assert!(b.try_take(t0 + crate::time::Duration::from_secs(10)));
    }
}
