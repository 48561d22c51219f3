//! Password checks slowed per client: a few attempts go at once, then each waits for a slot
//! that moves further away with every attempt since the client's last success (¼ s, ½ s,
//! 1 s … up to 16 s apart). Slots are reserved in turn, so parallel connections from one
//! client are slowed as much as a sequence. A slot more than [`MAX_WAIT`] away is refused
//! (429 and `Retry-After`) instead of held.
//!
//! A client is its IP address, an IPv6 one its /64 (a host there picks from 2^64
//! addresses). The map holds at most [`CAPACITY`] clients: those idle for
//! [`FORGET`] go first, then the longest idle.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts after which the next still goes at once: four in a row go unslowed, for a
/// client that retries or a person who mistypes.
const FREE: u32 = 3;
/// The wait after the first attempt past [`FREE`]; it doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between two attempts: a client gets a guess per 16 s (5,400 a day),
/// and a person who mistyped waits no longer than that.
const MAX_DELAY: Duration = Duration::from_secs(16);
/// A slot further away than this is refused rather than waited for.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// A client quiet this long starts afresh.
const FORGET: Duration = Duration::from_secs(600);
/// Clients remembered at most: about 40 bytes each.
const CAPACITY: usize = 16_384;

/// The wait after the `attempts`-th attempt since the last success.
pub(super) fn delay(attempts: u32) -> Duration {
    if attempts <= FREE {
        return Duration::ZERO;
    }
    let doublings = (attempts - FREE - 1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Client(u128);

impl Client {
    fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(u128::from(u32::from(v4))),
                None => Self(u128::from(v6) & !u128::from(u64::MAX)),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    attempts: u32,
    /// When the next attempt may start.
    next: Instant,
}

#[derive(Debug, Default)]
pub(super) struct Throttle {
    clients: Mutex<HashMap<Client, Entry>>,
}

impl Throttle {
    /// A slot for an attempt by `ip` at `now`: when it may start, or how long until the
    /// client may try again when that is too far away.
    pub(super) fn reserve(&self, ip: IpAddr, now: Instant) -> Result<Instant, Duration> {
        let client = Client::of(ip);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= CAPACITY && !clients.contains_key(&client) {
            evict(&mut clients, now);
        }
        let entry = clients.entry(client).or_insert(Entry {
            attempts: 0,
            next: now,
        });
        if now.saturating_duration_since(entry.next) > FORGET {
            *entry = Entry {
                attempts: 0,
                next: now,
            };
        }
        let start = entry.next.max(now);
        let wait = start - now;
        if wait > MAX_WAIT {
            return Err(wait - MAX_WAIT + Duration::from_secs(1));
        }
        entry.attempts = entry.attempts.saturating_add(1);
        entry.next = start + delay(entry.attempts);
        Ok(start)
    }

    /// `ip` gave good credentials: it starts afresh.
    pub(super) fn forgive(&self, ip: IpAddr) {
        self.clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&Client::of(ip));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// Room for one more: the forgotten go, else the one idle longest.
fn evict(clients: &mut HashMap<Client, Entry>, now: Instant) {
    clients.retain(|_, entry| now.saturating_duration_since(entry.next) <= FORGET);
    if clients.len() >= CAPACITY {
        let oldest = clients
            .iter()
            .min_by_key(|(_, entry)| entry.next)
            .map(|(client, _)| *client);
        if let Some(client) = oldest {
            clients.remove(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn the_delay_grows_to_its_ceiling() {
        let waits: Vec<u128> = (1..=12).map(|n| delay(n).as_millis()).collect();
        assert_eq!(
            waits,
            [0, 0, 0, 250, 500, 1000, 2000, 4000, 8000, 16000, 16000, 16000]
        );
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn parallel_attempts_queue_and_a_success_forgives() {
        let throttle = Throttle::default();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let now = Instant::now();
        // Eight at once: four go now, the rest get slots further and further away, as a
        // client making them one after another would wait.
        let starts: Vec<Duration> = (0..8)
            .map(|_| throttle.reserve(ip, now).expect("a slot") - now)
            .collect();
        let ms: Vec<u128> = starts.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 0, 0, 0, 250, 750, 1750, 3750]);
        let at = |ms| now + Duration::from_millis(ms);
        assert_eq!(throttle.reserve(ip, now), Ok(at(7750)));
        assert_eq!(throttle.reserve(ip, now), Ok(at(15_750)));
        // The next slot, 15.75 + 16 s away, is beyond the longest wait: refused, uncounted.
        assert_eq!(throttle.reserve(ip, now), Err(Duration::from_millis(2750)));
        assert_eq!(throttle.reserve(ip, now), Err(Duration::from_millis(2750)));
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(
            throttle.reserve(other, now),
            Ok(now),
            "another client is not slowed"
        );
        throttle.forgive(ip);
        assert_eq!(throttle.reserve(ip, now), Ok(now));
        // Quiet long enough, a client starts afresh.
        for _ in 0..6 {
            let _ = throttle.reserve(ip, now);
        }
        let later = now + Duration::from_secs(3600);
        assert_eq!(throttle.reserve(ip, later), Ok(later));
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_the_map_is_bounded() {
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::ffff:1234".parse().expect("ip");
        assert_eq!(Client::of(a), Client::of(b));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(
            Client::of(mapped),
            Client::of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        let throttle = Throttle::default();
        let now = Instant::now();
        for i in 0..(CAPACITY as u128 + 100) {
            let ip = IpAddr::V6(Ipv6Addr::from(i << 64));
            let _ = throttle.reserve(ip, now + Duration::from_micros(i as u64));
        }
        assert_eq!(throttle.len(), CAPACITY);
    }
}
