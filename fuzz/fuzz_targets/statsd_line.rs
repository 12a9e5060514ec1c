#![no_main]
// Body and properties: oxcol_fuzz::statsd_line (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| oxcol_fuzz::statsd_line(data));
