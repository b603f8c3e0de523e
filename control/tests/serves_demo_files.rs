//! `/` serves the demo app from `--demo-dir`, never a file outside it; without the directory it
//! explains how to build the demo.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use common::{Daemon, TempDir};

#[test]
fn demo_files_are_served_with_their_content_types() {
    let tmp = TempDir::new("static");
    let demo = tmp.path().join("dist");
    std::fs::create_dir_all(demo.join("assets")).unwrap();
    std::fs::write(demo.join("index.html"), "<!doctype html><title>demo</title>").unwrap();
    std::fs::write(demo.join("assets/app-1234.js"), "console.log('hi')").unwrap();
    std::fs::write(demo.join("assets/style.css"), "body{}").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "do not serve").unwrap();
    std::fs::create_dir(tmp.path().join("bin")).unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &tmp.path().join("bin"), &demo, &[]);

    let r = d.get("/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "<!doctype html><title>demo</title>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let r = d.get("/assets/app-1234.js");
    assert_eq!((r.status, r.text().as_str()), (200, "console.log('hi')"));
    assert_eq!(r.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(d.get("/assets/style.css").header("content-type"), Some("text/css; charset=utf-8"));
    // A client-side route gets the app shell; a missing asset is a 404.
    assert_eq!(d.get("/room/abc").text(), "<!doctype html><title>demo</title>");
    assert_eq!(d.get("/assets/missing.js").status, 404);
    // Nothing outside the demo directory.
    for path in ["/../secret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"] {
        let r = d.get(path);
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.status);
        assert!(!r.text().contains("do not serve"), "{path}");
    }
}

#[test]
fn a_missing_demo_dir_gets_a_page_saying_how_to_build_it() {
    let tmp = TempDir::new("nodemo");
    std::fs::create_dir(tmp.path().join("bin")).unwrap();
    let d = Daemon::start(&tmp.path().join("data"), &tmp.path().join("bin"), &tmp.path().join("nope"), &[]);
    let r = d.get("/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let page = r.text();
    assert!(page.contains("npm ci &amp;&amp; npm run build") && page.contains("client"), "{page}");
}
