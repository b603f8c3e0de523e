//! Where each video tile goes in the output picture: pure functions of the tile count and the
//! output size, so the pipeline only applies what they return and the tests need no GStreamer.
//!
//! Every rectangle has even coordinates and sizes (I420 subsamples chroma by two, so an odd edge
//! would smear), lies inside the output, and no two overlap. Tiles are listed in input order;
//! the pipeline scales each input into its tile keeping the aspect ratio (letterboxed on the
//! black background).

/// One tile: top-left corner and size, in output pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// How the tiles are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LayoutKind {
    /// Equal tiles in rows, as square a grid as the count allows; a short last row is centred.
    #[default]
    Grid,
    /// The first tile (the active speaker, or a screenshare) large on top, the others in a strip
    /// along the bottom.
    Speaker,
}

/// The share of the height the speaker layout gives its strip, as a fraction (1/4).
const STRIP_DIVISOR: u32 = 4;

/// The strip's tiles are never wider than this (16:9) for their height, so two cameras in the
/// strip stay camera-shaped instead of stretching across the picture.
const STRIP_ASPECT: (u32, u32) = (16, 9);

/// The tiles for `n` inputs on a `width`×`height` output, in input order.
pub fn layout(kind: LayoutKind, n: usize, width: u32, height: u32) -> Vec<Rect> {
    match kind {
        LayoutKind::Grid => grid(n, width, height),
        LayoutKind::Speaker => speaker(n, width, height),
    }
}

/// `n` equal tiles: `cols = ceil(sqrt(n))`, `rows = ceil(n / cols)`; the last row, if short,
/// is centred horizontally.
pub fn grid(n: usize, width: u32, height: u32) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    let n32 = u32::try_from(n).unwrap_or(u32::MAX);
    let cols = ceil_sqrt(n32);
    let rows = n32.div_ceil(cols);
    let tile_w = even(width / cols);
    let tile_h = even(height / rows);
    // Centre the whole grid: the division's remainder goes into the margins.
    let top = even((height - tile_h * rows) / 2);
    (0..n32)
        .map(|i| {
            let row = i / cols;
            let col = i % cols;
            let in_row = if row == rows - 1 { n32 - row * cols } else { cols };
            let left = even((width - tile_w * in_row) / 2);
            Rect { x: left + col * tile_w, y: top + row * tile_h, width: tile_w, height: tile_h }
        })
        .collect()
}

/// The first tile fills the top three quarters; the rest share the bottom quarter, each at most
/// 16:9 for the strip's height, centred.
pub fn speaker(n: usize, width: u32, height: u32) -> Vec<Rect> {
    match n {
        0 => Vec::new(),
        1 => vec![Rect { x: 0, y: 0, width: even(width), height: even(height) }],
        _ => {
            let others = u32::try_from(n - 1).unwrap_or(u32::MAX);
            let strip_h = even(height / STRIP_DIVISOR);
            let main_h = even(height - strip_h);
            let max_w = strip_h * STRIP_ASPECT.0 / STRIP_ASPECT.1;
            let tile_w = even((width / others).min(max_w));
            let left = even((width - tile_w * others) / 2);
            let mut tiles = vec![Rect { x: 0, y: 0, width: even(width), height: main_h }];
            tiles.extend((0..others).map(|i| Rect { x: left + i * tile_w, y: main_h, width: tile_w, height: strip_h }));
            tiles
        }
    }
}

fn even(v: u32) -> u32 {
    v & !1
}

fn ceil_sqrt(n: u32) -> u32 {
    let mut c = 1;
    while c * c < n {
        c += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_invariants(tiles: &[Rect], width: u32, height: u32) {
        for (i, t) in tiles.iter().enumerate() {
            assert!(t.width > 0 && t.height > 0, "tile {i} empty: {t:?}");
            assert!(t.x + t.width <= width && t.y + t.height <= height, "tile {i} outside: {t:?}");
            assert!([t.x, t.y, t.width, t.height].iter().all(|v| v.is_multiple_of(2)), "odd: {t:?}");
            for (j, u) in tiles.iter().enumerate().skip(i + 1) {
                let apart =
                    t.x + t.width <= u.x || u.x + u.width <= t.x || t.y + t.height <= u.y || u.y + u.height <= t.y;
                assert!(apart, "tiles {i} and {j} overlap: {t:?} {u:?}");
            }
        }
    }

    #[test]
    fn grid_shapes() {
        assert!(grid(0, 1280, 720).is_empty());
        assert_eq!(grid(1, 1280, 720), vec![Rect { x: 0, y: 0, width: 1280, height: 720 }]);
        // Two: side by side, each the full height (the pipeline letterboxes a camera inside).
        assert_eq!(
            grid(2, 1280, 720),
            vec![Rect { x: 0, y: 0, width: 640, height: 720 }, Rect { x: 640, y: 0, width: 640, height: 720 }]
        );
        // Three: two on top, the third centred below.
        assert_eq!(
            grid(3, 1280, 720),
            vec![
                Rect { x: 0, y: 0, width: 640, height: 360 },
                Rect { x: 640, y: 0, width: 640, height: 360 },
                Rect { x: 320, y: 360, width: 640, height: 360 },
            ]
        );
        let four = grid(4, 1280, 720);
        assert_eq!(four[3], Rect { x: 640, y: 360, width: 640, height: 360 });
    }

    #[test]
    fn grid_invariants_for_many_counts_and_sizes() {
        for (w, h) in [(1280, 720), (640, 360), (1920, 1080), (854, 480), (101, 77)] {
            for n in 0..=25 {
                let tiles = grid(n, w, h);
                assert_eq!(tiles.len(), n);
                check_invariants(&tiles, w, h);
            }
        }
    }

    #[test]
    fn speaker_shapes() {
        assert_eq!(speaker(1, 1280, 720), vec![Rect { x: 0, y: 0, width: 1280, height: 720 }]);
        // Two: the speaker 1280×540 on top, the other 16:9 in the 180-high strip, centred.
        assert_eq!(
            speaker(2, 1280, 720),
            vec![Rect { x: 0, y: 0, width: 1280, height: 540 }, Rect { x: 480, y: 540, width: 320, height: 180 }]
        );
        // Many: the strip's tiles share the width.
        let tiles = speaker(9, 1280, 720);
        assert_eq!(tiles[1], Rect { x: 0, y: 540, width: 160, height: 180 });
        assert_eq!(tiles[8], Rect { x: 1120, y: 540, width: 160, height: 180 });
    }

    #[test]
    fn speaker_invariants_for_many_counts_and_sizes() {
        for (w, h) in [(1280, 720), (640, 360), (1920, 1080), (101, 77)] {
            for n in 0..=25 {
                let tiles = speaker(n, w, h);
                assert_eq!(tiles.len(), n);
                check_invariants(&tiles, w, h);
            }
        }
    }

    #[test]
    fn deterministic() {
        for kind in [LayoutKind::Grid, LayoutKind::Speaker] {
            assert_eq!(layout(kind, 7, 1280, 720), layout(kind, 7, 1280, 720));
        }
    }
}
