//! The attack set, each part on threads of its own until `stop`. A part that the server
//! sheds comes back, as an attacker would: closed sockets are reopened (at most
//! `PER_TICK` a tick), refused or answered requests are sent again a second later.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::http::{self, hung_up, Client, Ctx, Fail, Watch};
use super::ACCEPT;

/// Connections one part opens per tick at most.
const PER_TICK: usize = 250;
const TICK: Duration = Duration::from_millis(100);

/// What a part did, for the report.
pub struct Part {
    pub name: String,
    pub summary: String,
    pub json: Value,
}

#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub stop: &'a AtomicBool,
}

impl Target<'_> {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }
}

/// Sockets held open by a part: opened, closed by the server, how many at most at once.
#[derive(Default)]
struct Held {
    opened: u64,
    closed_by_server: u64,
    connect_failed: u64,
    most: usize,
    last_error: Option<String>,
}

impl Held {
    fn json(&self) -> Value {
        json!({
            "opened": self.opened,
            "closed_by_server": self.closed_by_server,
            "connect_failed": self.connect_failed,
            "held_at_most": self.most,
            "last_connect_error": self.last_error,
        })
    }

    fn summary(&self, wanted: usize) -> String {
        let mut text = format!(
            "{} of {wanted} held at most, {} closed by the server, {} connects failed",
            self.most, self.closed_by_server, self.connect_failed
        );
        if let Some(e) = &self.last_error {
            text.push_str(&format!(" (last: {e})"));
        }
        text
    }
}

/// Sockets that each sent `first` and then only `trickle` (if any) every `every`; never
/// read. Slowloris (half a request, a byte now and then) and readers that stopped reading
/// (a whole blob GET).
fn hold(
    target: Target<'_>,
    name: &str,
    wanted: usize,
    first: &[u8],
    trickle: Option<(&[u8], Duration)>,
) -> Part {
    let mut held = Held::default();
    let mut sockets: Vec<TcpStream> = Vec::with_capacity(wanted);
    let mut trickled = Instant::now();
    while target.running() {
        let mut tried = 0;
        while sockets.len() < wanted && tried < PER_TICK && target.running() {
            tried += 1;
            match TcpStream::connect_timeout(&target.addr, Duration::from_secs(1)) {
                Ok(mut socket) => {
                    held.opened += 1;
                    if socket.write_all(first).is_ok() && socket.set_nonblocking(true).is_ok() {
                        sockets.push(socket);
                    } else {
                        held.closed_by_server += 1;
                    }
                }
                Err(e) => {
                    held.connect_failed += 1;
                    held.last_error = Some(e.kind().to_string());
                    // The backlog is full or the limit is hit: try again next tick.
                    break;
                }
            }
        }
        held.most = held.most.max(sockets.len());
        let mut gone = hung_up(sockets.iter()).into_iter();
        let before = sockets.len();
        sockets.retain(|_| !gone.next().unwrap_or(false));
        held.closed_by_server += (before - sockets.len()) as u64;
        if let Some((bytes, every)) = trickle {
            if trickled.elapsed() >= every {
                trickled = Instant::now();
                let before = sockets.len();
                sockets.retain_mut(|s| !matches!(s.write(bytes), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock));
                held.closed_by_server += (before - sockets.len()) as u64;
            }
        }
        std::thread::sleep(TICK);
    }
    let count = sockets.len();
    drop(sockets);
    Part {
        name: name.to_owned(),
        summary: held.summary(wanted),
        json: {
            let mut v = held.json();
            v["wanted"] = json!(wanted);
            v["held_at_end"] = json!(count);
            v
        },
    }
}

pub fn slowloris(target: Target<'_>, wanted: usize, every: Duration) -> Part {
    let host = target.addr.to_string();
    let first = format!("GET /v2/ HTTP/1.1\r\nHost: {host}\r\nUser-Agent: slowloris\r\nX-Pad: ");
    let mut part = hold(
        target,
        "slowloris",
        wanted,
        first.as_bytes(),
        Some((b"a", every)),
    );
    part.summary = format!(
        "{} (a header byte every {} s)",
        part.summary,
        every.as_secs()
    );
    part
}

pub fn stalled_readers(target: Target<'_>, wanted: usize, blob: &str) -> Part {
    let host = target.addr.to_string();
    let first = http::request(&host, &format!("/v2/mock/blobs/{blob}"), &[]);
    hold(target, "stalled readers", wanted, &first, None)
}

/// Requests sent again and again: one outstanding per path, each answer (or refusal)
/// counted by status; with `hang_up`, the client leaves an unanswered request after that
/// long, as a client that gives up does, and asks again.
pub fn flood(target: Target<'_>, name: &str, paths: &[String], hang_up: Option<Duration>) -> Part {
    struct Slot {
        watch: Option<Watch>,
        next: Instant,
    }
    let host = target.addr.to_string();
    let mut slots: Vec<Slot> = paths
        .iter()
        .map(|_| Slot {
            watch: None,
            next: Instant::now(),
        })
        .collect();
    let (mut sent, mut left, mut closed, mut connect_failed) = (0u64, 0u64, 0u64, 0u64);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut messages: BTreeMap<u16, String> = BTreeMap::new();
    let mut slowest_answer = Duration::ZERO;
    let mut first_answers: Vec<Duration> = Vec::new();
    while target.running() {
        let mut opened = 0;
        for (slot, path) in slots.iter_mut().zip(paths) {
            let now = Instant::now();
            if slot.watch.is_none() && now >= slot.next && opened < PER_TICK {
                opened += 1;
                match Watch::send(target.addr, &http::request(&host, path, &[ACCEPT])) {
                    Ok(watch) => {
                        sent += 1;
                        slot.watch = Some(watch);
                    }
                    Err(_) => {
                        connect_failed += 1;
                        slot.next = now + Duration::from_secs(1);
                    }
                }
            }
            let Some(watch) = &mut slot.watch else {
                continue;
            };
            watch.pump();
            if let Some(status) = watch.status {
                if !watch.complete() && watch.since.elapsed() < Duration::from_secs(5) {
                    continue;
                }
                let took = watch.since.elapsed();
                slowest_answer = slowest_answer.max(took);
                if first_answers.len() < paths.len() {
                    first_answers.push(took);
                }
                *statuses.entry(status).or_default() += 1;
                messages.entry(status).or_insert_with(|| watch.message());
                slot.watch = None;
                slot.next = now + Duration::from_secs(1);
            } else if watch.eof {
                closed += 1;
                slot.watch = None;
                slot.next = now + Duration::from_secs(1);
            } else if hang_up.is_some_and(|h| watch.since.elapsed() >= h) {
                left += 1;
                slot.watch = None;
                slot.next = now + Duration::from_millis(200);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let waiting: Vec<Duration> = slots
        .iter()
        .filter_map(|s| s.watch.as_ref().map(|w| w.since.elapsed()))
        .collect();
    let oldest = waiting.iter().max().copied().unwrap_or_default();
    let answered: u64 = statuses.values().sum();
    let mut summary = format!(
        "{} tags, {sent} requests, {answered} answered{}, slowest answer {:.1} s, {} unanswered at the end (oldest {:.0} s)",
        paths.len(),
        if statuses.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                statuses
                    .iter()
                    .map(|(s, n)| format!("{n}× {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        slowest_answer.as_secs_f64(),
        waiting.len(),
        oldest.as_secs_f64()
    );
    if hang_up.is_some() {
        summary.push_str(&format!(", {left} given up on"));
    }
    if closed + connect_failed > 0 {
        summary.push_str(&format!(
            ", {closed} closed unanswered, {connect_failed} connects failed"
        ));
    }
    if let Some((status, message)) = messages.iter().find(|(s, _)| **s >= 400) {
        summary.push_str(&format!("; {status}: {message}"));
    }
    Part {
        name: name.to_owned(),
        summary,
        json: json!({
            "tags": paths.len(),
            "sent": sent,
            "statuses": statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
            "messages": messages.iter().map(|(s, m)| (s.to_string(), json!(m))).collect::<serde_json::Map<_, _>>(),
            "slowest_answer_s": slowest_answer.as_secs_f64(),
            "unanswered_at_end": waiting.len(),
            "oldest_unanswered_s": oldest.as_secs_f64(),
            "given_up": left,
            "closed_unanswered": closed,
            "connect_failed": connect_failed,
        }),
    }
}

/// Blob streams under `faults/slow-RATE/`, read as they come. A server that refuses the
/// rate is expected to name its floor (a `slow-…` or a size in the message), which is
/// then used.
pub fn slow_streams(target: Target<'_>, wanted: usize, rate: &str, blob: &str) -> Part {
    let host = target.addr.to_string();
    let mut rate = rate.to_owned();
    let mut refusal: Option<String> = None;
    let mut given_up: Option<String> = None;
    let mut streams: Vec<Watch> = Vec::new();
    let mut held = Held::default();
    let (mut bytes, mut ended) = (0u64, 0u64);
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    while target.running() {
        let path = format!("/v2/faults/slow-{rate}/mock/blobs/{blob}");
        let mut tried = 0;
        while given_up.is_none() && streams.len() < wanted && tried < PER_TICK {
            tried += 1;
            match Watch::send(target.addr, &http::request(&host, &path, &[])) {
                Ok(watch) => {
                    held.opened += 1;
                    streams.push(watch);
                }
                Err(e) => {
                    held.connect_failed += 1;
                    held.last_error = Some(e.kind().to_string());
                    break;
                }
            }
        }
        held.most = held.most.max(streams.len());
        let mut refused_with = None;
        streams.retain_mut(|watch| {
            bytes += watch.pump();
            match watch.status {
                Some(status) if status >= 400 => {
                    if !watch.complete() {
                        return true;
                    }
                    *statuses.entry(status).or_default() += 1;
                    refused_with.get_or_insert_with(|| (status, watch.message()));
                    false
                }
                Some(status) if watch.eof => {
                    *statuses.entry(status).or_default() += 1;
                    ended += 1;
                    false
                }
                None if watch.eof => {
                    held.closed_by_server += 1;
                    false
                }
                _ => true,
            }
        });
        if let Some((status, message)) = refused_with {
            if refusal.is_none() {
                refusal = Some(format!("slow-{rate} refused ({status}): {message}"));
            }
            match floor_named(&message, &rate) {
                Some(floor) if !streams.is_empty() || floor != rate => rate = floor,
                _ => given_up = Some(message),
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let open = streams.len();
    drop(streams);
    let mut summary = format!(
        "slow-{rate}: {}, {bytes} bytes received, {ended} ended",
        held.summary(wanted)
    );
    if let Some(note) = &refusal {
        summary.push_str(&format!("; {note}"));
    }
    if given_up.is_some() {
        summary.push_str("; no floor named: part stopped");
    }
    Part {
        name: "slow streams".into(),
        summary,
        json: {
            let mut v = held.json();
            v["wanted"] = json!(wanted);
            v["rate"] = json!(rate);
            v["bytes"] = json!(bytes);
            v["ended"] = json!(ended);
            v["open_at_end"] = json!(open);
            v["refusal"] = json!(refusal);
            v["statuses"] = json!(statuses
                .iter()
                .map(|(s, n)| (s.to_string(), json!(n)))
                .collect::<serde_json::Map<_, _>>());
            v
        },
    }
}

/// The floor a refusal names: a `slow-RATE` other than ours, else the first size
/// (`1kb`, `512B`).
fn floor_named(message: &str, ours: &str) -> Option<String> {
    let words: Vec<String> = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_ascii_lowercase)
        .collect();
    if let Some(rate) = words
        .iter()
        .filter_map(|w| w.strip_prefix("slow-"))
        .find(|r| *r != ours && !r.is_empty())
    {
        return Some(rate.to_owned());
    }
    words
        .iter()
        .find(|w| {
            let digits = w.trim_start_matches(|c: char| c.is_ascii_digit());
            digits.len() < w.len()
                && ["b", "kb", "kib", "k", "mb", "mib", "m"].contains(&digits)
                && w.as_str() != ours
        })
        .cloned()
}

/// One `tree=` bomb, again and again until `stop`: the manifest, then a 1-byte Range GET
/// of its layer.
pub struct Bombed {
    pub manifests: BTreeMap<String, u64>,
    pub ranges: BTreeMap<String, u64>,
    pub slowest_manifest: Duration,
    pub message: Option<String>,
}

pub fn tree_bomb(target: Target<'_>, tag: &str) -> Bombed {
    let mut bombed = Bombed {
        manifests: BTreeMap::new(),
        ranges: BTreeMap::new(),
        slowest_manifest: Duration::ZERO,
        message: None,
    };
    let mut client = Client::new(target.addr);
    let outcome = |r: &Result<http::Response, Fail>| match r {
        Ok(r) => r.status.to_string(),
        Err(e) => e.to_string(),
    };
    while target.running() {
        let ctx = Ctx {
            deadline: Instant::now() + Duration::from_secs(3600),
            stop: target.stop,
            counter: None,
        };
        let asked = Instant::now();
        let got = client.get(
            &format!("/v2/mock/manifests/{tag}"),
            &[ACCEPT],
            1 << 20,
            &ctx,
        );
        if matches!(got, Err(Fail::Stopped)) {
            break;
        }
        bombed.slowest_manifest = bombed.slowest_manifest.max(asked.elapsed());
        *bombed.manifests.entry(outcome(&got)).or_default() += 1;
        let layer = match &got {
            Ok(r) if r.status == 200 => super::layers(&r.body).into_iter().next(),
            Ok(r) => {
                bombed
                    .message
                    .get_or_insert_with(|| String::from_utf8_lossy(&r.body).trim().to_owned());
                None
            }
            Err(_) => None,
        };
        if let Some((digest, _)) = layer {
            let got = client.get(
                &format!("/v2/mock/blobs/{digest}"),
                &[("Range", "bytes=0-0")],
                0,
                &ctx,
            );
            if matches!(got, Err(Fail::Stopped)) {
                break;
            }
            *bombed.ranges.entry(outcome(&got)).or_default() += 1;
        }
        let pause = Instant::now();
        while target.running() && pause.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(TICK);
        }
    }
    bombed
}

pub fn tree_bombs_part(tags: &[String], all: Vec<Bombed>) -> Part {
    let mut manifests: BTreeMap<String, u64> = BTreeMap::new();
    let mut ranges: BTreeMap<String, u64> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    let mut message = None;
    for b in all {
        for (k, n) in b.manifests {
            *manifests.entry(k).or_default() += n;
        }
        for (k, n) in b.ranges {
            *ranges.entry(k).or_default() += n;
        }
        slowest = slowest.max(b.slowest_manifest);
        message = message.or(b.message);
    }
    let list = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, n)| format!("{n}× {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut summary = format!(
        "{} tags ({}…): manifests {}; 1-byte ranges {}; slowest manifest {:.1} s",
        tags.len(),
        tags.first().map_or("", String::as_str),
        or_none(list(&manifests)),
        or_none(list(&ranges)),
        slowest.as_secs_f64()
    );
    if let Some(m) = &message {
        summary.push_str(&format!("; {m}"));
    }
    Part {
        name: "tree bombs".into(),
        summary,
        json: json!({
            "tags": tags,
            "manifests": manifests,
            "ranges": ranges,
            "slowest_manifest_s": slowest.as_secs_f64(),
            "message": message,
        }),
    }
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        "none answered".into()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::floor_named;

    #[test]
    fn a_refusal_names_its_floor() {
        assert_eq!(
            floor_named(
                "fault `slow-1b` is below the floor: use slow-1kb or more",
                "1b"
            ),
            Some("1kb".into())
        );
        assert_eq!(
            floor_named("the smallest rate is 512B a second", "1b"),
            Some("512b".into())
        );
        assert_eq!(floor_named("no", "1b"), None);
    }
}
