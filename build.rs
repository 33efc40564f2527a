//! The web app is built by `make web` (npm, esbuild) into `web/dist/`, which
//! `src/web/assets.rs` embeds into the binary. Without it the build stops here with one
//! line saying what to do, instead of a macro error about a missing folder.

fn main() {
    println!("cargo::rerun-if-changed=web/dist");
    if !std::path::Path::new("web/dist/index.html").is_file() {
        println!("cargo::error=web/dist/index.html is missing: run make web (it builds the web app with npm)");
    }
}
