//! Pacing of a request body on its way into multer.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;

/// Hands multer one piece of the body per poll. multer moves everything the stream has
/// ready into its buffer before it parses, so while a fast client kept the socket full that
/// buffer grew by megabytes (the largest share of an upload's memory) instead of staying at
/// one 64 KiB piece; yielding after each piece keeps it there, at the cost of a task wake-up
/// per piece.
pub(super) struct OnePerPoll<S> {
    inner: S,
    yielded: bool,
}

impl<S> OnePerPoll<S> {
    pub(super) fn new(inner: S) -> OnePerPoll<S> {
        OnePerPoll {
            inner,
            yielded: false,
        }
    }
}

impl<S: Stream + Unpin> Stream for OnePerPoll<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.yielded {
            self.yielded = false;
            // Ready to go on at once: the task is only asked to come back.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = Pin::new(&mut self.inner).poll_next(cx);
        self.yielded = matches!(next, Poll::Ready(Some(_)));
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn yields_one_piece_per_poll_and_loses_nothing() {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut s = OnePerPoll::new(futures_util::stream::iter([1, 2, 3]));
        let mut seen = Vec::new();
        let mut polls = 0;
        loop {
            polls += 1;
            match s.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(x)) => {
                    seen.push(x);
                    // Straight after a piece: pending, even though more is ready.
                    assert!(s.poll_next_unpin(&mut cx).is_pending());
                }
                Poll::Ready(None) => break,
                Poll::Pending => panic!("pending with nothing yielded before"),
            }
            assert!(polls < 10);
        }
        assert_eq!(seen, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_consumer_sees_the_whole_stream() {
        let pieces: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 1000]).collect();
        let got: Vec<Vec<u8>> = OnePerPoll::new(futures_util::stream::iter(pieces.clone()))
            .collect()
            .await;
        assert_eq!(got, pieces);
    }
}
