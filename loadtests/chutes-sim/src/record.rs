//! The last N requests, so tests can check what the gateway actually sent upstream.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::Value;

/// One request as received.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path without the query, e.g. `/v1/chat/completions`.
    pub path: String,
    /// The `Authorization` header verbatim, if any.
    pub authorization: Option<String>,
    /// The JSON body; `null` for an empty body, a string holding the raw text if it is not JSON.
    pub body: Value,
}

/// A bounded ring of [`RecordedRequest`]s (or of other records, such as webhook calls). The
/// mutex is held only to push or copy, never across an await.
#[derive(Debug)]
pub(crate) struct Recorder<T = RecordedRequest> {
    ring: Mutex<VecDeque<T>>,
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Self {
            ring: Mutex::new(VecDeque::new()),
        }
    }
}

impl<T: Clone> Recorder<T> {
    /// Keeps `request`, dropping the oldest entries beyond `capacity`.
    pub(crate) fn push(&self, capacity: usize, request: T) {
        if capacity == 0 {
            return;
        }
        let mut ring = self.lock();
        while ring.len() >= capacity {
            ring.pop_front();
        }
        ring.push_back(request);
    }

    /// Drops the oldest entries beyond `capacity` (after a config change shrank it).
    pub(crate) fn truncate(&self, capacity: usize) {
        let mut ring = self.lock();
        while ring.len() > capacity {
            ring.pop_front();
        }
    }

    /// Oldest first.
    pub(crate) fn snapshot(&self) -> Vec<T> {
        self.lock().iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        // A panic while holding the lock cannot leave the ring inconsistent (push/pop are
        // atomic from its point of view), so a poisoned lock is still usable.
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(i: u64) -> RecordedRequest {
        RecordedRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            authorization: None,
            body: Value::from(i),
        }
    }

    #[test]
    fn keeps_the_latest_up_to_capacity() {
        let r = Recorder::default();
        for i in 0..5 {
            r.push(3, req(i));
        }
        let bodies: Vec<Value> = r.snapshot().into_iter().map(|x| x.body).collect();
        assert_eq!(bodies, [Value::from(2), Value::from(3), Value::from(4)]);
        r.truncate(1);
        assert_eq!(r.snapshot().len(), 1);
        r.push(0, req(9));
        assert_eq!(r.snapshot()[0].body, Value::from(4));
    }
}
