//! Framing on libp2p request-response streams: a one-byte frame kind, a big-endian `u32`
//! length and the bytes. Lengths over the limit are refused before anything is allocated.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// A frame: what kind of exchange it is and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// [`ONE_WAY`] or [`REQUEST`] on requests; ignored on responses.
    pub kind: u8,
    /// The payload (a wire envelope, a proof, or empty).
    pub bytes: Vec<u8>,
}

/// A message that expects no answer: the receiver acknowledges at once with an empty frame.
pub const ONE_WAY: u8 = 0;
/// A request whose answer the caller awaits.
pub const REQUEST: u8 = 1;

/// The codec, parameterised by the largest payload it accepts.
#[derive(Clone, Debug)]
pub struct FrameCodec {
    /// The largest payload accepted, in bytes.
    pub max: usize,
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Frame> {
    let mut head = [0u8; 5];
    io.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds {max}")));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    Ok(Frame { kind: head[0], bytes })
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, frame: Frame, max: usize) -> io::Result<()> {
    let len = u32::try_from(frame.bytes.len())
        .ok()
        .filter(|&l| l as usize <= max)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut head = [0u8; 5];
    head[0] = frame.kind;
    head[1..].copy_from_slice(&len.to_be_bytes());
    io.write_all(&head).await?;
    io.write_all(&frame.bytes).await?;
    io.close().await
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Frame;

    async fn read_request<T: AsyncRead + Unpin + Send>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame> {
        read_frame(io, self.max).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Frame> {
        read_frame(io, self.max).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Frame,
    ) -> io::Result<()> {
        write_frame(io, req, self.max).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Frame,
    ) -> io::Result<()> {
        write_frame(io, res, self.max).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;

    #[test]
    fn round_trip_and_oversize() {
        futures::executor::block_on(async {
            let mut buf = Cursor::new(Vec::new());
            write_frame(&mut buf, Frame { kind: REQUEST, bytes: vec![1, 2, 3] }, 16).await.unwrap();
            let mut rd = Cursor::new(buf.into_inner());
            assert_eq!(read_frame(&mut rd, 16).await.unwrap(), Frame { kind: REQUEST, bytes: vec![1, 2, 3] });
            let mut huge = Cursor::new(vec![0u8, 0xff, 0xff, 0xff, 0xff]);
            assert!(read_frame(&mut huge, 16).await.is_err());
            let mut short = Cursor::new(vec![0u8, 0, 0]);
            assert!(read_frame(&mut short, 16).await.is_err());
        });
    }
}
