//! Bytes into frames.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::block::HeaderDecompressor;
use super::types::{
    FLAG_CLEAR_SETTINGS, FLAG_FIN, FLAG_UNIDIRECTIONAL, Frame, FrameError, Headers, MAX_STREAM_ID,
    Setting, VERSION, kind,
};

/// Reads frames from one direction of a connection.
pub struct FrameDecoder {
    headers: HeaderDecompressor,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameDecoder")
    }
}

impl FrameDecoder {
    /// A decoder at the start of a connection.
    pub fn new() -> Self {
        FrameDecoder {
            headers: HeaderDecompressor::new(),
        }
    }

    fn header_block(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let block = self.headers.decompress(compressed)?;
        Headers::decode_block(&block)
    }

    fn control(
        &mut self,
        version: u16,
        frame_type: u16,
        flags: u8,
        mut p: &[u8],
    ) -> Result<Frame, FrameError> {
        if version != VERSION {
            return Err(FrameError::Version(version));
        }
        let len = p.len();
        let fin = flags & FLAG_FIN != 0;
        let exact = |name: &'static str, want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(FrameError::invalid(
                    name,
                    format!("length {len}, must be {want}"),
                ))
            }
        };
        let at_least = |name: &'static str, want: usize| {
            if len >= want {
                Ok(())
            } else {
                Err(FrameError::invalid(
                    name,
                    format!("length {len}, must be at least {want}"),
                ))
            }
        };
        let stream = |name: &'static str, p: &mut &[u8]| {
            let id = p.get_u32() & MAX_STREAM_ID;
            if id == 0 {
                Err(FrameError::invalid(name, "stream id 0"))
            } else {
                Ok(id)
            }
        };
        Ok(match frame_type {
            kind::SYN_STREAM => {
                at_least("SYN_STREAM", 10)?;
                let stream_id = stream("SYN_STREAM", &mut p)?;
                let associated_to = p.get_u32() & MAX_STREAM_ID;
                let priority = p.get_u8() >> 5;
                let slot = p.get_u8();
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.header_block(p)?,
                }
            }
            kind::SYN_REPLY => {
                at_least("SYN_REPLY", 4)?;
                let stream_id = stream("SYN_REPLY", &mut p)?;
                Frame::SynReply {
                    stream_id,
                    fin,
                    headers: self.header_block(p)?,
                }
            }
            kind::HEADERS => {
                at_least("HEADERS", 4)?;
                let stream_id = stream("HEADERS", &mut p)?;
                Frame::Headers {
                    stream_id,
                    fin,
                    headers: self.header_block(p)?,
                }
            }
            kind::RST_STREAM => {
                exact("RST_STREAM", 8)?;
                let stream_id = stream("RST_STREAM", &mut p)?;
                let status = p.get_u32();
                if status == 0 {
                    return Err(FrameError::invalid("RST_STREAM", "status 0"));
                }
                Frame::RstStream { stream_id, status }
            }
            kind::SETTINGS => {
                at_least("SETTINGS", 4)?;
                let count = p.get_u32() as usize;
                if count.checked_mul(8) != Some(p.len()) {
                    return Err(FrameError::invalid(
                        "SETTINGS",
                        format!("{count} entries in {} bytes", p.len()),
                    ));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = p.get_u32();
                        Setting {
                            flags: (word >> 24) as u8,
                            id: word & 0xff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            kind::PING => {
                exact("PING", 4)?;
                Frame::Ping { id: p.get_u32() }
            }
            kind::GOAWAY => {
                exact("GOAWAY", 8)?;
                Frame::GoAway {
                    last_good_stream_id: p.get_u32() & MAX_STREAM_ID,
                    status: p.get_u32(),
                }
            }
            kind::WINDOW_UPDATE => {
                exact("WINDOW_UPDATE", 8)?;
                let stream_id = p.get_u32() & MAX_STREAM_ID;
                let delta = p.get_u32() & MAX_STREAM_ID;
                if delta == 0 {
                    return Err(FrameError::invalid("WINDOW_UPDATE", "delta 0"));
                }
                Frame::WindowUpdate { stream_id, delta }
            }
            other => Frame::Unknown { frame_type: other },
        })
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(head) = src.first_chunk::<8>() else {
            return Ok(None);
        };
        let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        if src.len() < 8 + len {
            src.reserve(8 + len - src.len());
            return Ok(None);
        }
        src.advance(8);
        let payload = src.split_to(len).freeze();
        if word & 0x8000_0000 == 0 {
            let stream_id = word & MAX_STREAM_ID;
            if stream_id == 0 {
                return Err(FrameError::invalid("data", "stream id 0"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        let frame_type = (word & 0xffff) as u16;
        self.control(version, frame_type, flags, &payload).map(Some)
    }
}
