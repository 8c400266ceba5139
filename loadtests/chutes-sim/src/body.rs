//! Response bodies that pace, fragment, cut or stall a prepared byte string, and that carry
//! the in-flight guard so the request stays counted until its last byte or its drop.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::stats::InFlight;

/// What happens once the planned events have been sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The body ends normally.
    Complete,
    /// The connection is aborted (no chunked terminator, or short of `Content-Length`).
    Abort,
    /// Nothing more is sent until the client goes away or the simulator shuts down.
    Stall,
}

/// A prepared body and how to send it.
#[derive(Debug)]
pub(crate) struct Plan {
    /// All bytes the answer would have.
    pub body: Bytes,
    /// Offsets where each SSE event ends (for non-streaming bodies, cut points).
    pub ends: Vec<usize>,
    /// How many events to send before [`Plan::end`] applies.
    pub send_events: usize,
    /// What happens after them.
    pub end: End,
    /// When the first event is due, counted from request arrival.
    pub ttft: Duration,
    /// Gap between token events; `None` sends them as soon as the first is due.
    pub interval: Option<Duration>,
    /// Index of the last paced event; later events (usage, `[DONE]`) go out with it.
    pub last_paced: usize,
    /// Cut the bytes into frames of this size.
    pub fragment: Option<usize>,
}

/// Error the body yields to make hyper abort the connection.
fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "chutes-sim: simulated disconnect",
    )
}

/// A single prepared body sent at once; counts as completed when its bytes are handed over.
pub(crate) struct Once {
    bytes: Option<Bytes>,
    guard: InFlight,
}

impl Once {
    pub(crate) fn new(bytes: Bytes, guard: InFlight) -> Self {
        Self {
            bytes: Some(bytes),
            guard,
        }
    }
}

impl Stream for Once {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // hyper drops a body once `Content-Length` bytes went out without polling it to the
        // end, so completion is recorded when the last bytes are handed over.
        self.guard.complete();
        Poll::Ready(self.bytes.take().map(Ok))
    }
}

/// Sends a [`Plan`].
pub(crate) fn paced(
    plan: Plan,
    start: Instant,
    guard: InFlight,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let sender = Sender {
        plan,
        start,
        guard,
        shutdown,
        next_event: 0,
        released: 0,
        sent: 0,
        finished: false,
    };
    futures_util::stream::unfold(sender, Sender::next)
}

struct Sender {
    plan: Plan,
    start: Instant,
    guard: InFlight,
    shutdown: watch::Receiver<bool>,
    /// First event not yet released.
    next_event: usize,
    /// Bytes up to here are due.
    released: usize,
    /// Bytes up to here have been yielded.
    sent: usize,
    finished: bool,
}

impl Sender {
    fn due(&self, event: usize) -> Instant {
        let paced = event.min(self.plan.last_paced).saturating_sub(1);
        let gap = self.plan.interval.map_or(Duration::ZERO, |i| {
            i.saturating_mul(u32::try_from(paced).unwrap_or(u32::MAX))
        });
        self.start + self.plan.ttft + gap
    }

    async fn next(mut self) -> Option<(Result<Bytes, io::Error>, Self)> {
        if self.finished {
            return None;
        }
        if self.sent == self.released {
            if self.next_event < self.plan.send_events {
                let due = self.due(self.next_event);
                // Going through the timer even for a past deadline costs a timer tick per
                // event, which unpaced streams must not pay.
                if due > Instant::now() {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = shutdown(&mut self.shutdown) => return self.fail(),
                    }
                }
                let now = Instant::now();
                while self.next_event < self.plan.send_events && self.due(self.next_event) <= now {
                    self.released = self.plan.ends[self.next_event];
                    self.next_event += 1;
                }
            } else {
                match self.plan.end {
                    End::Complete => return None,
                    End::Abort => {
                        // Give hyper one turn to flush what was sent, or the abort would
                        // swallow it together with the rest.
                        tokio::task::yield_now().await;
                        return self.fail();
                    }
                    End::Stall => {
                        shutdown(&mut self.shutdown).await;
                        return self.fail();
                    }
                }
            }
        }
        let frame_end = match self.plan.fragment {
            Some(n) => (self.sent + n.max(1)).min(self.released),
            None => self.released,
        };
        let frame = self.plan.body.slice(self.sent..frame_end);
        self.sent = frame_end;
        let all_sent = self.next_event == self.plan.send_events && self.sent == self.released;
        if all_sent && self.plan.end == End::Complete {
            self.guard.complete();
        }
        Some((Ok(frame), self))
    }

    fn fail(mut self) -> Option<(Result<Bytes, io::Error>, Self)> {
        self.finished = true;
        Some((Err(aborted()), self))
    }
}

/// Resolves once the simulator shuts down (or its handle is gone).
pub(crate) async fn shutdown(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which is a shutdown too.
    let _ = rx.wait_for(|stop| *stop).await;
}
