//! Which simulcast layer of a camera its tile needs.
//!
//! A browser camera sends up to three layers (q, h, f: 320×180, 640×360 and 1280×720 for a
//! 720p camera), and decoding the top one for a tile a quarter of the picture costs four times
//! the decode and a downscale. A job follows, per camera, the lowest layer that fills its
//! tile (within [`UPSCALE_SLACK`]), and moves up or down when the layout changes its tile
//! (`TapFeed` switches at the new layer's keyframe). Sizes come from keyframes; a layer not
//! seen yet is estimated from the nearest known one at half its size per step down (the
//! simulcast ladder browsers and the 100ms SDK use), and corrected once its own keyframe
//! arrives, so a wrong estimate costs one switch, not a loop.

use std::collections::BTreeMap;

/// How much a layer may be scaled up to fill its tile and still count as filling it (a
/// 640×360 layer for a 672×378 tile).
pub const UPSCALE_SLACK: f64 = 1.1;

/// The layer to follow for a tile of `tile` (width, height) among the layers in `live` (a
/// bit per layer index), given the sizes seen on keyframes: the lowest that fills the tile,
/// else the top one. `None` while no layer's size is known.
pub fn layer_for(tile: (u32, u32), live: u8, sizes: &BTreeMap<u8, (u32, u32)>) -> Option<u8> {
    if sizes.is_empty() {
        return None;
    }
    let layers: Vec<u8> = (0..8).filter(|l| live & (1 << l) != 0).collect();
    let top = *layers.last()?;
    let fills = |l: u8| {
        estimate(l, sizes).is_some_and(|(w, h)| {
            let scale = (f64::from(tile.0) / f64::from(w.max(1))).min(f64::from(tile.1) / f64::from(h.max(1)));
            scale <= UPSCALE_SLACK
        })
    };
    Some(layers.into_iter().find(|&l| fills(l)).unwrap_or(top))
}

/// A layer's size: seen, or from the nearest layer seen, doubling per step up.
fn estimate(layer: u8, sizes: &BTreeMap<u8, (u32, u32)>) -> Option<(u32, u32)> {
    if let Some(&s) = sizes.get(&layer) {
        return Some(s);
    }
    let (&known, &(w, h)) = sizes.iter().min_by_key(|(l, _)| l.abs_diff(layer))?;
    let steps = u32::from(known.abs_diff(layer)).min(16);
    Some(if layer > known { (w << steps, h << steps) } else { ((w >> steps).max(1), (h >> steps).max(1)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QHF: u8 = 0b111;

    #[test]
    fn a_quarter_tile_takes_the_middle_layer_and_the_whole_picture_the_top() {
        // Only the top layer seen so far (the first pick): the others are estimated.
        let f_only = BTreeMap::from([(2, (1280, 720))]);
        assert_eq!(layer_for((640, 360), QHF, &f_only), Some(1));
        assert_eq!(layer_for((1280, 720), QHF, &f_only), Some(2));
        assert_eq!(layer_for((320, 180), QHF, &f_only), Some(0));
        // A strip tile of the speaker layout, and a tile a little over a layer's size.
        assert_eq!(layer_for((256, 144), QHF, &f_only), Some(0));
        assert_eq!(layer_for((672, 378), QHF, &f_only), Some(1));
        assert_eq!(layer_for((720, 405), QHF, &f_only), Some(2));
        // Nothing known yet: no choice.
        assert_eq!(layer_for((640, 360), QHF, &BTreeMap::new()), None);
    }

    #[test]
    fn a_wrong_estimate_is_corrected_by_the_size_seen_and_the_top_is_the_fallback() {
        // The middle layer turned out a quarter of the top (not half): it no longer fills a
        // 640×360 tile, so the top one is followed, and stays (both sizes are known now).
        let seen = BTreeMap::from([(1, (320, 180)), (2, (1280, 720))]);
        assert_eq!(layer_for((640, 360), QHF, &seen), Some(2));
        // Only live layers count: without the top, the best left.
        assert_eq!(layer_for((1280, 720), 0b011, &seen), Some(1));
        // A camera of one layer is followed whatever its tile.
        assert_eq!(layer_for((1280, 720), 0b001, &BTreeMap::from([(0, (640, 480))])), Some(0));
        // A 4:3 camera is fitted into a 16:9 tile by its height: 320×240 would be scaled 1.5×.
        let vga = BTreeMap::from([(1, (640, 480))]);
        assert_eq!(layer_for((640, 360), 0b011, &vga), Some(1));
        assert_eq!(layer_for((320, 180), 0b011, &vga), Some(0));
    }
}
