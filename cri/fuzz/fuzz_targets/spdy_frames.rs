//! Feeds arbitrary bytes to the SPDY frame decoder, split at an arbitrary
//! point (frames arrive in pieces): it must return frames or an error,
//! never panic, hang or allocate without bound.
#![no_main]

use bytes::BytesMut;
use crius_cri::streaming::spdy::FrameDecoder;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).min(data.len());
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::from(&data[..split]);
    for more in [&data[split..], &[][..]] {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
        buf.extend_from_slice(more);
    }
});
