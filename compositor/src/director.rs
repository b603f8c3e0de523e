//! Who is on screen, where, and under what name: the job's layout policy, as a pure state
//! machine so that it is tested without GStreamer.
//!
//! The pipeline tells the [`Director`] what it knows, as it learns it: the inputs (with the
//! peer, name, source and mute state the tap's metadata carries, [`InputFacts`]), and each
//! audio input's loudness every [`crate::pipeline`] level interval, stamped with the
//! pipeline's running time. It asks for the [`Arrangement`] (the layout kind and the tiles in
//! order) and applies it when it changed.
//!
//! The rules:
//! - A screenshare takes the large tile (the speaker layout, whatever the job's mode), the
//!   newest if there are several; the cameras go in the strip.
//! - In the speaker mode ([`LayoutKind::Speaker`]) the active speaker's camera takes the large
//!   tile. A peer becomes the active speaker once it has been the loudest, above
//!   [`SPEECH_DBOV`], for [`SWITCH_AFTER_MS`] without a break, so a cough or a word of
//!   agreement does not swing the picture; until anyone has spoken, the first camera is large.
//! - In the grid mode the tiles keep their join order: nothing moves while people talk.
//! - A muted camera leaves the layout (its last frame would otherwise stay frozen in its
//!   tile); unmuted, it comes back in its join place.
//! - A peer with no camera on (audio only, or its camera muted) has a tile all the same
//!   ([`Tile::Peer`]: its name on grey), in its join place, and takes the large tile when it
//!   is the active speaker. Only described inputs (a non-empty peer) count as peers here: an
//!   undescribed audio input is just sound.

use std::collections::BTreeMap;

use crate::layout::LayoutKind;
use crate::pipeline::InputId;

/// Loudness (RMS, dB below full scale) under which a peer is not taken to be speaking.
pub const SPEECH_DBOV: f64 = -50.0;
/// How long a peer must be the loudest before it becomes the active speaker.
pub const SWITCH_AFTER_MS: u64 = 1_000;
/// A level report older than this no longer counts (its input stopped sending).
pub const LEVEL_FRESH_MS: u64 = 1_000;

/// What the job knows of an input from its track's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputFacts {
    /// The peer the track belongs to: its camera and microphone share it. Empty: the input is
    /// its own peer.
    pub peer: String,
    /// Written on the input's tile (video); empty for none.
    pub name: String,
    /// A screenshare.
    pub screen: bool,
    pub muted: bool,
}

/// One tile of the picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tile {
    /// A video input: a camera or a screenshare.
    Input(InputId),
    /// A peer without a camera on (its peer key): a placeholder with its name.
    Peer(String),
}

/// The layout to show: its kind and the tiles in order (the first is the large tile of the
/// speaker layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrangement {
    pub kind: LayoutKind,
    pub order: Vec<Tile>,
}

impl Arrangement {
    /// The size of `id`'s tile in a `width`×`height` picture; `None` when it has none (muted).
    pub fn tile_size(&self, id: InputId, width: u32, height: u32) -> Option<(u32, u32)> {
        let at = self.order.iter().position(|t| *t == Tile::Input(id))?;
        let rect = crate::layout::layout(self.kind, self.order.len(), width, height).get(at).copied()?;
        Some((rect.width, rect.height))
    }
}

#[derive(Debug, Clone)]
struct Known {
    video: bool,
    facts: InputFacts,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Director {
    mode: LayoutKind,
    /// Every input, in join order (ids grow as inputs join).
    inputs: BTreeMap<InputId, Known>,
    /// Each audio input's latest loudness and when (running time, ms).
    levels: BTreeMap<InputId, (f64, u64)>,
    /// The active speaker (a peer key), once someone has spoken.
    speaker: Option<String>,
    /// The loudest peer that is not the speaker yet, and since when.
    rising: Option<(String, u64)>,
}

impl Director {
    pub fn new(mode: LayoutKind) -> Director {
        Director { mode, inputs: BTreeMap::new(), levels: BTreeMap::new(), speaker: None, rising: None }
    }

    pub fn mode(&self) -> LayoutKind {
        self.mode
    }

    pub fn set_mode(&mut self, mode: LayoutKind) {
        self.mode = mode;
    }

    pub fn add(&mut self, id: InputId, video: bool) {
        self.inputs.insert(id, Known { video, facts: InputFacts::default() });
    }

    pub fn remove(&mut self, id: InputId) {
        self.inputs.remove(&id);
        self.levels.remove(&id);
    }

    /// Updates an input's facts; unknown inputs are ignored.
    pub fn describe(&mut self, id: InputId, facts: InputFacts) {
        if let Some(k) = self.inputs.get_mut(&id) {
            k.facts = facts;
        }
    }

    pub fn facts(&self, id: InputId) -> Option<&InputFacts> {
        self.inputs.get(&id).map(|k| &k.facts)
    }

    /// Makes the peer of a video input the active speaker now (an explicit choice; the levels
    /// may move it on later).
    pub fn set_speaker(&mut self, id: InputId) {
        if self.inputs.contains_key(&id) {
            self.speaker = Some(self.peer_of(id));
            self.rising = None;
        }
    }

    /// The active speaker's peer key, once someone has spoken (or was made the speaker).
    pub fn speaker(&self) -> Option<&str> {
        self.speaker.as_deref()
    }

    /// An audio input's loudness (RMS in dBov, the loudest channel) at running time `at_ms`.
    pub fn note_level(&mut self, id: InputId, rms_dbov: f64, at_ms: u64) {
        let Some(k) = self.inputs.get(&id) else { return };
        if k.video {
            return;
        }
        self.levels.insert(id, (rms_dbov, at_ms));
        let loudest = self
            .levels
            .iter()
            .filter(|(input, (db, at))| {
                *db > SPEECH_DBOV
                    && at_ms.saturating_sub(*at) <= LEVEL_FRESH_MS
                    && self.inputs.get(input).is_some_and(|k| !k.facts.muted)
            })
            .max_by(|a, b| a.1.0.total_cmp(&b.1.0))
            .map(|(input, _)| self.peer_of(*input));
        match loudest {
            None => self.rising = None,
            Some(peer) if self.speaker.as_ref() == Some(&peer) => self.rising = None,
            Some(peer) => match &self.rising {
                Some((rising, since)) if *rising == peer => {
                    if at_ms.saturating_sub(*since) >= SWITCH_AFTER_MS {
                        self.speaker = Some(peer);
                        self.rising = None;
                    }
                }
                // The first to speak in a silent room takes the tile at once.
                _ if self.speaker.is_none() => self.speaker = Some(peer),
                _ => self.rising = Some((peer, at_ms)),
            },
        }
    }

    /// What to show now. See the module docs for the rules.
    pub fn arrangement(&self) -> Arrangement {
        let visible: Vec<(InputId, &InputFacts)> =
            self.inputs.iter().filter(|(_, k)| k.video && !k.facts.muted).map(|(id, k)| (*id, &k.facts)).collect();
        // Tiles in join order: an input's by its id, a peer's placeholder by its first input's.
        let mut keyed: Vec<(InputId, Tile)> = visible.iter().map(|(id, _)| (*id, Tile::Input(*id))).collect();
        let mut peers: BTreeMap<&str, InputId> = BTreeMap::new();
        for (id, k) in &self.inputs {
            if !k.facts.peer.is_empty() {
                peers.entry(k.facts.peer.as_str()).or_insert(*id);
            }
        }
        for (peer, first) in peers {
            let has_camera = visible.iter().any(|(_, f)| f.peer == peer && !f.screen);
            if !has_camera {
                keyed.push((first, Tile::Peer(peer.to_owned())));
            }
        }
        keyed.sort_by_key(|(key, _)| *key);
        let mut order: Vec<Tile> = keyed.into_iter().map(|(_, tile)| tile).collect();
        let newest_screen = visible.iter().rev().find(|(_, f)| f.screen).map(|(id, _)| Tile::Input(*id));
        let large = match (&newest_screen, self.mode) {
            (Some(screen), _) => Some(screen.clone()),
            (None, LayoutKind::Speaker) => self.speaker.as_ref().and_then(|peer| {
                let camera = visible.iter().find(|(id, f)| !f.screen && self.peer_of(*id) == *peer);
                match camera {
                    Some((id, _)) => Some(Tile::Input(*id)),
                    None => order.iter().find(|t| **t == Tile::Peer(peer.clone())).cloned(),
                }
            }),
            (None, LayoutKind::Grid) => None,
        };
        let kind = if newest_screen.is_some() { LayoutKind::Speaker } else { self.mode };
        if let Some(large) = large {
            order.retain(|t| *t != large);
            order.insert(0, large);
        }
        Arrangement { kind, order }
    }

    /// The name a peer's placeholder shows: the first name among its cameras and microphones.
    pub fn name_of(&self, peer: &str) -> &str {
        self.inputs
            .values()
            .filter(|k| k.facts.peer == peer && !k.facts.screen)
            .map(|k| k.facts.name.as_str())
            .find(|n| !n.is_empty())
            .unwrap_or("")
    }

    fn peer_of(&self, id: InputId) -> String {
        match self.inputs.get(&id) {
            Some(k) if !k.facts.peer.is_empty() => k.facts.peer.clone(),
            // An undescribed input is a peer of its own; `#` cannot start a peer id we issue.
            _ => format!("#{}", id.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(peer: &str) -> InputFacts {
        InputFacts { peer: peer.into(), name: peer.to_uppercase(), ..Default::default() }
    }

    /// Peers a, b, c, each with a camera (1, 3, 5) and a microphone (2, 4, 6).
    fn room(mode: LayoutKind) -> Director {
        let mut d = Director::new(mode);
        for (i, peer) in ["a", "b", "c"].iter().enumerate() {
            let cam = InputId(2 * i as u32 + 1);
            let mic = InputId(2 * i as u32 + 2);
            d.add(cam, true);
            d.add(mic, false);
            d.describe(cam, facts(peer));
            d.describe(mic, facts(peer));
        }
        d
    }

    fn ids(v: &[u32]) -> Vec<Tile> {
        v.iter().map(|i| Tile::Input(InputId(*i))).collect()
    }

    /// Levels every 250 ms from `from_ms` for `for_ms`: `loud` speaks, the others are quiet.
    fn talk(d: &mut Director, loud: u32, from_ms: u64, for_ms: u64) {
        let mut t = from_ms;
        while t <= from_ms + for_ms {
            for mic in [2, 4, 6] {
                d.note_level(InputId(mic), if mic == loud { -20.0 } else { -70.0 }, t);
            }
            t += 250;
        }
    }

    #[test]
    fn grid_keeps_join_order_while_people_talk() {
        let mut d = room(LayoutKind::Grid);
        talk(&mut d, 6, 0, 5_000);
        assert_eq!(d.arrangement(), Arrangement { kind: LayoutKind::Grid, order: ids(&[1, 3, 5]) });
        assert_eq!(d.speaker(), Some("c"));
    }

    #[test]
    fn first_speaker_takes_the_tile_at_once_then_a_switch_needs_a_second() {
        let mut d = room(LayoutKind::Speaker);
        assert_eq!(d.arrangement().order, ids(&[1, 3, 5]), "nobody spoke: join order");
        talk(&mut d, 4, 0, 0);
        assert_eq!(d.arrangement(), Arrangement { kind: LayoutKind::Speaker, order: ids(&[3, 1, 5]) });
        talk(&mut d, 6, 250, 750);
        assert_eq!(d.arrangement().order[0], Tile::Input(InputId(3)), "c has spoken for 750 ms: not yet");
        talk(&mut d, 6, 1_250, 250);
        assert_eq!(d.arrangement().order, ids(&[5, 1, 3]), "c has spoken for a second");
    }

    #[test]
    fn a_short_interjection_does_not_switch() {
        let mut d = room(LayoutKind::Speaker);
        talk(&mut d, 2, 0, 2_000);
        talk(&mut d, 4, 2_250, 500);
        talk(&mut d, 2, 3_000, 2_000);
        talk(&mut d, 4, 5_250, 500);
        assert_eq!(d.speaker(), Some("a"));
    }

    #[test]
    fn silence_and_stale_levels_keep_the_speaker() {
        let mut d = room(LayoutKind::Speaker);
        talk(&mut d, 4, 0, 500);
        // Everyone quiet: the speaker stays.
        for t in (1_000..5_000).step_by(250) {
            d.note_level(InputId(2), -80.0, t);
        }
        assert_eq!(d.speaker(), Some("b"));
        // c's last loud report is stale by the time a's quiet one arrives.
        d.note_level(InputId(6), -10.0, 6_000);
        d.note_level(InputId(2), -80.0, 8_000);
        d.note_level(InputId(2), -80.0, 9_000);
        assert_eq!(d.speaker(), Some("b"));
    }

    #[test]
    fn a_screenshare_takes_the_large_tile_in_either_mode() {
        for mode in [LayoutKind::Grid, LayoutKind::Speaker] {
            let mut d = room(mode);
            talk(&mut d, 2, 0, 2_000);
            d.add(InputId(7), true);
            d.describe(InputId(7), InputFacts { screen: true, ..facts("b") });
            assert_eq!(d.arrangement(), Arrangement { kind: LayoutKind::Speaker, order: ids(&[7, 1, 3, 5]) });
            d.remove(InputId(7));
            assert_eq!(d.arrangement().kind, mode, "the share ended: back to the job's mode");
        }
    }

    #[test]
    fn a_muted_camera_gives_way_to_the_peers_name_in_place_and_comes_back() {
        let mut d = room(LayoutKind::Grid);
        d.describe(InputId(3), InputFacts { muted: true, ..facts("b") });
        let b = Tile::Peer("b".into());
        assert_eq!(d.arrangement().order, [Tile::Input(InputId(1)), b.clone(), Tile::Input(InputId(5))]);
        assert_eq!(d.name_of("b"), "B");
        d.describe(InputId(3), facts("b"));
        assert_eq!(d.arrangement().order, ids(&[1, 3, 5]));
        // In the speaker mode the peer's placeholder is large while it speaks.
        let mut d = room(LayoutKind::Speaker);
        d.describe(InputId(3), InputFacts { muted: true, ..facts("b") });
        talk(&mut d, 4, 0, 500);
        assert_eq!(d.arrangement().order, [b, Tile::Input(InputId(1)), Tile::Input(InputId(5))]);
    }

    #[test]
    fn an_audio_only_peer_has_a_tile_and_a_screen_sharer_keeps_theirs() {
        let mut d = room(LayoutKind::Grid);
        d.add(InputId(7), false);
        d.describe(InputId(7), facts("d"));
        assert_eq!(d.arrangement().order[3], Tile::Peer("d".into()), "audio only: a tile after the others");
        // d shares a screen without a camera: the screen large, d's placeholder in the strip.
        d.add(InputId(8), true);
        d.describe(InputId(8), InputFacts { screen: true, ..facts("d") });
        let a = d.arrangement();
        assert_eq!(a.order[0], Tile::Input(InputId(8)));
        assert!(a.order.contains(&Tile::Peer("d".into())), "{a:?}");
        // An undescribed microphone is just sound.
        d.add(InputId(9), false);
        assert_eq!(d.arrangement().order.len(), 5);
    }

    #[test]
    fn a_muted_microphone_never_makes_a_speaker() {
        let mut d = room(LayoutKind::Speaker);
        talk(&mut d, 2, 0, 500);
        d.describe(InputId(4), InputFacts { muted: true, ..facts("b") });
        talk(&mut d, 4, 750, 3_000);
        assert_eq!(d.speaker(), Some("a"));
    }

    #[test]
    fn undescribed_inputs_are_their_own_peers() {
        let mut d = Director::new(LayoutKind::Speaker);
        d.add(InputId(1), true);
        d.add(InputId(2), true);
        d.set_speaker(InputId(2));
        assert_eq!(d.arrangement().order, ids(&[2, 1]));
        d.note_level(InputId(1), 0.0, 0); // a video input has no level: ignored
        assert_eq!(d.speaker(), Some("#2"));
    }
}
