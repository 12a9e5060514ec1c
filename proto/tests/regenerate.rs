//! The checked-in generated code (`src/gen/`) is what prost-build makes of the vendored
//! `.proto` files today: regenerate into a temp dir with the vendored protoc and compare.
//! `OXCOL_UPDATE_PROTO=1` writes the fresh generation into `src/gen/` instead.

use std::fs;
use std::path::{Path, PathBuf};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Generates every vendored file into `out` (one `<package>.rs` per protobuf package).
fn generate(out: &Path) {
    let vendor = crate_dir().join("vendor");
    let protoc = protoc_bin_vendored::protoc_bin_path().expect("the vendored protoc");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc).out_dir(out);
    let include = protoc_bin_vendored::include_path().expect("the vendored protoc's includes");
    config
        .compile_protos(
            &[
                vendor.join("prometheus/types.proto"),
                vendor.join("prometheus/remote.proto"),
                vendor.join("prometheus/io/prometheus/write/v2/types.proto"),
                vendor.join("pprof/profile.proto"),
            ],
            &[
                vendor.join("prometheus"),
                vendor.clone(),
                vendor.join("pprof"),
                include,
            ],
        )
        .expect("prost-build generates the vendored protos");
}

/// The `.rs` files of a directory, by name.
fn rust_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("read {}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                fs::read_to_string(&path).expect("read generated file"),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn checked_in_code_matches_a_fresh_generation() {
    let fresh_dir = std::env::temp_dir().join(format!("oxcol-proto-gen-{}", std::process::id()));
    let _ = fs::remove_dir_all(&fresh_dir);
    fs::create_dir_all(&fresh_dir).unwrap();
    generate(&fresh_dir);
    let fresh = rust_files(&fresh_dir);
    let checked_in_dir = crate_dir().join("src/gen");
    if std::env::var_os("OXCOL_UPDATE_PROTO").is_some() {
        let _ = fs::remove_dir_all(&checked_in_dir);
        fs::create_dir_all(&checked_in_dir).unwrap();
        for (name, text) in &fresh {
            fs::write(checked_in_dir.join(name), text).unwrap();
        }
    }
    let checked_in = rust_files(&checked_in_dir);
    let _ = fs::remove_dir_all(&fresh_dir);
    let names =
        |files: &[(String, String)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&checked_in),
        names(&fresh),
        "proto/src/gen/ has other files than a fresh generation; run OXCOL_UPDATE_PROTO=1 cargo test -p oxcol-proto --test regenerate"
    );
    for ((name, old), (_, new)) in checked_in.iter().zip(&fresh) {
        assert!(
            old == new,
            "proto/src/gen/{name} differs from a fresh generation of proto/vendor/; run \
             OXCOL_UPDATE_PROTO=1 cargo test -p oxcol-proto --test regenerate and review the diff"
        );
    }
}
