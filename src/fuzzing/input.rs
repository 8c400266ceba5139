//! Reading structure (chunk sizes, choices) off the front of a fuzz input.

/// A cursor over fuzz bytes: the targets take their choices from the front, and the rest is
/// the payload. Reading past the end yields zeros, so every input is usable.
pub(super) struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, or 0 once the input is used up.
    pub(super) fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// Up to `n` next bytes.
    pub(super) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// Everything not read yet.
    pub(super) fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Chunk sizes for splitting a payload: a count byte, then that many sizes (0 included: an
/// empty push must change nothing).
pub(super) fn chunk_sizes(input: &mut Input<'_>) -> Vec<usize> {
    let n = usize::from(input.byte() % 8) + 1;
    (0..n).map(|_| usize::from(input.byte() % 64)).collect()
}

/// `payload` cut into pieces whose sizes cycle through `sizes`; a zero size yields an empty
/// piece and then a piece of one byte, so the split always makes progress.
pub(super) fn split<'a>(payload: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < payload.len() {
        let mut n = sizes[i % sizes.len()];
        i += 1;
        if n == 0 {
            out.push(&payload[at..at]);
            n = 1;
        }
        let end = (at + n).min(payload.len());
        out.push(&payload[at..end]);
        at = end;
    }
    out
}
