//! Peer lookups for large rooms, where the SDK does not hold every peer (100ms's `get-peer`,
//! `find-peer`, `peer-iter-next`, `peer-name-search`; `usePaginatedParticipants` and the
//! participant search of Prebuilt).
//!
//! - `get-peer {peer_id}`: one joined peer's record (`{peer_id, role, groups, info}`), 404
//!   for a peer not in the room.
//! - `find-peer {peers?, role?, group?, limit}`: the first page of the joined peers matching
//!   every filter given, `{iterator, total, eof, peers}`; `peer-iter-next {iterator, limit}`
//!   the next page. Peers come in peer-id order, and the iterator names the filters and the
//!   last id returned: it holds no state in the room (nothing to expire, nothing a client can
//!   pile up), and a peer that joins or leaves between pages is simply there or not.
//! - `peer-name-search {query, limit, offset}`: joined peers whose name contains `query`,
//!   case-insensitively, `{count, limit, offset, eof, peers:[{peer_id, name, role, type}]}`;
//!   the answer's `offset` is where the next page starts.
//!
//! A page is 1 to [`MAX_PAGE`] peers (10 when `limit` is absent). Any joined peer may ask.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::peer::Peer;
use super::rpc::Param;
use super::{Refusal, Room};
use crate::rpc::code;

/// The largest page of peers answered.
pub(super) const MAX_PAGE: usize = 100;
const DEFAULT_PAGE: usize = 10;
/// Longest name query accepted (a name is at most 256 bytes).
const MAX_QUERY: usize = 256;
/// Most peer ids a `find-peer` may list.
const MAX_LISTED: usize = 1000;

/// `get-peer {peer_id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct GetPeerParams {
    pub peer_id: Param<String>,
}

/// `find-peer {peers?, role?, group?, limit}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct FindPeerParams {
    pub peers: Param<Vec<String>>,
    pub role: Param<String>,
    pub group: Param<String>,
    pub limit: Param<u64>,
}

/// `peer-iter-next {iterator, limit}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct IterNextParams {
    pub iterator: Param<String>,
    pub limit: Param<u64>,
}

/// `peer-name-search {query, limit, offset}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NameSearchParams {
    pub query: Param<String>,
    pub limit: Param<u64>,
    pub offset: Param<u64>,
}

/// What an iterator stands for: the filters, and the last peer id already returned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(default)]
    after: String,
}

impl Cursor {
    fn matches(&self, p: &Peer) -> bool {
        p.joined
            && self.peers.as_ref().is_none_or(|ids| ids.contains(&p.id))
            && self.role.as_ref().is_none_or(|r| &p.role == r)
            && self.group.as_ref().is_none_or(|g| p.groups.contains(g))
    }

    /// The opaque iterator string: the cursor's JSON, hex-encoded so it is plain ASCII.
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        json.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn decode(text: &str) -> Option<Cursor> {
        if !text.len().is_multiple_of(2) || text.len() > 2 * 64 * 1024 {
            return None;
        }
        let bytes: Option<Vec<u8>> =
            (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect();
        serde_json::from_slice(&bytes?).ok()
    }
}

/// A page size from `limit`: absent is the default, 0 or over [`MAX_PAGE`] is refused.
fn page_size(limit: Param<u64>) -> Result<usize, Refusal> {
    match limit.or_refuse(code::INVALID_PARAMS, "limit must be a whole number")? {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE as u64).contains(&n) => Ok(n as usize),
        Some(_) => Err(Refusal::new(code::BAD_REQUEST, format!("limit is 1 to {MAX_PAGE}"))),
    }
}

impl Room {
    pub(super) fn get_peer(&self, peer_id: &str, params: GetPeerParams) -> Result<Value, Refusal> {
        self.requester(peer_id)?;
        let target = params.peer_id.or_refuse(code::INVALID_PARAMS, "peer_id must be a string")?;
        let target = target.ok_or_else(|| Refusal::new(code::INVALID_PARAMS, "peer_id is needed"))?;
        Ok(self.joined_peer(&target)?.info().brief())
    }

    pub(super) fn find_peer(&self, peer_id: &str, params: FindPeerParams) -> Result<Value, Refusal> {
        self.requester(peer_id)?;
        let limit = page_size(params.limit)?;
        let peers = params.peers.or_refuse(code::INVALID_PARAMS, "peers must be a list of peer ids")?;
        if peers.as_ref().is_some_and(|p| p.len() > MAX_LISTED) {
            return Err(Refusal::new(code::TOO_LARGE, format!("at most {MAX_LISTED} peer ids")));
        }
        let cursor = Cursor {
            peers,
            role: params.role.or_refuse(code::INVALID_PARAMS, "role must be a string")?,
            group: params.group.or_refuse(code::INVALID_PARAMS, "group must be a string")?,
            after: String::new(),
        };
        Ok(self.peer_page(cursor, limit))
    }

    pub(super) fn peer_iter_next(&self, peer_id: &str, params: IterNextParams) -> Result<Value, Refusal> {
        self.requester(peer_id)?;
        let limit = page_size(params.limit)?;
        let text = params.iterator.or_refuse(code::INVALID_PARAMS, "iterator must be a string")?;
        let text = text.ok_or_else(|| Refusal::new(code::INVALID_PARAMS, "iterator is needed"))?;
        let cursor = Cursor::decode(&text).ok_or_else(|| {
            Refusal::new(code::BAD_REQUEST, "not an iterator this server gave (start with find-peer)")
        })?;
        Ok(self.peer_page(cursor, limit))
    }

    /// The `limit` matching peers after the cursor, the total that match, and the iterator for
    /// the next page.
    fn peer_page(&self, cursor: Cursor, limit: usize) -> Value {
        let total = self.peers.values().filter(|p| cursor.matches(p)).count();
        let mut rest = self
            .peers
            .range::<str, _>((std::ops::Bound::Excluded(cursor.after.as_str()), std::ops::Bound::Unbounded))
            .map(|(_, p)| p)
            .filter(|p| cursor.matches(p));
        let page: Vec<&Peer> = rest.by_ref().take(limit).collect();
        let eof = rest.next().is_none();
        let after = page.last().map_or(cursor.after.clone(), |p| p.id.clone());
        let next = Cursor { after, ..cursor };
        json!({
            "iterator": next.encode(),
            "total": total,
            "eof": eof,
            "peers": page.iter().map(|p| p.info().brief()).collect::<Vec<_>>(),
        })
    }

    pub(super) fn peer_name_search(&self, peer_id: &str, params: NameSearchParams) -> Result<Value, Refusal> {
        self.requester(peer_id)?;
        let limit = page_size(params.limit)?;
        let query = params.query.or_refuse(code::INVALID_PARAMS, "query must be a string")?.unwrap_or_default();
        if query.trim().is_empty() || query.len() > MAX_QUERY {
            return Err(Refusal::new(code::BAD_REQUEST, format!("query is 1 to {MAX_QUERY} bytes of a name")));
        }
        let offset = params.offset.or_refuse(code::INVALID_PARAMS, "offset must be a whole number")?.unwrap_or(0);
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let query = query.to_lowercase();
        let mut found = self.peers.values().filter(|p| p.joined && p.name.to_lowercase().contains(&query)).skip(offset);
        let page: Vec<Value> = found
            .by_ref()
            .take(limit)
            .map(|p| json!({ "peer_id": p.id, "name": p.name, "role": p.role, "type": "regular" }))
            .collect();
        let eof = found.next().is_none();
        Ok(json!({
            "count": page.len(),
            "limit": limit,
            "offset": offset.saturating_add(page.len()),
            "eof": eof,
            "peers": page,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_iterator_round_trips_and_junk_is_refused() {
        let c =
            Cursor { peers: None, role: Some("guest".into()), group: Some("_handraise".into()), after: "p7".into() };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for junk in ["", "zz", "abc", "7b7d7", &"7b".repeat(70_000)] {
            assert_eq!(Cursor::decode(junk), None, "{junk:.20}");
        }
        assert_eq!(Cursor::decode("7b7d"), Some(Cursor::default()), "{{}} is the start of everything");
    }
}
