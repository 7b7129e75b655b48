//! [`DeadlineBody`]: a request body that must arrive whole before a deadline.
//!
//! tower-http's `TimeoutBody` restarts its clock at every frame, so a client that trickles
//! one byte a second never trips it; this deadline is fixed when the request head arrives.
//! Past it, the next read fails with [`BodyDeadlineElapsed`], which the layer answers 408
//! `request_timeout` before anything runs (`idem serve` does the same).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use idem::BoxError;
use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};

pin_project! {
    /// A body whose frames must all arrive within a fixed time of its creation; after that
    /// it yields one [`BodyDeadlineElapsed`] error and ends.
    #[derive(Debug)]
    pub struct DeadlineBody<B> {
        #[pin]
        body: B,
        #[pin]
        deadline: Sleep,
        elapsed: bool,
    }
}

impl<B> DeadlineBody<B> {
    /// `body`, which must be read to its end within `limit` from now.
    ///
    /// # Panics
    /// Outside a tokio runtime (the deadline is a tokio timer).
    pub fn new(body: B, limit: Duration) -> Self {
        Self {
            body,
            deadline: sleep(limit),
            elapsed: false,
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.body
    }

    /// The wrapped body, mutably.
    pub fn get_mut(&mut self) -> &mut B {
        &mut self.body
    }

    /// The wrapped body, without its deadline.
    pub fn into_inner(self) -> B {
        self.body
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.elapsed {
            return Poll::Ready(None);
        }
        // What has arrived is taken first: a body complete in time is never refused.
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => {
                *this.elapsed = true;
                Poll::Ready(Some(Err(Box::new(BodyDeadlineElapsed))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.elapsed || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request body did not arrive whole before its deadline (HTTP 408 `request_timeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyDeadlineElapsed;

impl BodyDeadlineElapsed {
    /// Whether `error`, or any error in its chain of sources, is a body deadline: a body
    /// read fails with it wrapped in the reader's own error types (axum's, hyper's).
    pub fn found_in(error: &(dyn StdError + 'static)) -> bool {
        let mut next = Some(error);
        while let Some(error) = next {
            if error.is::<Self>() {
                return true;
            }
            next = error.source();
        }
        false
    }
}

impl fmt::Display for BodyDeadlineElapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the request body did not arrive before its deadline")
    }
}

impl StdError for BodyDeadlineElapsed {}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    #[tokio::test]
    async fn a_body_complete_in_time_reads_whole() {
        let body = DeadlineBody::new(Full::new(Bytes::from_static(b"ok")), Duration::from_secs(1));
        let bytes = body.collect().await.expect("in time").to_bytes();
        assert_eq!(bytes, "ok");
    }

    #[tokio::test]
    async fn a_trickled_body_fails_at_the_deadline_not_between_frames() {
        // Ten one-byte frames 50 ms apart: each gap is short, the whole is not.
        let frames = futures::stream::unfold(0u8, |n| async move {
            if n == 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let frame: Result<_, std::io::Error> = Ok(Frame::data(Bytes::from_static(b"x")));
            Some((frame, n + 1))
        });
        let body = DeadlineBody::new(StreamBody::new(frames), Duration::from_millis(200));
        let error = body.collect().await.expect_err("past the deadline");
        assert!(BodyDeadlineElapsed::found_in(&*error), "{error}");
        let wrapped = axum_core::Error::new(error);
        assert!(BodyDeadlineElapsed::found_in(&wrapped));
        assert!(!BodyDeadlineElapsed::found_in(&std::io::Error::other(
            "cut"
        )));
    }
}
