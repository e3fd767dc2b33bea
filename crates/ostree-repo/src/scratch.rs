//! Per-thread I/O buffers: committing, pulling and checking touch tens of
//! thousands of files, and a fresh zeroed 128 KiB buffer per file costs an
//! allocation (often an mmap) and a memset each time.

use std::cell::RefCell;

/// Size of the buffer [`with_buffer`] lends.
pub const BUFFER_SIZE: usize = 128 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's `BUFFER_SIZE` scratch buffer. Its contents
/// are whatever the last user left. A nested call gets a fresh buffer.
pub fn with_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    BUFFER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() != BUFFER_SIZE {
                buf.resize(BUFFER_SIZE, 0);
            }
            f(&mut buf)
        }
        Err(_) => f(&mut vec![0u8; BUFFER_SIZE]),
    })
}
