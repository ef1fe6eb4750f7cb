//! Frames into bytes.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::Encoder;

use super::block::HeaderCompressor;
use super::types::{
    FLAG_CLEAR_SETTINGS, FLAG_FIN, FLAG_UNIDIRECTIONAL, Frame, FrameError, Headers, MAX_PAYLOAD,
    MAX_STREAM_ID, VERSION, kind,
};

/// Writes frames for one direction of a connection.
pub struct FrameEncoder {
    headers: HeaderCompressor,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameEncoder")
    }
}

impl FrameEncoder {
    /// An encoder at the start of a connection.
    pub fn new() -> Self {
        FrameEncoder {
            headers: HeaderCompressor::new(),
        }
    }

    /// Writes a control frame whose payload `body` builds.
    fn control(
        &mut self,
        dst: &mut BytesMut,
        frame_type: u16,
        flags: u8,
        body: impl FnOnce(&mut Self, &mut BytesMut) -> Result<(), FrameError>,
    ) -> Result<(), FrameError> {
        let start = dst.len();
        dst.put_u16(0x8000 | VERSION);
        dst.put_u16(frame_type);
        dst.put_u32(0); // flags and length, patched below
        let result = body(self, dst);
        if let Err(e) = result {
            dst.truncate(start);
            return Err(e);
        }
        let len = dst.len() - start - 8;
        if len > MAX_PAYLOAD {
            dst.truncate(start);
            return Err(FrameError::invalid("control", "payload over 16 MiB"));
        }
        let word = (u32::from(flags) << 24) | len as u32;
        dst[start + 4..start + 8].copy_from_slice(&word.to_be_bytes());
        Ok(())
    }

    fn header_block(&mut self, headers: &Headers, dst: &mut BytesMut) -> Result<(), FrameError> {
        let block = headers.encode_block()?;
        self.headers.compress(&block, dst)
    }
}

fn check_id(frame: &'static str, id: u32) -> Result<(), FrameError> {
    if id == 0 || id > MAX_STREAM_ID {
        Err(FrameError::invalid(frame, format!("stream id {id}")))
    } else {
        Ok(())
    }
}

impl Encoder<Frame> for FrameEncoder {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data {
                stream_id,
                fin: f,
                data,
            } => {
                check_id("data", stream_id)?;
                if data.len() > MAX_PAYLOAD {
                    return Err(FrameError::invalid("data", "payload over 16 MiB"));
                }
                dst.reserve(8 + data.len());
                dst.put_u32(stream_id);
                dst.put_u32((u32::from(fin(f)) << 24) | data.len() as u32);
                dst.put_slice(&data);
                Ok(())
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin: f,
                unidirectional,
                headers,
            } => {
                check_id("SYN_STREAM", stream_id)?;
                let flags = fin(f)
                    | if unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                self.control(dst, kind::SYN_STREAM, flags, |me, d| {
                    d.put_u32(stream_id);
                    d.put_u32(associated_to & MAX_STREAM_ID);
                    d.put_u8((priority & 0x7) << 5);
                    d.put_u8(slot);
                    me.header_block(&headers, d)
                })
            }
            Frame::SynReply {
                stream_id,
                fin: f,
                headers,
            } => {
                check_id("SYN_REPLY", stream_id)?;
                self.control(dst, kind::SYN_REPLY, fin(f), |me, d| {
                    d.put_u32(stream_id);
                    me.header_block(&headers, d)
                })
            }
            Frame::Headers {
                stream_id,
                fin: f,
                headers,
            } => {
                check_id("HEADERS", stream_id)?;
                self.control(dst, kind::HEADERS, fin(f), |me, d| {
                    d.put_u32(stream_id);
                    me.header_block(&headers, d)
                })
            }
            Frame::RstStream { stream_id, status } => {
                check_id("RST_STREAM", stream_id)?;
                if status == 0 {
                    return Err(FrameError::invalid("RST_STREAM", "status 0"));
                }
                self.control(dst, kind::RST_STREAM, 0, |_, d| {
                    d.put_u32(stream_id);
                    d.put_u32(status);
                    Ok(())
                })
            }
            Frame::Settings { clear, entries } => {
                let flags = if clear { FLAG_CLEAR_SETTINGS } else { 0 };
                self.control(dst, kind::SETTINGS, flags, |_, d| {
                    d.put_u32(entries.len() as u32);
                    for e in &entries {
                        d.put_u32((u32::from(e.flags) << 24) | (e.id & 0xff_ffff));
                        d.put_u32(e.value);
                    }
                    Ok(())
                })
            }
            Frame::Ping { id } => self.control(dst, kind::PING, 0, |_, d| {
                d.put_u32(id);
                Ok(())
            }),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => self.control(dst, kind::GOAWAY, 0, |_, d| {
                d.put_u32(last_good_stream_id & MAX_STREAM_ID);
                d.put_u32(status);
                Ok(())
            }),
            Frame::WindowUpdate { stream_id, delta } => {
                if delta == 0 || delta > MAX_STREAM_ID || stream_id > MAX_STREAM_ID {
                    return Err(FrameError::invalid(
                        "WINDOW_UPDATE",
                        format!("stream {stream_id} delta {delta}"),
                    ));
                }
                self.control(dst, kind::WINDOW_UPDATE, 0, |_, d| {
                    d.put_u32(stream_id);
                    d.put_u32(delta);
                    Ok(())
                })
            }
            Frame::Unknown { frame_type } => Err(FrameError::invalid(
                "control",
                format!("cannot send unknown frame type {frame_type}"),
            )),
        }
    }
}
