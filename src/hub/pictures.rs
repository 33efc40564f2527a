//! Colour pictures for event thumbnails: the fleet's live feeds (the substream where a
//! camera has one), decoded by [`camera::still`]. The events subsystem sees only its
//! [`events::Pictures`] trait. The fleet is attached once it exists (it is built after
//! the events thread, which starts first so cameras have somewhere to send frames).

use std::sync::{Arc, OnceLock, Weak};

use super::fleet::Fleet;
use crate::camera::live::{Gop, StreamKind};
use crate::camera::{self, CameraView};
use crate::error::{Error, ErrorKind, Result};
use crate::events;

/// Thumbnails are this wide (the substream's usual width; at least 320).
const THUMBNAIL_WIDTH: u32 = 640;

pub struct FleetPictures {
    fleet: OnceLock<Weak<Fleet>>,
    decoder: Option<String>,
}

impl FleetPictures {
    pub fn new(decoder: Option<String>) -> FleetPictures {
        FleetPictures { fleet: OnceLock::new(), decoder }
    }

    pub fn attach(&self, fleet: &Arc<Fleet>) {
        let _ = self.fleet.set(Arc::downgrade(fleet));
    }
}

impl events::Pictures for FleetPictures {
    fn grab(&self, camera_id: i64) -> Option<Gop> {
        self.fleet.get()?.upgrade()?.feed(camera_id, StreamKind::Sub)?.latest_gop()
    }

    fn encode(&self, gop: &Gop) -> Result<Vec<u8>> {
        let decoder =
            self.decoder.as_deref().ok_or_else(|| Error::new(ErrorKind::Unavailable, "no H.264 decoder on this machine"))?;
        camera::still::jpeg_from_gop(gop, usize::MAX, THUMBNAIL_WIDTH, decoder)
    }
}
