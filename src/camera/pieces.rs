//! Short, self-contained pieces of an event in progress, for the cloud relay.
//!
//! While an event goes on, its footage is also cut into MP4 files of about
//! [`PIECE_TARGET_MS`], each starting at a keyframe and playable alone, so that the
//! relay can send each one as soon as it is closed: if the hub is unplugged mid-event,
//! only the last few seconds are lost. A piece is cut at the first keyframe at least
//! [`PIECE_TARGET_MS`] after the piece began, so with a keyframe every 2 s (the usual
//! camera setting) pieces are 2 s long, and they stay at most 4 s long whenever the
//! camera sends a keyframe at least every 4 s (they cannot be shorter than its GOP).
//!
//! Closing a piece waits for its muxer, so that happens on a short-lived thread, never
//! on the camera's streaming thread.

use std::path::PathBuf;
use std::sync::Arc;

use gstreamer as gst;

use super::clip::ClipWriter;
use crate::error::Result;

/// Pieces are cut at the first keyframe this long after the piece's start.
pub const PIECE_TARGET_MS: i64 = 1_900;

/// A closed piece, ready to leave.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    pub camera_id: i64,
    pub event_id: i64,
    /// 0, 1, 2… within the event.
    pub seq: u32,
    pub path: PathBuf,
    /// Wall-clock time of the first frame, and of the frame after the last.
    pub start_ms: i64,
    pub end_ms: i64,
}

/// Where closed pieces go (the cloud relay).
pub trait PieceSink: Send + Sync {
    fn piece_done(&self, piece: Piece);
}

/// What the events subsystem asks for when an event starts.
#[derive(Clone)]
pub struct PieceSpec {
    pub camera_id: i64,
    pub event_id: i64,
    /// Folder for the piece files (`<event>-<seq>.mp4`).
    pub dir: PathBuf,
    pub sink: Arc<dyn PieceSink>,
}

/// The pieces of one event: the open writer and where the next one goes.
pub struct Pieces {
    spec: PieceSpec,
    caps: gst::Caps,
    seq: u32,
    open: Option<Open>,
    last_ms: i64,
    /// Interval between the last two buffers, to date the end of the final piece.
    step_ms: i64,
}

struct Open {
    writer: ClipWriter,
    seq: u32,
    start_ms: i64,
}

impl Pieces {
    pub fn new(spec: PieceSpec, caps: gst::Caps) -> Pieces {
        Pieces { spec, caps, seq: 0, open: None, last_ms: 0, step_ms: 0 }
    }

    /// Feeds one encoded access unit that arrived at `at_ms`.
    pub fn push(&mut self, buf: &gst::Buffer, at_ms: i64) -> Result<()> {
        if self.last_ms > 0 && at_ms > self.last_ms {
            self.step_ms = at_ms - self.last_ms;
        }
        self.last_ms = at_ms;
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        if key && self.open.as_ref().is_some_and(|o| at_ms - o.start_ms >= PIECE_TARGET_MS) {
            self.close(at_ms);
        }
        match &self.open {
            Some(o) => o.writer.push(buf),
            None if key => {
                let path = self.spec.dir.join(format!("{}-{}.mp4", self.spec.event_id, self.seq));
                let writer = ClipWriter::start(&path, &self.caps, vec![(buf.clone(), at_ms)])?;
                self.open = Some(Open { writer, seq: self.seq, start_ms: at_ms });
                self.seq += 1;
                Ok(())
            }
            None => Ok(()), // a piece begins at a keyframe
        }
    }

    /// Closes the open piece (the event ended).
    pub fn finish(mut self) {
        let end = self.last_ms + self.step_ms.max(1);
        self.close(end);
    }

    /// Hands the open piece to a thread that finishes it and tells the sink.
    fn close(&mut self, end_ms: i64) {
        let Some(open) = self.open.take() else { return };
        let piece = Piece {
            camera_id: self.spec.camera_id,
            event_id: self.spec.event_id,
            seq: open.seq,
            path: open.writer.path().to_path_buf(),
            start_ms: open.start_ms,
            end_ms,
        };
        let sink = self.spec.sink.clone();
        let spawned = std::thread::Builder::new().name("piece".into()).spawn(move || match open.writer.finish() {
            Ok(()) => sink.piece_done(piece),
            Err(e) => tracing::warn!(error = %super::redact_urls(&e.to_string()), event = piece.event_id, seq = piece.seq, "piece failed"),
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread to close a piece");
        }
    }
}
