//! The fetch protocol's codec: one length-prefixed CBOR message per stream, bounded.
//!
//! Owns the framing on the stream. It must not interpret a message (the daemon answers and
//! verifies) nor allocate a body before its length passed the limit (`frame_len`).

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response::Codec;
use upswarm_proto::fetch::{
    FetchRequest, FetchResponse, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, frame_len,
};

/// Reads and writes [`FetchRequest`] / [`FetchResponse`] as `u32 BE length ‖ CBOR`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    what: &'static str,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut header = [0u8; 4];
    io.read_exact(&mut header).await?;
    let len = frame_len(header, what, limit).map_err(invalid)?;
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.close().await
}

fn invalid(e: upswarm_proto::ProtoError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Codec for FetchCodec {
    type Protocol = StreamProtocol;
    type Request = FetchRequest;
    type Response = FetchResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<FetchRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, "fetch request", MAX_REQUEST_BYTES).await?;
        FetchRequest::decode(&bytes).map_err(invalid)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<FetchResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let bytes = read_frame(io, "fetch response", MAX_RESPONSE_BYTES).await?;
        FetchResponse::decode(&bytes).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: FetchRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: FetchResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use futures::io::Cursor;
    use upswarm_proto::Hash32;
    use upswarm_proto::fetch::{Answer, Want};

    use super::*;

    #[tokio::test]
    async fn roundtrip_and_oversized_frames() {
        let p = StreamProtocol::new("/t");
        let mut c = FetchCodec;
        let mut buf = Vec::new();
        let req = FetchRequest::new(Want::Blob {
            hash: Hash32([1; 32]),
            max_len: 10,
        });
        c.write_request(&p, &mut Cursor::new(&mut buf), req.clone())
            .await
            .unwrap();
        assert_eq!(
            c.read_request(&p, &mut Cursor::new(&buf)).await.unwrap(),
            req
        );
        // A frame header claiming 4 GiB is refused before allocating.
        let hostile = [0xffu8, 0xff, 0xff, 0xff, 1, 2, 3];
        let err = c
            .read_response(&p, &mut Cursor::new(&hostile[..]))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Garbage inside a well-sized frame is an error too.
        let garbage = [0u8, 0, 0, 3, 0xff, 0xff, 0xff];
        assert!(
            c.read_request(&p, &mut Cursor::new(&garbage[..]))
                .await
                .is_err()
        );
        let resp = FetchResponse::new(Answer::DontHave);
        let mut buf = Vec::new();
        c.write_response(&p, &mut Cursor::new(&mut buf), resp.clone())
            .await
            .unwrap();
        assert_eq!(
            c.read_response(&p, &mut Cursor::new(&buf)).await.unwrap(),
            resp
        );
    }
}
