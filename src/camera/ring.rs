//! A keyframe-aligned ring of timestamped items: what the pre-roll of a camera keeps,
//! written generically so that its trimming is tested without GStreamer.

use std::collections::VecDeque;

/// Safety net on the ring, whatever the stream does (a camera that never sends a keyframe).
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_MAX_SPAN_MS: i64 = 60_000;
/// A wall clock that steps back more than this empties the ring (its times are void).
const CLOCK_STEP_BACK_MS: i64 = 1_000;

struct Entry<T> {
    item: T,
    at_ms: i64,
    size: usize,
}

/// A keyframe-aligned ring of timestamped items. The front item is always a keyframe
/// (items before the first keyframe are useless to a clip and are not kept).
pub struct Ring<T> {
    pre_roll_ms: i64,
    max_bytes: usize,
    max_span_ms: i64,
    entries: VecDeque<Entry<T>>,
    /// Sequence number of `entries[0]`; an item's sequence number is its push count.
    head_seq: u64,
    /// Sequence numbers of the keyframes in `entries`, oldest first.
    keys: VecDeque<u64>,
    bytes: usize,
    newest_at_ms: Option<i64>,
}

impl<T: Clone> Ring<T> {
    pub fn new(pre_roll_ms: i64) -> Self {
        Self::with_limits(pre_roll_ms, DEFAULT_MAX_BYTES, DEFAULT_MAX_SPAN_MS)
    }

    pub fn with_limits(pre_roll_ms: i64, max_bytes: usize, max_span_ms: i64) -> Self {
        Ring {
            pre_roll_ms: pre_roll_ms.max(0),
            max_bytes,
            max_span_ms,
            entries: VecDeque::new(),
            head_seq: 0,
            keys: VecDeque::new(),
            bytes: 0,
            newest_at_ms: None,
        }
    }

    /// Adds the newest item and trims. `at_ms` is its wall-clock time; small steps back
    /// are clamped to the newest time, a big one empties the ring.
    pub fn push(&mut self, item: T, size: usize, key: bool, at_ms: i64) {
        let mut at_ms = at_ms;
        if let Some(newest) = self.newest_at_ms {
            if at_ms < newest - CLOCK_STEP_BACK_MS {
                self.clear();
            } else {
                at_ms = at_ms.max(newest);
            }
        }
        self.newest_at_ms = Some(at_ms);
        if self.entries.is_empty() && !key {
            return; // nothing to start a clip from before the first keyframe
        }
        let seq = self.head_seq + self.entries.len() as u64;
        if key {
            self.keys.push_back(seq);
        }
        self.entries.push_back(Entry { item, at_ms, size });
        self.bytes += size;
        self.trim(at_ms);
    }

    fn at_seq(&self, seq: u64) -> &Entry<T> {
        &self.entries[(seq - self.head_seq) as usize]
    }

    /// Drops everything before the keyframe with sequence number `seq`.
    fn drop_before(&mut self, seq: u64) {
        while self.head_seq < seq {
            let e = self.entries.pop_front().expect("entries up to a kept keyframe");
            self.bytes -= e.size;
            self.head_seq += 1;
        }
        while self.keys.front().is_some_and(|&k| k < seq) {
            self.keys.pop_front();
        }
    }

    fn trim(&mut self, newest_at_ms: i64) {
        let cutoff = newest_at_ms - self.pre_roll_ms;
        // The front keyframe is not needed once the next one is early enough itself.
        while self.keys.len() >= 2 && self.at_seq(self.keys[1]).at_ms <= cutoff {
            self.drop_before(self.keys[1]);
        }
        // Safety net: over the caps, drop whole GOPs from the front, and if one GOP alone
        // is over them, everything (the next keyframe starts afresh).
        while self.bytes > self.max_bytes || self.span_ms() > self.max_span_ms {
            if self.keys.len() >= 2 {
                self.drop_before(self.keys[1]);
            } else {
                let newest = self.newest_at_ms;
                self.clear();
                self.newest_at_ms = newest;
                break;
            }
        }
    }

    fn span_ms(&self) -> i64 {
        match (self.entries.front(), self.entries.back()) {
            (Some(a), Some(b)) => b.at_ms - a.at_ms,
            _ => 0,
        }
    }

    /// The items from the last keyframe at or before `at_ms` (or the first keyframe if
    /// none is that early) to the newest, with their times. Empty if there is no keyframe.
    pub fn start_from(&self, at_ms: i64) -> Vec<(T, i64)> {
        let Some(&first) = self.keys.front() else { return Vec::new() };
        let start = self.keys.iter().rev().copied().find(|&k| self.at_seq(k).at_ms <= at_ms).unwrap_or(first);
        let from = (start - self.head_seq) as usize;
        self.entries.range(from..).map(|e| (e.item.clone(), e.at_ms)).collect()
    }

    /// Sum of the sizes of the items held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Time of the oldest item held (always a keyframe).
    #[cfg(test)]
    fn oldest_at_ms(&self) -> Option<i64> {
        self.entries.front().map(|e| e.at_ms)
    }

    #[cfg(test)]
    fn newest_at_ms(&self) -> Option<i64> {
        self.newest_at_ms
    }

    pub fn clear(&mut self) {
        self.head_seq += self.entries.len() as u64;
        self.entries.clear();
        self.keys.clear();
        self.bytes = 0;
        self.newest_at_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `n` frames at `fps` with a keyframe every `gop` frames, `size` bytes each,
    /// starting at frame `from`; checks the invariants after each push.
    fn run(ring: &mut Ring<u64>, from: u64, n: u64, fps: i64, gop: u64, size: usize, check: impl Fn(&Ring<u64>)) {
        for i in from..from + n {
            ring.push(i, size, i % gop == 0, i as i64 * 1000 / fps);
            check(ring);
        }
    }

    #[test]
    fn trimming_keeps_a_keyframe_at_or_before_now_minus_pre_roll() {
        let pre_roll = 3000;
        let mut ring = Ring::new(pre_roll);
        // 25 fps, a keyframe every 2 s.
        run(&mut ring, 0, 10_000, 25, 50, 1000, |r| {
            let newest = r.newest_at_ms().unwrap();
            let oldest = r.oldest_at_ms().unwrap();
            if newest >= pre_roll {
                assert!(oldest <= newest - pre_roll, "oldest {oldest} newest {newest}");
                // and not more than a GOP earlier than needed
                assert!(oldest > newest - pre_roll - 2000, "oldest {oldest} newest {newest}");
            }
            let clip = r.start_from(newest - pre_roll);
            assert!(clip[0].0 % 50 == 0, "clip starts at a keyframe");
            assert!(clip[0].1 <= (newest - pre_roll).max(0));
        });
    }

    #[test]
    fn memory_stays_bounded_over_a_long_run() {
        // 3 s pre-roll, 1 s GOP at 30 fps, 20 KiB frames: at most (3 s + 1 GOP + 1 frame).
        let mut ring = Ring::new(3000);
        let bound = (4 * 30 + 1) * 20 * 1024;
        run(&mut ring, 0, 30 * 3600, 30, 30, 20 * 1024, |r| {
            assert!(r.bytes() <= bound, "{} > {bound}", r.bytes());
            assert_eq!(r.bytes(), r.len() * 20 * 1024);
        });
        // ...yet still the full pre-roll.
        assert!(ring.bytes() >= 3 * 30 * 20 * 1024);
    }

    #[test]
    fn the_hard_caps_hold_when_keyframes_never_come() {
        let mut ring = Ring::with_limits(3000, 1_000_000, 60_000);
        // One keyframe, then an hour of deltas.
        run(&mut ring, 0, 30 * 3600, 30, u64::MAX, 10_000, |r| assert!(r.bytes() <= 1_000_000));
        // By time: 10 s span cap with tiny frames.
        let mut ring = Ring::with_limits(3000, usize::MAX, 10_000);
        run(&mut ring, 0, 30 * 600, 30, 600, 10, |r| {
            if let (Some(a), Some(b)) = (r.oldest_at_ms(), r.newest_at_ms()) {
                assert!(b - a <= 10_000);
            }
        });
    }

    #[test]
    fn start_from_picks_the_last_keyframe_at_or_before() {
        let mut ring = Ring::new(100_000);
        // Items before the first keyframe are not kept.
        ring.push(100, 1, false, 0);
        assert!(ring.is_empty() && ring.start_from(0).is_empty());
        // 10 fps, keyframes at 1000, 2000, 3000 ms.
        for i in 10..40u64 {
            ring.push(i, 1, i % 10 == 0, i as i64 * 100);
        }
        assert_eq!(ring.start_from(2500)[0], (20, 2000));
        assert_eq!(ring.start_from(2000)[0], (20, 2000));
        assert_eq!(ring.start_from(1999)[0], (10, 1000));
        assert_eq!(ring.start_from(0)[0], (10, 1000), "nothing that early: the first keyframe");
        let all = ring.start_from(9999);
        assert_eq!(all[0], (30, 3000));
        assert_eq!(all.last().unwrap(), &(39, 3900));
        assert_eq!(all.len(), 10);
    }

    #[test]
    fn a_wall_clock_step_back_empties_the_ring() {
        let mut ring = Ring::new(3000);
        for i in 0..50u64 {
            ring.push(i, 1, i % 10 == 0, 1_000_000 + i as i64 * 100);
        }
        ring.push(50, 1, false, 10_000);
        assert!(ring.is_empty());
        ring.push(51, 1, true, 10_100);
        assert_eq!(ring.start_from(0), vec![(51, 10_100)]);
    }
}
