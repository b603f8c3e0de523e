// Declares the `loom` cfg so `#[cfg(loom)]` does not warn; the loom model runs with
// `RUSTFLAGS="--cfg loom" cargo test -p shm-queue --release --lib loom`.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
