//! Feeds arbitrary bytes, decoded as a CreateContainerRequest protobuf,
//! through conversion, validation and the OCI spec builder: it must build
//! a spec or refuse, never panic. `cri/tests/request_fuzz.rs` runs the
//! same function over pseudo-random requests in every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    crius_cri::fuzzing::create_container_request(data);
});
