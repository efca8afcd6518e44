//! A simulated disk: a write becomes durable `disk_latency` after it is made, and a crash
//! loses every write that was not durable yet.

use std::collections::VecDeque;

use liquid_core::Time;
use liquid_core::membership::Persisted;

/// One node's disk. Each write replaces the previous one (the core persists whole images).
#[derive(Default)]
pub(crate) struct Disk {
    /// The last durable image.
    durable: Option<Persisted>,
    /// Writes not yet durable: (durable at, data), in write order.
    pending: VecDeque<(Time, Persisted)>,
}

impl Disk {
    /// Writes `data` at `now`; it is durable from `durable_at` on.
    pub fn write(&mut self, now: Time, durable_at: Time, data: Persisted) {
        self.settle(now);
        self.pending.push_back((durable_at, data));
    }

    /// The process died at `now`: what was not durable is lost.
    pub fn crash(&mut self, now: Time) {
        self.settle(now);
        self.pending.clear();
    }

    /// The durable image (call after [`Disk::crash`]).
    pub fn durable(&self) -> Option<&Persisted> {
        self.durable.as_ref()
    }

    fn settle(&mut self, now: Time) {
        while self.pending.front().is_some_and(|(at, _)| *at <= now) {
            if let Some((_, p)) = self.pending.pop_front() {
                self.durable = Some(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(incarnation: u32) -> Persisted {
        Persisted { incarnation, peer_addrs: vec![] }
    }

    #[test]
    fn a_crash_loses_writes_that_were_not_yet_durable() {
        let mut disk = Disk::default();
        disk.write(Time(0), Time(2), image(1));
        disk.write(Time(5), Time(7), image(2));
        disk.write(Time(6), Time(8), image(3));
        disk.crash(Time(7));
        assert_eq!(disk.durable(), Some(&image(2)));
        disk.crash(Time(100));
        assert_eq!(disk.durable(), Some(&image(2)), "lost writes never come back");
    }
}
