#![no_main]
// Body and properties: oxcol_fuzz::config_load (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| oxcol_fuzz::config_load(data));
