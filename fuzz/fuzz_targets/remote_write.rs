#![no_main]
// Body and properties: oxcol_fuzz::remote_write (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| oxcol_fuzz::remote_write(data));
