#![no_main]
// Body and properties: oxcol_fuzz::pprof (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| oxcol_fuzz::pprof(data));
