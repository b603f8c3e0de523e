//! The job's picture: which tiles it shows and where. The `director` decides (pure); this
//! applies its arrangement to the compositor's pads, and makes and removes the placeholder
//! tiles (a peer without a camera on: its name on grey).

use gstreamer as gst;
use gstreamer::prelude::*;

use super::{Composite, Error, InputId, build_err, i420_capsfilter, make, package_of};
use crate::director::{Arrangement, InputFacts, Tile};
use crate::layout::{self, LayoutKind};

/// The tile of a peer without a camera on: its name on grey.
pub(super) struct Placeholder {
    pub(super) elements: Vec<gst::Element>,
    pub(super) pad: gst::Pad,
    pub(super) name_overlay: gst::Element,
}

/// The placeholder's grey (ARGB).
const PLACEHOLDER_GREY: u32 = 0xff30_3030;

impl Composite {
    /// A placeholder tile for a peer without a camera on: a live grey picture with its name.
    pub(super) fn add_placeholder(&self, name: &str) -> Result<Placeholder, Error> {
        // A live videotestsrc stamps its first frame 0 wherever the pipeline is: added at
        // running time t, it would first make t seconds of frames the compositor drops as
        // late, and the tile stays black for as long as that takes on a busy machine.
        let now = self.running_time().unwrap_or_default();
        let src = gst::ElementFactory::make("videotestsrc")
            .property("is-live", true)
            .property("timestamp-offset", i64::try_from(now.as_nanos()).unwrap_or(0))
            .property_from_str("pattern", "solid-color")
            .property("foreground-color", PLACEHOLDER_GREY)
            .build()
            .map_err(|_| Error::MissingElement { element: "videotestsrc", package: package_of("videotestsrc") })?;
        let caps = i420_capsfilter(640, 360, Some(self.config.fps))?;
        let name_overlay = make("textoverlay")?;
        name_overlay.set_property_from_str("valignment", "center");
        name_overlay.set_property_from_str("halignment", "center");
        name_overlay.set_property("font-desc", "Sans Bold 32");
        name_overlay.set_property("text", name);
        let elements = vec![src, caps, name_overlay.clone()];
        self.pipeline.add_many(&elements).map_err(build_err("add a placeholder"))?;
        let link = || -> Result<gst::Pad, Error> {
            gst::Element::link_many(&elements).map_err(build_err("link a placeholder"))?;
            let pad = self
                .compositor
                .request_pad_simple("sink_%u")
                .ok_or_else(|| Error::Build("compositor pad for a placeholder".into()))?;
            let src_pad = name_overlay.static_pad("src").ok_or_else(|| Error::Build("textoverlay src pad".into()))?;
            src_pad.link(&pad).map_err(|e| Error::Build(format!("link a placeholder to the compositor: {e:?}")))?;
            Ok(pad)
        };
        let pad = match link() {
            Ok(pad) => pad,
            Err(e) => {
                let _ = self.pipeline.remove_many(&elements);
                return Err(e);
            }
        };
        pad.set_property_from_str("sizing-policy", "keep-aspect-ratio");
        for e in &elements {
            e.sync_state_with_parent().map_err(build_err("start a placeholder"))?;
        }
        Ok(Placeholder { elements, pad, name_overlay })
    }

    /// Switches the job's layout mode: the grid, or the active speaker large (a screenshare
    /// is large in either; see `director`).
    pub fn set_layout(&mut self, layout: LayoutKind) {
        self.config.layout = layout;
        self.director.set_mode(layout);
        self.arrange();
    }

    /// Makes a video input's peer the active speaker now (until the levels move it on).
    pub fn set_speaker(&mut self, id: InputId) -> Result<(), Error> {
        if !self.inputs.get(&id).is_some_and(|i| i.kind.is_video()) {
            return Err(Error::UnknownInput(id));
        }
        self.director.set_speaker(id);
        self.arrange();
        Ok(())
    }

    /// What the input's track is (its peer, name, source, mute state): the name goes on its
    /// tile, and the layout follows the rest.
    pub fn describe_input(&mut self, id: InputId, facts: InputFacts) -> Result<(), Error> {
        let input = self.inputs.get(&id).ok_or(Error::UnknownInput(id))?;
        if let Some(overlay) = &input.name_overlay {
            overlay.set_property("text", facts.name.as_str());
        }
        self.director.describe(id, facts);
        self.arrange();
        Ok(())
    }

    /// The current arrangement: the layout kind and the visible video inputs in tile order.
    pub fn arrangement(&self) -> Arrangement {
        self.director.arrangement()
    }

    /// The size of a video input's tile as laid out now (`None`: not shown).
    pub fn tile_size(&self, id: InputId) -> Option<(u32, u32)> {
        self.shown.as_ref()?.tile_size(id, self.config.width, self.config.height)
    }

    /// Sets the mixer pads to the director's arrangement, if it changed: the visible tiles
    /// placed by `layout`, the others (muted cameras) transparent, a placeholder made for each
    /// peer without a camera on and removed when it has one again (or leaves).
    pub(super) fn arrange(&mut self) {
        let wanted = self.director.arrangement();
        // A name may change without the arrangement changing.
        for (peer, p) in &self.placeholders {
            p.name_overlay.set_property("text", self.director.name_of(peer));
        }
        if self.shown.as_ref() == Some(&wanted) {
            return;
        }
        let gone: Vec<String> = self
            .placeholders
            .keys()
            .filter(|peer| !wanted.order.contains(&Tile::Peer((*peer).clone())))
            .cloned()
            .collect();
        for peer in gone {
            if let Some(p) = self.placeholders.remove(&peer) {
                self.remove_branch(&self.compositor, &p.pad, &p.elements);
            }
        }
        for tile in &wanted.order {
            if let Tile::Peer(peer) = tile
                && !self.placeholders.contains_key(peer)
            {
                match self.add_placeholder(self.director.name_of(peer)) {
                    Ok(p) => {
                        self.placeholders.insert(peer.clone(), p);
                    }
                    // The peer goes without a tile; the job goes on.
                    Err(e) => tracing::warn!(%peer, error = %e, "no placeholder tile"),
                }
            }
        }
        let rects = layout::layout(wanted.kind, wanted.order.len(), self.config.width, self.config.height);
        let mut placed: Vec<&gst::Pad> = Vec::new();
        for (tile, rect) in wanted.order.iter().zip(rects) {
            let pad = match tile {
                Tile::Input(id) => self.inputs.get(id).map(|i| &i.mixer_pad),
                Tile::Peer(peer) => self.placeholders.get(peer).map(|p| &p.pad),
            };
            let Some(pad) = pad else { continue };
            // Tiles lie inside the output (layout's invariant), so every value fits an i32.
            pad.set_property("xpos", i32::try_from(rect.x).unwrap_or(0));
            pad.set_property("ypos", i32::try_from(rect.y).unwrap_or(0));
            pad.set_property("width", i32::try_from(rect.width).unwrap_or(0));
            pad.set_property("height", i32::try_from(rect.height).unwrap_or(0));
            pad.set_property("alpha", 1.0f64);
            placed.push(pad);
        }
        for input in self.inputs.values().filter(|i| i.kind.is_video()) {
            if !placed.contains(&&input.mixer_pad) {
                input.mixer_pad.set_property("alpha", 0.0f64);
            }
        }
        tracing::debug!(kind = ?wanted.kind, order = ?wanted.order, "layout");
        self.shown = Some(wanted);
    }
}
