//! The hand-off between the caller's `write()` and the worker thread that
//! decompresses and unpacks: a bounded channel of owned chunks, read on the
//! worker side as a zero-copy `BufRead`.
//!
//! Two modes: *pipelined* (the caller returns as soon as the chunk is queued, so
//! hashing the compressed bytes overlaps with inflating and untarring) and
//! *inline* (the caller waits until the worker has used the chunk up, so one
//! sink never keeps more than one core busy).

use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;

use crate::error::{into_io, Error};

/// `Read::read` for a reader whose real interface is `BufRead`: copies out of
/// the current buffer, never past it.
pub fn read_buffered<R: BufRead + ?Sized>(reader: &mut R, out: &mut [u8]) -> io::Result<usize> {
    let available = reader.fill_buf()?;
    let n = available.len().min(out.len());
    out[..n].copy_from_slice(&available[..n]);
    reader.consume(n);
    Ok(n)
}

/// A chunk of a stream; shared so one buffer can go to several consumers.
pub type Chunk = Arc<Vec<u8>>;

/// Where a consumer returns buffers it was the last to hold, so the producer
/// reuses them instead of allocating (and page-faulting in) fresh ones.
#[derive(Clone)]
pub struct Recycler(SyncSender<Vec<u8>>);

impl Recycler {
    pub fn new(capacity: usize) -> (Recycler, Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        (Recycler(tx), rx)
    }

    /// Gives the buffer back if no one else holds the chunk (else does nothing).
    pub fn give_back(&self, chunk: Chunk) {
        if let Ok(buf) = Arc::try_unwrap(chunk) {
            let _ = self.0.try_send(buf);
        }
    }
}

/// The caller's end.
pub struct Feed {
    tx: Option<SyncSender<Chunk>>,
    consumed: Option<Receiver<()>>,
    cancelled: Arc<AtomicBool>,
}

/// The worker's end.
pub struct ChunkReader {
    rx: Receiver<Chunk>,
    buf: Chunk,
    pos: usize,
    holding_chunk: bool,
    consumed: Option<SyncSender<()>>,
    cancelled: Arc<AtomicBool>,
    recycler: Option<Recycler>,
}

pub fn channel(depth: usize, inline: bool) -> (Feed, ChunkReader) {
    let (tx, rx) = mpsc::sync_channel(depth.max(1));
    let (ack_tx, ack_rx) = if inline {
        let (t, r) = mpsc::sync_channel(1);
        (Some(t), Some(r))
    } else {
        (None, None)
    };
    let cancelled = Arc::new(AtomicBool::new(false));
    (
        Feed {
            tx: Some(tx),
            consumed: ack_rx,
            cancelled: cancelled.clone(),
        },
        ChunkReader {
            rx,
            buf: Arc::new(Vec::new()),
            pos: 0,
            holding_chunk: false,
            consumed: ack_tx,
            cancelled,
            recycler: None,
        },
    )
}

impl Feed {
    /// Hands a chunk to the worker. Returns false when the worker has stopped
    /// (it failed, or it is done); the caller then joins it for the reason.
    pub fn send(&self, chunk: Chunk) -> bool {
        let Some(tx) = &self.tx else { return false };
        if tx.send(chunk).is_err() {
            return false;
        }
        match &self.consumed {
            Some(ack) => ack.recv().is_ok(),
            None => true,
        }
    }

    /// End of input: the worker sees EOF once it has drained the queue.
    pub fn close(&mut self) {
        self.tx = None;
    }

    /// Stop the worker: it sees an error instead of EOF, so it cannot mistake
    /// an abandoned stream for a complete one.
    pub fn cancel(&mut self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.tx = None;
    }
}

impl ChunkReader {
    /// Used-up chunks go back to the producer through `recycler`.
    pub fn recycle_into(&mut self, recycler: Recycler) {
        self.recycler = Some(recycler);
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        if self.holding_chunk {
            self.holding_chunk = false;
            if let Some(ack) = &self.consumed {
                // The caller may already be gone (abort); nothing to tell then.
                let _ = ack.send(());
            }
        }
        match self.rx.recv() {
            Ok(chunk) => {
                let used = std::mem::replace(&mut self.buf, chunk);
                if let Some(recycler) = &self.recycler {
                    recycler.give_back(used);
                }
                self.pos = 0;
                self.holding_chunk = true;
                Ok(true)
            }
            Err(_) if self.cancelled.load(Ordering::SeqCst) => {
                Err(into_io(Error::Closed("the write was aborted")))
            }
            Err(_) => Ok(false),
        }
    }

    /// Returns at least `n` buffered bytes (fewer only at end of stream), for
    /// sniffing magic numbers that may straddle two chunks.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.buf.len() - self.pos < n {
            let rest = self.buf[self.pos..].to_vec();
            if !self.next_chunk()? {
                self.buf = Arc::new(rest);
                self.pos = 0;
                break;
            }
            let mut merged = rest;
            merged.extend_from_slice(&self.buf);
            self.buf = Arc::new(merged);
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..])
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        read_buffered(self, out)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.buf.len() {
            if !self.next_chunk()? {
                return Ok(&[]);
            }
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.buf.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn delivers_all_bytes_in_order_and_peeks_across_chunks() {
        let (mut feed, mut reader) = channel(2, false);
        let worker = thread::spawn(move || {
            let head = reader.peek(5).unwrap().to_vec();
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            (head, all)
        });
        for part in [b"ab".to_vec(), b"cd".to_vec(), b"efgh".to_vec()] {
            assert!(feed.send(Arc::new(part)));
        }
        feed.close();
        let (head, all) = worker.join().unwrap();
        assert_eq!(&head[..5], b"abcde");
        assert_eq!(all, b"abcdefgh");
    }

    #[test]
    fn inline_mode_waits_for_the_worker() {
        let (mut feed, mut reader) = channel(1, true);
        let worker = thread::spawn(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            all
        });
        for _ in 0..10 {
            assert!(feed.send(Arc::new(vec![7; 1000])));
        }
        feed.close();
        assert_eq!(worker.join().unwrap().len(), 10_000);
    }

    #[test]
    fn cancel_is_an_error_not_eof() {
        let (mut feed, mut reader) = channel(1, false);
        feed.send(Arc::new(b"x".to_vec()));
        feed.cancel();
        let mut all = Vec::new();
        assert!(reader.read_to_end(&mut all).is_err());
    }
}
