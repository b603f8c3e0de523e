//! The `router` binary's shared-memory link (`--link-fd`), as control sets it up: a memfd
//! segment made here and inherited by the child, this process on end A as signaling would be.
//! Commands get replies by id, events arrive, garbage and wrong-version frames are dropped
//! without disturbing the link, and a peer that detaches and re-attaches (a restarted
//! signaling) is served again.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use schema::api::{ApiError, Event, TransportInfo};
use schema::frame;
use schema::ids::TransportId;
use schema::{Message, RouterCommand, RouterRequest};
use shm_queue::{Channel, Config, End, Segment};

const BIN: &str = env!("CARGO_BIN_EXE_router");

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(segment: &Segment) -> Killed {
    let fd = segment.inheritable_fd().unwrap();
    let sock = std::env::temp_dir().join(format!("rtr-link-{}.sock", std::process::id()));
    let child = Command::new(BIN)
        .args(["--shards", "1", "--base-port", "0", "--no-pin", "--link-fd", &fd.as_raw_fd().to_string()])
        .arg("--control-socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(fd);
    Killed(child)
}

/// Sends a command and waits for the reply with its id, skipping events.
fn call(link: &mut Channel, id: u64, command: RouterCommand) -> schema::RouterResult {
    let mut buf = Vec::new();
    frame::encode(&Message::RouterCommand(RouterRequest { id, command }), &mut buf).unwrap();
    link.send(&buf).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no reply to request {id}");
        let mut rec = Vec::new();
        if link.recv_timeout(&mut rec, Duration::from_millis(200)).is_err() {
            continue;
        }
        if let Ok(Message::RouterReply(r)) = frame::decode(&rec)
            && r.id == id
        {
            return r.result;
        }
    }
}

#[test]
fn commands_over_the_link_get_replies_and_bad_frames_do_not_break_it() {
    let segment = Segment::create_memfd("router-link-test", Config::channel(1 << 16)).unwrap();
    let _router = start(&segment);
    let mut link = Channel::attach(&segment, End::A).unwrap();

    let info = call(&mut link, 1, RouterCommand::CreateTransport { shard: None }).unwrap();
    let transport: TransportInfo = info.try_into().unwrap();

    // Garbage, a reply sent the wrong way, and a frame of another schema version: all dropped.
    link.send(b"not a frame at all").unwrap();
    let mut wrong_way = Vec::new();
    frame::encode(
        &Message::RouterReply(schema::RouterReply { id: 9, result: Ok(schema::RouterResponse::Done) }),
        &mut wrong_way,
    )
    .unwrap();
    link.send(&wrong_way).unwrap();
    let mut other_version = Vec::new();
    frame::encode(
        &Message::RouterCommand(RouterRequest { id: 3, command: RouterCommand::Counters { shard: None } }),
        &mut other_version,
    )
    .unwrap();
    other_version[2] = other_version[2].wrapping_add(1); // the version field follows the magic
    link.send(&other_version).unwrap();

    // The link still works, and errors come back typed.
    let err = call(&mut link, 4, RouterCommand::CloseTransport { transport: TransportId(0x00ff_ffff) });
    assert!(matches!(err, Err(ApiError::UnknownTransport(_))), "{err:?}");
    let counters = call(&mut link, 5, RouterCommand::Counters { shard: None }).unwrap().into_plain_json().unwrap();
    assert_eq!(counters["transports"], 1, "{counters}");
    call(&mut link, 6, RouterCommand::CloseTransport { transport: transport.id }).unwrap();

    // The transport's close comes back as an event on the link.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no transport_closed event");
        let mut rec = Vec::new();
        if link.recv_timeout(&mut rec, Duration::from_millis(200)).is_ok()
            && let Ok(Message::RouterEvent(e)) = frame::decode(&rec)
            && matches!(e.event, Event::TransportClosed { transport: t, .. } if t == transport.id)
        {
            break;
        }
    }

    // A restarted signaling: this end detaches and attaches again, and is served.
    drop(link);
    let mut link = Channel::attach(&segment, End::A).unwrap();
    let counters = call(&mut link, 7, RouterCommand::Counters { shard: None }).unwrap().into_plain_json().unwrap();
    assert_eq!(counters["transports"], 0, "{counters}");
}
