//! `--layout`: which videos a subscriber shows and at what size, as LiveKit's `lk load-test`
//! simulates an app's screen. A subscriber joins with `disableVidAutoSub` (video waits for a
//! request, as the 100ms SDK does by default) and asks for each announced video, its layer set
//! by the order the tracks were announced, with one `prefer-video-track-state` on the subscribe
//! connection's `ion-sfu` data channel, sent once the track is in the subscribe connection (as
//! the SDK asks after `ontrack`):
//!
//! | layout | shown | layer asked for |
//! |---|---|---|
//! | `speaker` | 6 | the first `high`, the next five `low` |
//! | `3x3` | 9 | `medium` |
//! | `4x4` | 16 | `low` |
//! | `5x5` | 25 | `low` |
//! | `all` (default) | every video | none asked: the router's choice (auto-subscribe) |
//!
//! Videos past a layout's tiles are asked for with `none` (not forwarded). Audio is always
//! received, as in a 100ms app. A tile is not reused when its track goes away: the load tool's
//! publishers do not unpublish during a run.
//!
//! [`Tiles`] is sans-IO: it takes the signaling pushes and the channel's replies as values and
//! gives the requests to write, so it is tested without a server.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Value, json};

/// A subscriber's screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Every video, at the layer the router picks (no requests).
    #[default]
    All,
    Speaker,
    Grid3x3,
    Grid4x4,
    Grid5x5,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::All => "all",
            Layout::Speaker => "speaker",
            Layout::Grid3x3 => "3x3",
            Layout::Grid4x4 => "4x4",
            Layout::Grid5x5 => "5x5",
        }
    }

    /// Whether video waits for a request (`disableVidAutoSub` in `join`).
    pub fn asks_for_video(self) -> bool {
        self != Layout::All
    }

    /// The `max_spatial_layer` asked for the `n`-th video announced (from 0); `None` for
    /// [`Layout::All`], which asks nothing.
    pub fn max_layer(self, n: usize) -> Option<&'static str> {
        let (tiles, layer) = match self {
            Layout::All => return None,
            Layout::Speaker if n == 0 => return Some("high"),
            Layout::Speaker => (6, "low"),
            Layout::Grid3x3 => (9, "medium"),
            Layout::Grid4x4 => (16, "low"),
            Layout::Grid5x5 => (25, "low"),
        };
        Some(if n < tiles { layer } else { "none" })
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Layout, String> {
        [Layout::All, Layout::Speaker, Layout::Grid3x3, Layout::Grid4x4, Layout::Grid5x5]
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown layout '{s}': one of all, speaker, 3x3, 4x4, 5x5"))
    }
}

/// What a subscriber asked for one video, and whether the server agreed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tile {
    pub track_id: String,
    pub max_layer: &'static str,
    /// The server answered the request with success.
    pub accepted: bool,
}

/// One subscriber's tiles: the videos announced so far, the requests not yet written, the
/// ones awaiting their reply.
#[derive(Debug)]
pub struct Tiles {
    layout: Layout,
    seen: HashSet<String>,
    tiles: Vec<Tile>,
    unsent: VecDeque<usize>,
    awaiting: HashMap<String, usize>,
    next_id: u64,
    refused: Option<String>,
}

impl Tiles {
    pub fn new(layout: Layout) -> Tiles {
        Tiles {
            layout,
            seen: HashSet::new(),
            tiles: Vec::new(),
            unsent: VecDeque::new(),
            awaiting: HashMap::new(),
            next_id: 0,
            refused: None,
        }
    }

    /// A signaling push: `peer-list` (`{peers:{id:{tracks:{…}}}}`) and `on-track-add`
    /// (`{tracks:{…}}`) announce tracks; anything else is ignored.
    pub fn on_push(&mut self, method: &str, params: &Value) {
        match method {
            "peer-list" => {
                for peer in params["peers"].as_object().into_iter().flat_map(|m| m.values()) {
                    self.announce(&peer["tracks"]);
                }
            }
            "on-track-add" => self.announce(&params["tracks"]),
            _ => {}
        }
    }

    fn announce(&mut self, tracks: &Value) {
        for (key, t) in tracks.as_object().into_iter().flatten() {
            if t["type"].as_str() != Some("video") {
                continue;
            }
            let track_id = t["track_id"].as_str().unwrap_or(key).to_owned();
            if !self.seen.insert(track_id.clone()) {
                continue;
            }
            // `All` asks nothing: no tile.
            let Some(max_layer) = self.layout.max_layer(self.tiles.len()) else { return };
            self.unsent.push_back(self.tiles.len());
            self.tiles.push(Tile { track_id, max_layer, accepted: false });
        }
    }

    /// The next request to write on the `ion-sfu` channel, as the SDK frames it, for a track
    /// already in the subscribe connection (`received`). The SDK asks for a video only after
    /// its track arrived (`ontrack`); asked for earlier, the server does not know the
    /// subscription yet and answers 404.
    pub fn next_request(&mut self, received: impl Fn(&str) -> bool) -> Option<String> {
        let pos = self.unsent.iter().position(|&i| received(&self.tiles[i].track_id))?;
        let i = self.unsent.remove(pos)?;
        self.next_id += 1;
        let id = format!("layout-{}", self.next_id);
        let t = &self.tiles[i];
        let text = json!({"id": id, "jsonrpc": "2.0", "method": "prefer-video-track-state",
                          "params": {"track_id": t.track_id, "max_spatial_layer": t.max_layer}})
        .to_string();
        self.awaiting.insert(id, i);
        Some(text)
    }

    /// Puts a request back (the channel would not take it): it goes out next time.
    pub fn unsend(&mut self, request: &str) {
        let id = serde_json::from_str::<Value>(request).ok().and_then(|v| v["id"].as_str().map(str::to_owned));
        if let Some(i) = id.and_then(|id| self.awaiting.remove(&id)) {
            self.unsent.push_front(i);
        }
    }

    /// A text message from the channel: the reply to one of the requests. Returns the tile
    /// it accepted, if it did.
    pub fn on_reply(&mut self, text: &str) -> Option<&Tile> {
        let reply = serde_json::from_str::<Value>(text).ok()?;
        let i = reply["id"].as_str().and_then(|id| self.awaiting.remove(id))?;
        if reply.get("result").is_some() && reply.get("error").is_none() {
            self.tiles[i].accepted = true;
            return Some(&self.tiles[i]);
        }
        if self.refused.is_none() {
            let t = &self.tiles[i];
            self.refused =
                Some(format!("prefer-video-track-state {} {} refused: {}", t.track_id, t.max_layer, reply["error"]));
        }
        None
    }

    /// The first refusal, if any: the run's report names it as the peer's error.
    pub fn refused(&self) -> Option<&str> {
        self.refused.as_deref()
    }

    pub fn into_tiles(self) -> Vec<Tile> {
        self.tiles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracks(ids: &[(&str, &str)]) -> Value {
        let m: serde_json::Map<String, Value> =
            ids.iter().map(|(id, kind)| (id.to_string(), json!({"track_id": id, "type": kind}))).collect();
        Value::Object(m)
    }

    fn drain(t: &mut Tiles) -> Vec<(String, String)> {
        std::iter::from_fn(|| t.next_request(|_| true))
            .map(|r| {
                let v: Value = serde_json::from_str(&r).unwrap();
                assert_eq!(v["method"], "prefer-video-track-state");
                (
                    v["params"]["track_id"].as_str().unwrap().into(),
                    v["params"]["max_spatial_layer"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    #[test]
    fn speaker_shows_one_high_and_five_low_and_hides_the_rest() {
        let mut t = Tiles::new(Layout::Speaker);
        // Existing peers first, then one more publishes; audio and repeats are not tiles.
        t.on_push("peer-list", &json!({"peers": {"a": {"tracks": tracks(&[("v0", "video"), ("a0", "audio")])}}}));
        t.on_push("on-track-add", &json!({"tracks": tracks(&[("v1", "video"), ("v2", "video"), ("v3", "video")])}));
        t.on_push("on-track-add", &json!({"tracks": tracks(&[("v1", "video")])}));
        t.on_push("on-track-add", &json!({"tracks": tracks(&[("v4", "video"), ("v5", "video"), ("v6", "video")])}));
        let asked = drain(&mut t);
        let layers: Vec<&str> = asked.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(layers, ["high", "low", "low", "low", "low", "low", "none"]);
        assert_eq!(asked[0].0, "v0");
        assert_eq!(asked.len(), 7);
    }

    #[test]
    fn grids_ask_their_size_and_all_asks_nothing() {
        for (layout, tiles, layer) in
            [(Layout::Grid3x3, 9, "medium"), (Layout::Grid4x4, 16, "low"), (Layout::Grid5x5, 25, "low")]
        {
            let mut t = Tiles::new(layout);
            let ids: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
            let list: Vec<(&str, &str)> = ids.iter().map(|i| (i.as_str(), "video")).collect();
            t.on_push("on-track-add", &json!({ "tracks": tracks(&list) }));
            let asked = drain(&mut t);
            assert_eq!(asked.len(), 30);
            assert_eq!(asked.iter().filter(|(_, l)| l == layer).count(), tiles, "{layout}");
            assert_eq!(asked.iter().filter(|(_, l)| l == "none").count(), 30 - tiles, "{layout}");
        }
        let mut all = Tiles::new(Layout::All);
        all.on_push("on-track-add", &json!({"tracks": tracks(&[("v0", "video")])}));
        assert!(all.next_request(|_| true).is_none());
        assert!(!Layout::All.asks_for_video() && Layout::Speaker.asks_for_video());
    }

    #[test]
    fn a_tile_is_asked_for_once_its_track_is_in_the_subscribe_connection() {
        let mut t = Tiles::new(Layout::Speaker);
        t.on_push("on-track-add", &json!({"tracks": tracks(&[("v0", "video"), ("v1", "video")])}));
        // v1's m-line came first: it goes out, still with the layer of its place (`low`).
        let only_v1 = |track: &str| track == "v1";
        let first: Value = serde_json::from_str(&t.next_request(only_v1).unwrap()).unwrap();
        assert_eq!(
            (first["params"]["track_id"].as_str(), first["params"]["max_spatial_layer"].as_str()),
            (Some("v1"), Some("low"))
        );
        assert!(t.next_request(only_v1).is_none(), "v0 waits for its track");
        assert_eq!(drain(&mut t), [("v0".to_owned(), "high".to_owned())]);
    }

    #[test]
    fn replies_mark_tiles_and_a_refusal_is_kept() {
        let mut t = Tiles::new(Layout::Grid3x3);
        t.on_push("on-track-add", &json!({"tracks": tracks(&[("v0", "video"), ("v1", "video")])}));
        let first = t.next_request(|_| true).unwrap();
        // A request the channel would not take goes out again, under the same id.
        t.unsend(&first);
        let again = t.next_request(|_| true).unwrap();
        let second = t.next_request(|_| true).unwrap();
        let id = |r: &str| serde_json::from_str::<Value>(r).unwrap()["id"].as_str().unwrap().to_owned();
        let accepted = t.on_reply(&json!({"jsonrpc": "2.0", "id": id(&again), "result": {}}).to_string());
        assert_eq!(accepted.map(|t| t.track_id.as_str()), Some("v0"));
        assert!(t.on_reply("not json").is_none());
        assert!(t.on_reply(&json!({"jsonrpc": "2.0", "id": "unknown", "result": {}}).to_string()).is_none());
        assert!(t.refused().is_none());
        t.on_reply(
            &json!({"jsonrpc": "2.0", "id": id(&second), "error": {"code": 404, "message": "track not found"}})
                .to_string(),
        );
        assert!(t.refused().unwrap().contains("track not found"), "{:?}", t.refused());
        let tiles = t.into_tiles();
        assert_eq!(tiles.iter().map(|t| t.accepted).collect::<Vec<_>>(), [true, false]);
    }

    #[test]
    fn layout_names_parse_back_and_unknown_ones_are_an_error() {
        for l in [Layout::All, Layout::Speaker, Layout::Grid3x3, Layout::Grid4x4, Layout::Grid5x5] {
            assert_eq!(l.name().parse::<Layout>(), Ok(l));
        }
        assert!("6x6".parse::<Layout>().unwrap_err().contains("one of all, speaker"));
    }
}
