//! [`UploadLog`]: a durable upload's messages appended to disk as they arrive.
//!
//! A Flight message already is an Arrow IPC message (flatbuffer header + body), so logging one is framing it as the
//! IPC stream format does — `0xFFFFFFFF`, the little-endian `i32` length of the header padded to 8 bytes, the
//! header, the padding, then the body — and writing it. The file (`<uuid>.arrows`, under a `.tmp` name until
//! [`UploadLog::finish`]) is therefore a valid Arrow IPC stream: once finished it is the new segment's file, read
//! like any other, and converted to Parquet in the background.
//!
//! A blocking thread owns the file: the upload hands it messages over a bounded channel (so logging overlaps with
//! receiving and decoding), and it flushes to disk every [`SYNC_EVERY_BYTES`] so the one fsync before the
//! acknowledgement has little left to do. An upload that fails or disconnects drops its log, which deletes the file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrow::ipc::MessageHeader;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::spill::{self, Format, SegmentFile};
use crate::error::{Error, Result};

/// Bytes written between two background flushes.
const SYNC_EVERY_BYTES: u64 = 32 << 20;

/// The IPC stream's continuation marker.
const CONTINUATION: [u8; 4] = [0xff; 4];

enum Msg {
    /// A framed message: prefix + header + padding, then the body.
    Write(Vec<u8>, Bytes),
    /// Write the end-of-stream marker, fsync, rename into place and report the file.
    Finish(oneshot::Sender<Result<SegmentFile>>),
}

/// The log of one durable upload (see the module docs). Clones share the log; the file is deleted unless
/// [`UploadLog::finish`] commits it before every clone is dropped.
#[derive(Clone, Debug)]
pub struct UploadLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Msg>,
    /// Bytes logged so far.
    bytes: AtomicU64,
    saw_schema: AtomicBool,
}

impl UploadLog {
    /// Starts a log in `dir`.
    pub(super) fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = spill::new_path(dir, Format::Ipc);
        let tmp = spill::temp_path(&path);
        let file = File::create(&tmp)?;
        let (tx, rx) = mpsc::channel(8);
        tokio::task::spawn_blocking(move || run(file, tmp, path, rx));
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                bytes: AtomicU64::new(0),
                saw_schema: AtomicBool::new(false),
            }),
        })
    }

    /// Bytes logged so far.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// Logs one received message (`FlightData.data_header` and `data_body`). Messages without a header (only
    /// app_metadata) and repeated schema messages are not part of the IPC stream and are skipped.
    pub async fn append(&self, header: &Bytes, body: &Bytes) -> Result<()> {
        if header.is_empty() {
            return Ok(());
        }
        let message = arrow::ipc::root_as_message(header)
            .map_err(|e| Error::invalid(format!("a message header is not a valid Arrow IPC message: {e}")))?;
        if message.header_type() == MessageHeader::Schema && self.inner.saw_schema.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        let padded = header.len().next_multiple_of(8);
        let len = i32::try_from(padded).map_err(|_| Error::invalid("a message header over 2 GiB"))?;
        let mut prefix = Vec::with_capacity(8 + padded);
        prefix.extend_from_slice(&CONTINUATION);
        prefix.extend_from_slice(&len.to_le_bytes());
        prefix.extend_from_slice(header);
        prefix.resize(8 + padded, 0);
        self.inner
            .bytes
            .fetch_add((prefix.len() + body.len()) as u64, Ordering::Relaxed);
        self.send(Msg::Write(prefix, body.clone())).await
    }

    async fn send(&self, msg: Msg) -> Result<()> {
        self.inner
            .tx
            .send(msg)
            .await
            .map_err(|_| Error::internal("the upload log's writer stopped"))
    }

    /// Ends the stream, fsyncs and renames the file into place: after this it survives a crash.
    pub(super) async fn finish(self) -> Result<SegmentFile> {
        let (done, result) = oneshot::channel();
        self.send(Msg::Finish(done)).await?;
        result
            .await
            .map_err(|_| Error::internal("the upload log's writer stopped"))?
    }
}

/// The blocking side: writes what arrives; on `Finish` commits the file; when the channel closes first (a failed or
/// abandoned upload) or a write fails, deletes it.
fn run(mut file: File, tmp: PathBuf, path: PathBuf, mut rx: mpsc::Receiver<Msg>) {
    let mut unsynced = 0u64;
    let mut failed: Option<std::io::Error> = None;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Write(prefix, body) => {
                if failed.is_some() {
                    continue;
                }
                let written = file.write_all(&prefix).and_then(|()| file.write_all(&body));
                unsynced += (prefix.len() + body.len()) as u64;
                let synced = if unsynced >= SYNC_EVERY_BYTES {
                    unsynced = 0;
                    written.and_then(|()| file.sync_data())
                } else {
                    written
                };
                failed = synced.err();
            }
            Msg::Finish(done) => {
                let result = match failed.take() {
                    Some(e) => Err(Error::Io(e)),
                    None => file
                        .write_all(&CONTINUATION)
                        .and_then(|()| file.write_all(&0i32.to_le_bytes()))
                        .map_err(Error::Io)
                        .and_then(|()| spill::commit(file, &tmp, &path))
                        .map(|bytes| SegmentFile::new(path.clone(), bytes, Format::Ipc)),
                };
                if result.is_err() {
                    // Err: already gone.
                    let _ = std::fs::remove_file(&tmp);
                }
                // Err: the upload went away; its segment file, if any, is removed as an orphan at the next start.
                let _ = done.send(result);
                return;
            }
        }
    }
    // Err: already gone.
    let _ = std::fs::remove_file(&tmp);
}
