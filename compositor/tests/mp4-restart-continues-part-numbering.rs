//! A restarted job given the next part number writes its MP4 there instead of overwriting the
//! first run's part.
#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::time::Duration;

use common::{probe, tempdir};
use compositor::{Composite, Config};

fn run(config: Config) {
    let job = Composite::start(config).unwrap();
    std::thread::sleep(Duration::from_secs(1));
    job.finish(Duration::from_secs(10)).unwrap();
}

#[test]
fn a_restarted_job_continues_its_part_numbering() {
    let dir = tempdir("mp4-start-index");
    let small = Config { width: 320, height: 180, ..Config::new(&dir, "room") };
    run(small.clone());
    let first = std::fs::read(dir.join("room.1.mp4")).unwrap();

    let mut again = small;
    again.mp4.as_mut().unwrap().start_index = 2;
    run(again);
    assert_eq!(std::fs::read(dir.join("room.1.mp4")).unwrap(), first, "the first part is untouched");
    let p = probe(&dir.join("room.2.mp4"));
    assert_eq!(p.video.unwrap().0, "h264");
    assert!(!dir.join("room.3.mp4").exists());
}
