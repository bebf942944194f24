#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sealgate_fuzz_bodies::nvgpu_report(data));
