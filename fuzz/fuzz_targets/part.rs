#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| neuropil_fuzz::part(data));
