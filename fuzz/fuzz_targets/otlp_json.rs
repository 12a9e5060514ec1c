#![no_main]
// Body and properties: oxcol_fuzz::otlp_json (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| oxcol_fuzz::otlp_json(data));
