//! Simulcast layer names as the signaling protocol and SDP spell them: the SDK's layer names
//! (`none`, `low`, `medium`, `high`) and 100ms's rids (`q`, `h`, `f`). A layer is its spatial
//! index, 0 the lowest; `None` is no layer.
//!
//! ```
//! use schema::layers::{MAX_LAYERS, layer_name, parse_layer_name, rid_layer};
//! assert_eq!(layer_name(Some(2)), "high");
//! assert_eq!(parse_layer_name("none"), Some(None));
//! assert_eq!(rid_layer("h"), Some(1));
//! assert_eq!(MAX_LAYERS, 3);
//! ```

/// Spatial layers of a simulcast producer (rids `q`, `h`, `f`).
pub const MAX_LAYERS: usize = 3;

/// The SDK's name of a layer index (`none` for no layer).
pub fn layer_name(layer: Option<u8>) -> &'static str {
    match layer {
        None => "none",
        Some(0) => "low",
        Some(1) => "medium",
        Some(_) => "high",
    }
}

/// The layer index of an SDK layer name; `Some(None)` for `none`, `None` for an unknown name.
pub fn parse_layer_name(name: &str) -> Option<Option<u8>> {
    match name {
        "none" => Some(None),
        "low" => Some(Some(0)),
        "medium" => Some(Some(1)),
        "high" => Some(Some(2)),
        _ => None,
    }
}

/// The spatial index of a 100ms rid (`q` low, `h` medium, `f` high).
pub fn rid_layer(rid: &str) -> Option<u8> {
    match rid {
        "q" => Some(0),
        "h" => Some(1),
        "f" => Some(2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_round_trip_and_unknown_names_are_refused() {
        for l in [None, Some(0), Some(1), Some(2)] {
            assert_eq!(parse_layer_name(layer_name(l)), Some(l));
        }
        assert_eq!(parse_layer_name("ultra"), None);
        assert_eq!(rid_layer("q"), Some(0));
        assert_eq!(rid_layer("f"), Some(2));
        assert_eq!(rid_layer("x"), None);
    }
}
