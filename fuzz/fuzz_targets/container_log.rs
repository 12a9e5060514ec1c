#![no_main]
// Body and properties: oxcol_fuzz::container_log (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| oxcol_fuzz::container_log(data));
