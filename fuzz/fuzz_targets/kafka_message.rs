#![no_main]
// Body and properties: oxcol_fuzz::kafka_message (fuzz/src/lib.rs).
libfuzzer_sys::fuzz_target!(|data: &[u8]| oxcol_fuzz::kafka_message(data));
