//! Peer groups (100ms's `group-join`, `group-leave`, `group-add`, `group-remove`): named sets a
//! peer is in, carried in its peer records (`groups`). A raised hand is the group
//! `_handraise`. Every change is an `on-peer-update` to everyone, the peer itself included:
//! its SDK does not update its own groups from the answer.
//!
//! Limits (100ms states none): a name of 1 to [`MAX_GROUP_NAME`] bytes, at most
//! [`MAX_GROUPS`] groups a peer. A peer changes its own groups freely; changing another
//! peer's (a host lowering a hand) needs `changeRole` or `removeOthers`, the host's controls.

use serde::Deserialize;
use serde_json::{Value, json};

use super::rpc::Param;
use super::{Refusal, Room};
use crate::rpc::code;

pub(super) const MAX_GROUP_NAME: usize = 100;
pub(super) const MAX_GROUPS: usize = 20;

/// `group-join {name}`, `group-leave {name}`, `group-add {name, peer_id}`,
/// `group-remove {name, peer_id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct GroupParams {
    pub name: Param<String>,
    pub peer_id: Param<String>,
}

impl Room {
    /// Puts the caller (or, with `for_other`, `params.peer_id`) in the group (`join`) or takes
    /// it out; answers the target's groups.
    pub(super) fn change_group(
        &mut self,
        peer_id: &str,
        params: GroupParams,
        join: bool,
        for_other: bool,
    ) -> Result<Value, Refusal> {
        let name = params.name.or_refuse(code::INVALID_PARAMS, "name must be a string")?.unwrap_or_default();
        if name.is_empty() || name.len() > MAX_GROUP_NAME {
            return Err(Refusal::new(code::BAD_REQUEST, format!("a group name is 1 to {MAX_GROUP_NAME} bytes")));
        }
        let target = if for_other {
            self.require(peer_id, |p| p.change_role || p.remove_others, "changeRole or removeOthers")?;
            let target = params.peer_id.or_refuse(code::INVALID_PARAMS, "peer_id must be a string")?;
            target.ok_or_else(|| Refusal::new(code::INVALID_PARAMS, "peer_id is needed"))?
        } else {
            self.requester(peer_id)?;
            peer_id.to_owned()
        };
        let Some(peer) = self.peers.get_mut(&target).filter(|p| p.joined) else {
            return Err(Refusal::new(code::NOT_FOUND, format!("peer {target} is not in the room")));
        };
        let changed = if join {
            if !peer.groups.contains(&name) && peer.groups.len() >= MAX_GROUPS {
                return Err(Refusal::new(code::TOO_LARGE, format!("a peer is in at most {MAX_GROUPS} groups")));
            }
            peer.groups.insert(name)
        } else {
            peer.groups.remove(&name)
        };
        let groups: Vec<String> = peer.groups.iter().cloned().collect();
        if changed {
            let update = peer.notification();
            self.push_all("on-peer-update", &update);
        }
        Ok(json!({ "groups": groups }))
    }
}
